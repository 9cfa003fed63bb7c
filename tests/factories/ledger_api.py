"""Fixtures for the ledger API: two organizations with API keys (org A "Alpha", org B "Beta"),
their customers' and system wallets in a custom asset and in USD, people with their own wallets,
and a helper that posts organization transactions with a fresh Idempotency-Key.

Wallets are made by the ledger factories (`tests.factories.ledger`: opened by `wallet_open`,
funded by a real deposit through the posting engine, never by writing balances)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ledger.models import Asset, Wallet
from tests.factories.ledger import AssetFactory, OrgWalletFactory, SystemWalletFactory, deposit, platform_asset
from tests.factories.orgs import OrgKey, key_client, make_org_key
from tests.factories.wallets import client_for, person  # noqa: F401  (person: imported from here by the ledger API tests)


def fund(wallet: Wallet, amount: str, **owner) -> Wallet:
    deposit(wallet, amount, **owner)
    return wallet


def customer_wallet(org_key: OrgKey, asset: Asset, funded: str | None = None, *, external_id: str | None = None, name: str = "") -> Wallet:
    customer = {"customer__organization": org_key.organization}
    if external_id:
        customer["customer__external_id"] = external_id
    if name:
        customer["customer__name"] = name
    return OrgWalletFactory(asset=asset, funded=funded or None, **customer)


def system_wallet(org_key: OrgKey, asset: Asset, label: str = "") -> Wallet:
    return SystemWalletFactory(organization=org_key.organization, asset=asset, label=label)


def user_client(user) -> APIClient:
    return client_for(user)


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
    return AssetFactory(code="POINTS", name="Loyalty points", exponent=0, organization=org.organization)


@pytest.fixture
def usd(db) -> Asset:
    return platform_asset("USD")
