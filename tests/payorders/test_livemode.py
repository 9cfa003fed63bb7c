"""Test mode (issue 14 item 1; SPEC 5): `livemode` on API objects and webhooks, test keys that see
only test-mode orders, and payment URIs that can never point at a main network in test mode.

"Live deployment" here is CHAIN_PROVIDER=evm with a node that is not running: a live order then
gets no chain head (the quote service tolerates that), which is all these tests need of it; a
test-mode order never asks that node (it is on the sandbox chain)."""
# ruff: noqa: F811 - `merchant` is a fixture imported from tests.payorders.support

from __future__ import annotations

import re
import socket

import pytest
from bip_utils import Bip44Changes, Bip84, Bip84Coins, P2WPKHAddrEncoder

from accounts.models import WebhookDelivery
from accounts.orgs.services import api_key_create
from ledger.models import Transaction
from payorders.models import PayOrder
from payorders.services.payments import payorder_refresh_confirmations, payorder_scan
from payorders.services.settlement import payorder_settle
from tests.factories.orgs import key_client
from tests.payorders.support import (  # noqa: F401
    API,
    merchant,
    mine,
    new_merchant,
    order_row,
    sandbox_pay,
)

pytestmark = pytest.mark.django_db

TESTNET_BECH32 = re.compile(r"^tb1q[02-9ac-hj-np-z]{38}$")


