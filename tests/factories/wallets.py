"""Fixtures for the customer wallets API: users with their own Customer, and their wallets made
by the ledger factories (`tests.factories.ledger`: opened by `wallet_open`, funded by a real
deposit through the posting engine)."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ledger.models import Asset, Wallet
from tests.factories.accounts import CustomerFactory, UserFactory
from tests.factories.ledger import WalletFactory, platform_asset


def asset(code: str) -> Asset:
    return platform_asset(code)


def person(email: str | None = None):
    user = UserFactory(**({"email": email} if email else {}))
    CustomerFactory(user=user)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def open_wallet(user, code="USD", funded: str | Decimal | None = None, label: str = "") -> Wallet:
    """`user`'s wallet in `code`; `funded`: a deposit to the user's customer, as POST /deposits posts it."""
    return WalletFactory(asset=platform_asset(code), customer=user.customer, label=label, funded=funded,
                         deposit_owner={"customer": user.customer})


@pytest.fixture
def jane(db):
    return person("jane@example.com")


@pytest.fixture
def john(db):
    return person("john@example.com")


@pytest.fixture
def usd(db) -> Asset:
    return asset("USD")
