"""Fixtures for the customer wallets API: users with their own Customer, platform assets (get or
create: a transactional test's TRUNCATE removes the seed migration's rows), wallets opened and
funded through the services."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ledger.models import Asset, Wallet
from ledger.posting import Issue, ledger_post
from ledger.services import wallet_open
from tests.factories.accounts import CustomerFactory, UserFactory

ASSETS = {"USD": ("US Dollar", 2, "fiat"), "EUR": ("Euro", 2, "fiat"), "ETH": ("Ether", 18, "crypto"), "BTC": ("Bitcoin", 8, "crypto")}


def asset(code: str) -> Asset:
    name, exponent, kind = ASSETS[code]
    found, _ = Asset.objects.get_or_create(code=code, organization=None, defaults={"name": name, "exponent": exponent, "kind": kind})
    return found


def person(email: str | None = None):
    user = UserFactory(**({"email": email} if email else {}))
    CustomerFactory(user=user)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def open_wallet(user, code="USD", funded: str | None = None, label: str = "") -> Wallet:
    wallet = wallet_open(asset=asset(code), customer=user.customer, label=label)
    if funded is not None:
        ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=Decimal(funded))], customer=user.customer).raise_for_error()
        wallet.refresh_from_db()
    return wallet


@pytest.fixture
def jane(db):
    return person("jane@example.com")


@pytest.fixture
def john(db):
    return person("john@example.com")


@pytest.fixture
def usd(db) -> Asset:
    return asset("USD")