@pytest.fixture
def live(settings):
    """A live deployment whose Ethereum node is down (nothing here needs it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = f"http://127.0.0.1:{port}"
    settings.EVM_RPC_RETRIES = 0
    settings.EVM_CHAIN_ID = 1
    return settings


def _test_key_client(merchant):
    api_key, secret = api_key_create(
        organization=merchant.organization, name="test", actor=merchant.key.owner, scopes=merchant.key.api_key.scopes, livemode=False
    )
    client = key_client(type("K", (), {"secret": secret})())
    return api_key, secret, client


def test_sandbox_orders_are_test_mode_with_sepolia_and_testnet_uris(merchant):
    order = merchant.create()
    assert order["livemode"] is False
    eth = merchant.pay_details(order["id"], "ETH")
    assert eth["livemode"] is False
    assert re.fullmatch(rf"ethereum:{eth['deposit_address']}@11155111\?value=\d+", eth["payment_uri"])
    assert "@1?" not in eth["payment_uri"]

    other = merchant.create()
    btc = merchant.pay_details(other["id"], "BTC")
    assert TESTNET_BECH32.match(btc["deposit_address"]), btc["deposit_address"]
    assert btc["payment_uri"].startswith(f"bitcoin:{btc['deposit_address']}?amount=")
    # the same key's mainnet address at that index is never handed out in test mode
    row = order_row(other["id"])
    assert row.deposit_address.livemode is False
    detail = merchant.get(other["id"]).json()
    assert detail["livemode"] is False and detail["payment"]["payment_uri"] == btc["payment_uri"]


def test_configured_test_chain_id_is_used(merchant, settings):
    settings.EVM_TEST_CHAIN_ID = 17000  # Holesky
    order = merchant.create()
    assert "@17000?" in merchant.pay_details(order["id"], "ETH")["payment_uri"]


def test_testnet_address_is_the_same_key_encoded_for_testnet(merchant, seed):
    """The tb1 address is the BIP84 testnet address of the registered key (its private key can
    spend it on testnet), index for index."""
    order = merchant.create()
    btc = merchant.pay_details(order["id"], "BTC")
    index = order_row(order["id"]).deposit_address.index
    from tests.payorders.support import _account  # the merchant's BIP84 account number

    account = _account["n"]
    node = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(account).Change(Bip44Changes.CHAIN_EXT).AddressIndex(index)
    mainnet = node.PublicKey().ToAddress()
    expected = P2WPKHAddrEncoder.EncodeKey(node.PublicKey().RawCompressed().ToBytes(), hrp="tb", wit_ver=0)
    assert mainnet.startswith("bc1q") and expected.startswith("tb1q")
    assert btc["deposit_address"] == expected


def test_webhook_and_wallet_payloads_carry_livemode(merchant):
    merchant.subscribe("http://127.0.0.1:9/hooks")
    order = merchant.create()
    delivery = WebhookDelivery.objects.filter(organization=merchant.organization, event_type="payorder.created").get()
    assert delivery.payload["livemode"] is False
    assert delivery.payload["data"]["livemode"] is False and delivery.payload["data"]["id"] == order["id"]
    wallets = merchant.client.get("/api/v1/wallets").json()
    rows = wallets["results"] if isinstance(wallets, dict) else wallets
    assert all(w["livemode"] is False for w in rows)


def test_live_deployment_live_key_gets_mainnet_uri(merchant, live):
    order = merchant.create()
    assert order["livemode"] is True
    eth = merchant.pay_details(order["id"], "ETH")
    assert eth["livemode"] is True and "@1?" in eth["payment_uri"]


def test_test_key_on_a_live_deployment(merchant, live):
    _, secret, test_client = _test_key_client(merchant)
    assert secret.startswith("sk_test_")
    live_order = merchant.create()
    response = test_client.post(API, {"type": "SALE", "amount": "12.00", "currency": "USD"}, format="json")
    assert response.status_code == 201, response.json()
    test_order = response.json()
    assert test_order["livemode"] is False and live_order["livemode"] is True
    assert order_row(test_order["id"]).livemode is False

    # a test key sees only test-mode orders; a live key only live ones (core.livemode)
    assert test_client.get(f"{API}/{live_order['id']}").status_code == 404
    assert test_client.post(f"{API}/{live_order['id']}/cancel", {}, format="json").status_code == 404
    assert order_row(live_order["id"]).status == PayOrder.Status.PENDING
    listed = test_client.get(API).json()
    ids = {o["id"] for o in (listed["results"] if isinstance(listed, dict) else listed)}
    assert ids == {test_order["id"]}
    assert merchant.get(test_order["id"]).status_code == 404
    assert test_client.get(f"{API}/{test_order['id']}").status_code == 200

    # its payment details are on test networks, and it is paid on the sandbox chain
    quote = test_client.post(f"{API}/{test_order['id']}/quote", {"source_currencies": ["BTC"]}, format="json").json()["quotes"][0]
    details = test_client.post(f"{API}/{test_order['id']}/payment-details", {"quote_id": quote["quote_id"]}, format="json").json()
    assert TESTNET_BECH32.match(details["deposit_address"]) and details["livemode"] is False
    eth_order = test_client.post(API, {"type": "SALE", "amount": "5.00", "currency": "USD"}, format="json").json()
    eth_quote = test_client.post(f"{API}/{eth_order['id']}/quote", {"source_currencies": ["ETH"]}, format="json").json()["quotes"][0]
    eth = test_client.post(f"{API}/{eth_order['id']}/payment-details", {"quote_id": eth_quote["quote_id"]}, format="json").json()
    assert "@11155111?" in eth["payment_uri"]

    # the sandbox chain answers the test key on a live deployment, and nobody else
    assert merchant.client.post("/api/v1/sandbox/chain/mine", {"blocks": 1}, format="json").status_code == 404
    sandbox_pay(test_client, details["deposit_address"], details["amount"], "BTC")
    mine(test_client, 1)
    payorder_scan(order_id=order_row(test_order["id"]).pk)  # the sandbox provider, though CHAIN_PROVIDER=evm
    assert order_row(test_order["id"]).status == PayOrder.Status.AWAITING_CONFIRMATION

    # confirmed on the sandbox chain: complete, but a test order never credits the live ledger
    mine(test_client, 3)
    payorder_refresh_confirmations(order_id=order_row(test_order["id"]).pk)
    payorder_settle(order_id=order_row(test_order["id"]).pk)
    paid = order_row(test_order["id"])
    assert paid.status == PayOrder.Status.COMPLETED and paid.settlement_transaction_id is None
    assert not Transaction.objects.filter(reference__startswith=f"payorder:{test_order['id']}").exists()
    refund = test_client.post(
        f"{API}/{test_order['id']}/refund", {"destination_address": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"},
        format="json", HTTP_IDEMPOTENCY_KEY="refund-test-order",
    )
    assert refund.status_code == 201, refund.json()
    assert refund.json()["ledger_transaction_id"] is None and refund.json()["tx_hash"]  # sent on the sandbox chain
    assert not Transaction.objects.filter(reference__startswith=f"payorder:{test_order['id']}").exists()


def test_api_keys_carry_livemode_and_a_test_key_cannot_mint_a_live_one(merchant):
    response = merchant.client.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"], "livemode": False}, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["livemode"] is False and created["secret"].startswith("sk_test_")
    assert merchant.client.post("/api/v1/api-keys", {"name": "prod", "scopes": ["read"]}, format="json").json()["livemode"] is True

    _, _, test_client = _test_key_client(merchant)
    refused = test_client.post("/api/v1/api-keys", {"name": "escalate", "scopes": ["read"]}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"
    ok = test_client.post("/api/v1/api-keys", {"name": "another test", "scopes": ["read"], "livemode": False}, format="json")
    assert ok.status_code == 201 and ok.json()["livemode"] is False
    listed = merchant.client.get("/api/v1/api-keys").json()
    assert {k["name"]: k["livemode"] for k in listed["results"]}["ci"] is False


def test_new_merchant_helper_unchanged(seed, db):
    """Live keys stay the default: a key created without a mode is live."""
    assert new_merchant(seed).key.api_key.livemode is True
