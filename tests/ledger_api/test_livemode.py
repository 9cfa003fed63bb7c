"""Test mode on a LIVE deployment (issue 14 item 1; SPEC 5; core.livemode): one organization with
a live key and a test key. Everything the test key creates is stored as test mode, each key sees
and touches only its own mode's objects on every list and detail endpoint (the other mode's is a
404), responses carry the right `livemode`, a transaction mixing modes is refused, test money
lands in test platform accounts and never counts toward a live customer's usage, and webhook
events go to the endpoints of their mode.

"Live deployment" is CHAIN_PROVIDER=evm with a node that is not running: nothing here needs it."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Customer, WebhookDelivery, WebhookEndpoint
from accounts.orgs.scopes import ALL_SCOPES
from accounts.orgs.services import api_key_create
from ledger.errors import LivemodeMismatch
from ledger.models import AuthorizationHold, Entry, Transaction, UsageCounter, Wallet
from ledger.posting import Issue, Transfer, ledger_post
from ledger.services import wallet_open
from payorders.models import PayOrder
from tests.factories.ledger_api import op_issue, op_transfer, person, platform_asset, post_tx, user_client
from tests.factories.orgs import OrgKey, key_client, make_org_key
from wallets.models import Schedule

pytestmark = pytest.mark.django_db


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


@pytest.fixture
def keys(live):
    """(live client, test client, the organization's live key): two keys of one organization."""
    org = make_org_key("Modes")
    test_key, test_secret = api_key_create(organization=org.organization, name="test", actor=org.owner, scopes=ALL_SCOPES, livemode=False)
    assert test_secret.startswith("sk_test_") and not test_key.livemode
    return key_client(org), key_client(OrgKey(org.organization, test_key, test_secret, org.owner)), org


def _ok(response, status=200):
    assert response.status_code == status, response.content
    return response.json()


def _missing(response):
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "NOT_FOUND"


def _world(client, *, reference: str = "fund-1") -> dict:
    """Through the API with one key: customer alice, her USD wallet, a system wallet, a funding
    transaction and a transfer into the system wallet."""
    customer = _ok(client.put("/api/v1/customers/alice", {"name": "Alice", "kyc_level": "verified"}, format="json"), 201)
    wallet = _ok(client.post("/api/v1/wallets", {"currency": "USD", "customer_external_id": "alice"}, format="json"), 201)
    system = _ok(client.post("/api/v1/wallets", {"currency": "USD", "system": True}, format="json"), 201)
    funded = _ok(post_tx(client, {"reference": reference, "operations": [op_issue(wallet["id"], "100.00")]}), 201)
    moved = _ok(post_tx(client, {"reference": reference + "-t", "operations": [op_transfer(wallet["id"], system["id"], "10.00")]}), 201)
    return {"customer": customer, "wallet": wallet, "system": system, "funded": funded, "moved": moved}


def test_each_key_sees_and_touches_only_its_own_mode(keys):
    live_client, test_client, org = keys
    usd = platform_asset("USD")
    live, test = _world(live_client), _world(test_client)  # the same external id and reference: one of each per mode

    # stored modes, and what the responses say
    for world, mode in ((live, True), (test, False)):
        assert world["customer"]["livemode"] is mode and world["wallet"]["livemode"] is mode and world["system"]["livemode"] is mode
        assert world["funded"]["livemode"] is mode and world["moved"]["livemode"] is mode
        assert Wallet.objects.get(pk=world["wallet"]["id"]).livemode is mode
        assert Transaction.objects.get(pk=world["funded"]["id"]).livemode is mode
    assert Customer.objects.filter(organization=org.organization, external_id="alice").count() == 2
    assert test["funded"]["id"] != live["funded"]["id"]

    for client, mine, theirs, mode in ((live_client, live, test, True), (test_client, test, live, False)):
        # customers
        listed = _ok(client.get("/api/v1/customers"))
        assert listed["count"] == 1 and listed["results"][0]["livemode"] is mode
        detail = _ok(client.get("/api/v1/customers/alice"))
        assert detail["livemode"] is mode and [w["id"] for w in detail["wallets"]] == [mine["wallet"]["id"]]
        # wallets: list, detail, entries, balance, statements
        wallets = _ok(client.get("/api/v1/wallets"))
        assert sorted(w["id"] for w in wallets["results"]) == sorted([mine["wallet"]["id"], mine["system"]["id"]])
        assert {w["livemode"] for w in wallets["results"]} == {mode}
        assert _ok(client.get(f"/api/v1/wallets/{mine['wallet']['id']}"))["balance"] == "90.00"
        for path in ("", "/entries", "/balance", "/statement"):
            _ok(client.get(f"/api/v1/wallets/{mine['wallet']['id']}{path}"))
            _missing(client.get(f"/api/v1/wallets/{theirs['wallet']['id']}{path}"))
        _missing(client.get(f"/api/v1/wallets/{theirs['system']['id']}"))
        _ok(client.get("/api/v1/customers/alice/statement"))
        # transactions: list, detail, entries
        txs = _ok(client.get("/api/v1/transactions"))
        assert sorted(t["id"] for t in txs["results"]) == sorted([mine["funded"]["id"], mine["moved"]["id"]])
        assert {t["livemode"] for t in txs["results"]} == {mode}
        assert _ok(client.get(f"/api/v1/transactions/{mine['funded']['id']}"))["livemode"] is mode
        for path in ("", "/entries"):
            _missing(client.get(f"/api/v1/transactions/{theirs['funded']['id']}{path}"))
        # touching the other mode's objects: 404, nothing moves
        r = post_tx(client, {"reference": f"cross-{mode}", "operations": [op_issue(theirs["wallet"]["id"], "1.00")]})
        _missing(r)
        r = post_tx(client, {"reference": f"mix-{mode}", "operations": [op_transfer(mine["wallet"]["id"], theirs["wallet"]["id"], "1.00")]})
        _missing(r)
        r = client.post(f"/api/v1/transactions/{theirs['funded']['id']}/reverse", {"reason": "no"}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
        _missing(r)
        r = client.post(f"/api/v1/wallets/{theirs['wallet']['id']}/suspend", {"reason": "no"}, format="json")
        _missing(r)
        # a reference is per mode: reusing one's own is DUPLICATE_REFERENCE carrying one's own transaction
        dup = post_tx(client, {"reference": "fund-1", "operations": [op_issue(mine["wallet"]["id"], "1.00")]})
        assert dup.status_code == 409 and dup.json()["error"]["details"]["transaction"]["id"] == mine["funded"]["id"]

    assert Wallet.objects.get(pk=live["wallet"]["id"]).balance == Wallet.objects.get(pk=test["wallet"]["id"]).balance == Decimal("90.00")

    # test money lands in the test platform accounts (issuance shards of mode test), never a live one
    test_entries = Entry.objects.filter(transaction_id=test["funded"]["id"]).select_related("wallet")
    live_entries = Entry.objects.filter(transaction_id=live["funded"]["id"]).select_related("wallet")
    assert {e.wallet.livemode for e in test_entries} == {False} and {e.wallet.livemode for e in live_entries} == {True}
    issuance = Wallet.objects.filter(asset=usd, purpose="issuance", customer__isnull=True, organization__isnull=True)
    assert issuance.filter(livemode=False).exists() and issuance.filter(livemode=True).exists()

    # usage: the test customer's movements count toward the test customer only
    live_alice = Customer.objects.get(organization=org.organization, external_id="alice", livemode=True)
    test_alice = Customer.objects.get(organization=org.organization, external_id="alice", livemode=False)
    _ok(post_tx(test_client, {"reference": "big", "operations": [op_issue(test["wallet"]["id"], "5000.00")]}), 201)
    live_usage = sum(u.amount for u in UsageCounter.objects.filter(customer=live_alice, asset=usd))
    test_usage = sum(u.amount for u in UsageCounter.objects.filter(customer=test_alice, asset=usd))
    assert live_usage == Decimal("110.00") and test_usage == Decimal("5110.00")


def test_holds_and_schedules_are_per_mode(keys):
    live_client, test_client, _ = keys
    live, test = _world(live_client), _world(test_client)
    for client, mine, theirs, mode in ((live_client, live, test, True), (test_client, test, live, False)):
        body = {"source_wallet_id": mine["wallet"]["id"], "destination_wallet_id": mine["system"]["id"], "amount": "5.00",
                "currency": "USD", "reference": f"hold-{mode}"}
        hold = _ok(client.post("/api/v1/holds", body, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex), 201)
        assert hold["livemode"] is mode and AuthorizationHold.objects.get(pk=hold["id"]).livemode is mode
        cross = {**body, "destination_wallet_id": theirs["system"]["id"], "reference": f"hold-x-{mode}"}
        _missing(client.post("/api/v1/holds", cross, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex))
        schedule = _ok(client.post("/api/v1/schedules", {
            "source_wallet_id": mine["wallet"]["id"], "destination_wallet_id": mine["system"]["id"], "amount": "1.00", "currency": "USD",
            "rule": "FREQ=DAILY", "start_at": (timezone.now() + timedelta(minutes=5)).replace(microsecond=0).isoformat(),
        }, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex), 201)
        assert schedule["livemode"] is mode and Schedule.objects.get(pk=schedule["id"]).livemode is mode
        mine["hold"], mine["schedule"] = hold, schedule

    for client, mine, theirs, mode in ((live_client, live, test, True), (test_client, test, live, False)):
        holds = _ok(client.get("/api/v1/holds"))
        assert [h["id"] for h in holds["results"]] == [mine["hold"]["id"]] and holds["results"][0]["livemode"] is mode
        _ok(client.get(f"/api/v1/holds/{mine['hold']['id']}"))
        _missing(client.get(f"/api/v1/holds/{theirs['hold']['id']}"))
        _missing(client.post(f"/api/v1/holds/{theirs['hold']['id']}/void", {}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex))
        schedules = _ok(client.get("/api/v1/schedules"))
        assert [s["id"] for s in schedules["results"]] == [mine["schedule"]["id"]] and schedules["results"][0]["livemode"] is mode
        for path in ("", "/occurrences"):
            _missing(client.get(f"/api/v1/schedules/{theirs['schedule']['id']}{path}"))
        _missing(client.post(f"/api/v1/schedules/{theirs['schedule']['id']}/pause", {}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex))
    assert AuthorizationHold.objects.get(pk=live["hold"]["id"]).status == AuthorizationHold.Status.HELD
    assert AuthorizationHold.objects.get(pk=test["hold"]["id"]).status == AuthorizationHold.Status.HELD
    r = test_client.post(f"/api/v1/holds/{test['hold']['id']}/capture", {}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert _ok(r)["status"] == "captured"
    assert Transaction.objects.get(pk=test["hold"]["transaction_id"]).livemode is False


def test_pay_orders_and_webhook_endpoints_are_per_mode(keys):
    live_client, test_client, org = keys
    orders, endpoints = {}, {}
    for client, mode in ((live_client, True), (test_client, False)):
        order = _ok(client.post("/api/v1/pay-orders", {"type": "SALE", "amount": "10.00", "currency": "USD"}, format="json",
                                HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex), 201)
        assert order["livemode"] is mode
        orders[mode] = order["id"]
        endpoint = _ok(client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook", "events": ["*"]}, format="json"), 201)
        assert endpoint["livemode"] is mode and WebhookEndpoint.objects.get(pk=endpoint["id"]).livemode is mode
        endpoints[mode] = endpoint["id"]
    for client, mode in ((live_client, True), (test_client, False)):
        listed = _ok(client.get("/api/v1/pay-orders"))
        assert [o["id"] for o in listed["results"]] == [orders[mode]] and listed["results"][0]["livemode"] is mode
        _ok(client.get(f"/api/v1/pay-orders/{orders[mode]}"))
        _missing(client.get(f"/api/v1/pay-orders/{orders[not mode]}"))
        _missing(client.post(f"/api/v1/pay-orders/{orders[not mode]}/cancel", {}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex))
        listed = _ok(client.get("/api/v1/webhook-endpoints"))
        assert [e["id"] for e in listed["results"]] == [endpoints[mode]] and listed["results"][0]["livemode"] is mode
        _ok(client.get(f"/api/v1/webhook-endpoints/{endpoints[mode]}"))
        _missing(client.get(f"/api/v1/webhook-endpoints/{endpoints[not mode]}"))
        _missing(client.post(f"/api/v1/webhook-endpoints/{endpoints[not mode]}/disable", {}, format="json"))
        _missing(client.delete(f"/api/v1/webhook-endpoints/{endpoints[not mode]}"))
    assert PayOrder.objects.get(public_id=orders[True]).livemode and not PayOrder.objects.get(public_id=orders[False]).livemode

    # an event goes to the endpoints of its mode only, and says which mode it is
    WebhookDelivery.objects.all().delete()
    _ok(live_client.put("/api/v1/customers/bob", {"name": "Bob"}, format="json"), 201)
    _ok(test_client.put("/api/v1/customers/bob", {"name": "Bob"}, format="json"), 201)
    deliveries = list(WebhookDelivery.objects.filter(event_type="customer.created").order_by("created_at"))
    assert [(d.endpoint_id, d.payload["livemode"]) for d in deliveries] == [(endpoints[True], True), (endpoints[False], False)]
    for client, mode in ((live_client, True), (test_client, False)):
        listed = _ok(client.get("/api/v1/webhook-deliveries"))
        assert {d["id"] for d in listed["results"]} == {str(d.pk) for d in deliveries if d.endpoint_id == endpoints[mode]}
        other = next(d for d in deliveries if d.endpoint_id == endpoints[not mode])
        _missing(client.get(f"/api/v1/webhook-deliveries/{other.pk}"))
        _missing(client.post(f"/api/v1/webhook-deliveries/{other.pk}/redeliver", {}, format="json"))


def test_a_transaction_mixing_modes_is_refused_and_writes_nothing(keys):
    """The engine's own check, under the lock: a person (live) paying into a test-mode wallet, or
    any posting naming wallets of both modes, is 400 LIVEMODE_MISMATCH and nothing is written."""
    _, test_client, org = keys
    usd = platform_asset("USD")
    test = _world(test_client)
    jane = person("jane@example.com")
    jane_usd = wallet_open(asset=usd, customer=jane.customer)
    assert jane_usd.livemode is True
    ledger_post(type="deposit", operations=[Issue(wallet=jane_usd, amount=Decimal("50"))], customer=jane.customer).raise_for_error()
    before = (Transaction.objects.count(), Entry.objects.count())

    r = user_client(jane).post("/api/v1/transfers", {
        "source_wallet_id": jane_usd.pk, "destination_wallet_id": test["wallet"]["id"], "amount": "5.00", "currency": "USD",
    }, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    assert error["code"] == "LIVEMODE_MISMATCH" and "test-mode" in error["message"]
    assert error["details"] == {"live_wallet_ids": [jane_usd.pk], "test_wallet_ids": [test["wallet"]["id"]]}
    with pytest.raises(LivemodeMismatch):
        ledger_post(type="transfer", operations=[Transfer(source=test["wallet"]["id"], destination=jane_usd.pk, amount=Decimal("1"))])
    assert (Transaction.objects.count(), Entry.objects.count()) == before
    assert Wallet.objects.get(pk=jane_usd.pk).balance == Decimal("50")

    # a customer's wallet is of the customer's mode; a test key never finds a live customer
    live_customer = Customer.objects.create(organization=org.organization, external_id="carol", livemode=True)
    with pytest.raises(LivemodeMismatch):
        wallet_open(asset=usd, customer=live_customer, livemode=False)
    r = test_client.post("/api/v1/wallets", {"currency": "USD", "customer_external_id": "carol"}, format="json")
    _missing(r)


def test_the_sandbox_deployment_is_one_test_world(org, settings):
    """With the sandbox on, everything is test mode: both keys of an organization see the same
    objects, all `livemode: false`, and nothing is refused for its mode."""
    assert settings.CHAIN_PROVIDER == "sandbox"
    test_key, test_secret = api_key_create(organization=org.organization, name="test", actor=org.owner, scopes=ALL_SCOPES, livemode=False)
    live_client, test_client = key_client(org), key_client(OrgKey(org.organization, test_key, test_secret, org.owner))
    world = _world(live_client)
    assert world["customer"]["livemode"] is False and world["funded"]["livemode"] is False
    assert Wallet.objects.get(pk=world["wallet"]["id"]).livemode is False  # stored test mode for good
    seen = _ok(test_client.get(f"/api/v1/wallets/{world['wallet']['id']}"))
    assert seen["livemode"] is False and seen["balance"] == "90.00"
    moved = _ok(post_tx(test_client, {"reference": "t-1", "operations": [op_transfer(world["system"]["id"], world["wallet"]["id"], "1.00")]}), 201)
    assert moved["livemode"] is False
    assert {t["id"] for t in _ok(live_client.get("/api/v1/transactions"))["results"]} >= {moved["id"], world["funded"]["id"]}
