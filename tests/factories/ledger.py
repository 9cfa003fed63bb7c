"""Ledger fixtures: platform assets come from the seed migration; wallets are opened and funded
through the services (never by writing balances)."""

from decimal import Decimal

import pytest

from ledger.models import Asset, Wallet
from ledger.posting import Issue, ledger_post
from ledger.services import wallet_open
from tests.factories.accounts import CustomerFactory, OrganizationFactory


SEEDED = {"USD": ("US Dollar", 2, "fiat"), "EUR": ("Euro", 2, "fiat"), "ETH": ("Ether", 18, "crypto")}


def platform_asset(code: str) -> Asset:
    """The seeded asset. get_or_create because a transactional test's flush (TRUNCATE) removes
    what the seed migration inserted, for the transactional tests that run after it."""
    name, exponent, kind = SEEDED[code]
    asset, _ = Asset.objects.get_or_create(code=code, organization=None, defaults={"name": name, "exponent": exponent, "kind": kind})
    return asset


@pytest.fixture
def usd(db) -> Asset:
    return platform_asset("USD")


@pytest.fixture
def eur(db) -> Asset:
    return platform_asset("EUR")


@pytest.fixture
def eth(db) -> Asset:
    return platform_asset("ETH")


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
