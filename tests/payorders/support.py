"""Shared helpers for the pay-order tests (no tests here): merchants with API keys and extended
public keys, HTTP shortcuts, and the sandbox chain."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bip_utils import Bip44, Bip44Coins, Bip84, Bip84Coins

from accounts.webhooks.services import webhook_endpoint_create
from payorders.models import PayOrder
from payorders.services.addresses import xpub_key_register
from tests.factories.orgs import OrgKey, key_client, make_org_key

API = "/api/v1/pay-orders"
_account = {"n": 0}


def account_keys(seed: bytes, account: int) -> tuple[str, str]:
    """(ethereum xpub, bitcoin zpub) of BIP44/BIP84 account `account` of the test seed."""
    eth = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account).PublicKey().ToExtended()
    btc = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(account).PublicKey().ToExtended()
    return eth, btc


class Merchant:
    def __init__(self, key: OrgKey, seed: bytes, account: int):
        self.key = key
        self.organization = key.organization
        self.client = key_client(key)
        eth, btc = account_keys(seed, account)
        xpub_key_register(organization=self.organization, chain="ethereum", xpub=eth)
        xpub_key_register(organization=self.organization, chain="bitcoin", xpub=btc)

    def create(self, **body):
        body = {"type": "SALE", "amount": "100.00", "currency": "USD", **body}
        response = self.client.post(API, body, format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    def post(self, order_id: str, action: str, body: dict | None = None, **extra):
        return self.client.post(f"{API}/{order_id}/{action}", body or {}, format="json", **extra)

    def get(self, order_id: str):
        return self.client.get(f"{API}/{order_id}")

    def quote(self, order_id: str, currency: str) -> dict:
        response = self.post(order_id, "quote", {"source_currencies": [currency]})
        assert response.status_code == 200, response.json()
        (quote,) = response.json()["quotes"]
        return quote

    def pay_details(self, order_id: str, currency: str = "ETH") -> dict:
        quote = self.quote(order_id, currency)
        response = self.post(order_id, "payment-details", {"quote_id": quote["quote_id"]})
        assert response.status_code == 200, response.json()
        return response.json()

    def subscribe(self, url: str) -> str:
        _, secret = webhook_endpoint_create(organization=self.organization, url=url, events=["payorder.*"])
        return secret


def new_merchant(seed: bytes, name: str | None = None) -> Merchant:
    _account["n"] += 1
    return Merchant(make_org_key(name), seed, _account["n"])


def order_row(order_id: str) -> PayOrder:
    return PayOrder.objects.get(public_id=order_id)


def history(order_id: str) -> list[tuple[str, str]]:
    return [(c.from_status, c.to_status) for c in order_row(order_id).status_changes.all()]


def sandbox_pay(client, address: str, amount, currency: str = "ETH") -> str:
    response = client.post("/api/v1/sandbox/chain/transactions", {"to_address": address, "amount": str(amount), "currency": currency}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["tx_hash"]


def mine(client, blocks: int = 1) -> int:
    response = client.post("/api/v1/sandbox/chain/mine", {"blocks": blocks}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["block_number"]


D = Decimal


def reseed() -> None:
    """Transactional tests flush the database, migration seeds included: put back the platform
    assets and the default fee rules (both seeders are idempotent)."""
    from importlib import import_module

    from django.apps import apps

    import_module("ledger.migrations.0003_seed_assets").seed(apps, None)
    import_module("compliance.migrations.0005_seed_defaults").seed(apps, None)


@pytest.fixture
def merchant(db, seed) -> Merchant:
    return new_merchant(seed)
