"""Ledger fixtures: platform assets come from the seed migration; wallets are opened and funded
through the services (never by writing balances)."""

from decimal import Decimal

import pytest

from ledger.models import Asset, Wallet
from ledger.services import Issue, ledger_post, wallet_open
from tests.factories import CustomerFactory, OrganizationFactory


@pytest.fixture
def usd(db) -> Asset:
    return Asset.objects.get(code="USD", organization__isnull=True)


@pytest.fixture
def eur(db) -> Asset:
    return Asset.objects.get(code="EUR", organization__isnull=True)


@pytest.fixture
def eth(db) -> Asset:
    return Asset.objects.get(code="ETH", organization__isnull=True)


def open_wallet(asset: Asset, funded: str | Decimal | None = None, *, customer=None, label: str = "") -> Wallet:
    wallet = wallet_open(asset=asset, customer=customer or CustomerFactory(), label=label)
    if funded is not None:
        ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=Decimal(funded))]).raise_for_error()
        wallet.refresh_from_db()
    return wallet


@pytest.fixture
def make_wallet(db):
    return open_wallet


@pytest.fixture
def organization(db):
    return OrganizationFactory()


def balance(wallet: Wallet | int) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk if isinstance(wallet, Wallet) else wallet).balance
