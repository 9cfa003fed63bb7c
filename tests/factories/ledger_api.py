"""Fixtures for the ledger API: two organizations with API keys (org A "Alpha", org B "Beta"),
their customers' and system wallets in a custom asset and in USD, people with their own wallets,
and a helper that posts organization transactions with a fresh Idempotency-Key.

Wallets are opened and funded through the ledger services (never by writing balances). Platform
assets are fetched with get_or_create: a transactional test's flush removes the seed migration's
rows for the tests that run after it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ledger.models import Asset, Wallet
from ledger.posting import Issue, ledger_post
from ledger.services import asset_create, wallet_open
from tests.factories.accounts import CustomerFactory, OrgCustomerFactory, UserFactory
from tests.factories.orgs import OrgKey, key_client, make_org_key

PLATFORM = {"USD": ("US Dollar", 2, "fiat"), "EUR": ("Euro", 2, "fiat"), "ETH": ("Ether", 18, "crypto")}


def platform_asset(code: str) -> Asset:
    name, exponent, kind = PLATFORM[code]
    asset, _ = Asset.objects.get_or_create(code=code, organization=None, defaults={"name": name, "exponent": exponent, "kind": kind})
    return asset


def fund(wallet: Wallet, amount: str, **owner) -> Wallet:
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=Decimal(amount))], **owner).raise_for_error()
    wallet.refresh_from_db()
    return wallet


def customer_wallet(org_key: OrgKey, asset: Asset, funded: str | None = None, *, external_id: str | None = None, name: str = "") -> Wallet:
    customer = OrgCustomerFactory(organization=org_key.organization, **({"external_id": external_id} if external_id else {}),
                                  **({"name": name} if name else {}))
    wallet = wallet_open(asset=asset, customer=customer)
    return fund(wallet, funded) if funded else wallet


def system_wallet(org_key: OrgKey, asset: Asset, label: str = "") -> Wallet:
    return wallet_open(asset=asset, organization=org_key.organization, label=label)


def person(email: str | None = None):
    user = UserFactory(**({"email": email} if email else {}))
    CustomerFactory(user=user)
    return user


def user_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_tx(client: APIClient, body: dict, *, key: str | None = None, **headers):
    return client.post("/api/v1/transactions", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex, **headers)


def op_issue(wallet, amount):
    return {"type": "issue", "wallet_id": wallet.pk if isinstance(wallet, Wallet) else wallet, "amount": amount}


def op_redeem(wallet, amount):
    return {"type": "redeem", "wallet_id": wallet.pk if isinstance(wallet, Wallet) else wallet, "amount": amount}


def op_transfer(source, destination, amount):
    pk = lambda w: w.pk if isinstance(w, Wallet) else w  # noqa: E731
    return {"type": "transfer", "source_wallet_id": pk(source), "destination_wallet_id": pk(destination), "amount": amount}


def balance(wallet: Wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).balance


@pytest.fixture
def org(db) -> OrgKey:
    return make_org_key("Alpha")


@pytest.fixture
def other_org(db) -> OrgKey:
    return make_org_key("Beta")


@pytest.fixture
def client_a(org) -> APIClient:
    return key_client(org)


@pytest.fixture
def client_b(other_org) -> APIClient:
    return key_client(other_org)


@pytest.fixture
def points(org) -> Asset:
    """Org A's custom asset, exponent 0."""
    return asset_create(code="POINTS", name="Loyalty points", exponent=0, organization=org.organization)


@pytest.fixture
def usd(db) -> Asset:
    return platform_asset("USD")
