"""`/api/v1/holds` end to end over the API on PostgreSQL: authorize (available balance, limits
while open), capture in full and in part, void, expiry by the beat task exactly once, and the
unhappy paths: capture more than held, capture after void or expiry, a capture racing the
expiry task and racing itself in threads, someone else's hold, a used reference.
`ledger_check()` is clean after each."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import WebhookDelivery
from compliance.models import AuditEvent
from ledger.checks import ledger_check
from wallets.movements.holds import holds_expire_due
from ledger.models import AuthorizationHold, Hold, Transaction, Wallet
from ledger.tasks import expire_holds
from tests.factories.orgs import key_client, make_org_key
from tests.concurrency import errors_of, run_in_threads
from tests.factories.ledger_api import customer_wallet, platform_asset, system_wallet

pytestmark = pytest.mark.postgres


def create(client, source, destination, amount, *, currency="USD", reference=None, key=None, **extra):
    body = {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount, "currency": currency,
            "reference": reference or uuid.uuid4().hex, **extra}
    return client.post("/api/v1/holds", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def capture(client, hold_id, body=None, *, key=None):
    return client.post(f"/api/v1/holds/{hold_id}/capture", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def void(client, hold_id, *, key=None):
    return client.post(f"/api/v1/holds/{hold_id}/void", {}, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def wallet(w: Wallet) -> Wallet:
    return Wallet.objects.get(pk=w.pk)


@pytest.fixture
def usd(db):
    return platform_asset("USD")


@pytest.fixture
def pair(org, client_a, usd):
    source = customer_wallet(org, usd, "100.00", name="Ada")
    merchant = system_wallet(org, usd, label="merchant")
    assert client_a.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/h", "events": ["hold.*", "transaction.*"]},
                         format="json").status_code == 201
    return source, merchant


def held(client, source, destination, amount="25.00", **extra) -> dict:
    response = create(client, source, destination, amount, **extra)
    assert response.status_code == 201, response.content
    return response.json()


def test_authorize_takes_the_amount_from_the_available_balance_only(org, client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00", reference="booking-1", description="Hotel", expires_in=3600)
    assert body["status"] == "held" and body["amount"] == "25.00" and body["currency"] == "USD" and body["captured_amount"] is None
    assert body["reference"] == "booking-1" and body["capture_transaction_id"] is None
    w = wallet(source)
    assert (w.balance, w.held, w.available_balance) == (Decimal("100.00"), Decimal("25.00"), Decimal("75.00"))
    tx = Transaction.objects.get(pk=body["transaction_id"])
    assert tx.status == "pending" and tx.reference == "booking-1"
    assert client_a.get(f"/api/v1/wallets/{source.pk}").json()["available_balance"] == "75.00"
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - timezone.now()).total_seconds() - 3600) < 60

    listed = client_a.get("/api/v1/holds").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert client_a.get(f"/api/v1/holds/{body['id']}").json() == body
    assert WebhookDelivery.objects.filter(organization=org.organization, event_type="hold.created").count() == 1
    assert AuditEvent.objects.filter(action="hold.authorization_pending").count() == 1
    assert ledger_check() == []


def test_capture_in_full_posts_the_pending_transaction(org, client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    response = capture(client_a, body["id"])
    assert response.status_code == 200, response.content
    done = response.json()
    assert done["status"] == "captured" and done["captured_amount"] == "25.00" and done["capture_transaction_id"] == body["transaction_id"]
    assert Transaction.objects.get(pk=body["transaction_id"]).status == "completed"
    w, m = wallet(source), wallet(merchant)
    assert (w.balance, w.held, m.balance) == (Decimal("75.00"), 0, Decimal("25.00"))
    assert WebhookDelivery.objects.filter(organization=org.organization, event_type="hold.captured").count() == 1
    assert AuditEvent.objects.filter(action="hold.captured").count() == 1
    assert ledger_check() == []


def test_capture_in_part_posts_that_amount_and_releases_the_rest(client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    response = capture(client_a, body["id"], {"amount": "20.00"})
    assert response.status_code == 200, response.content
    done = response.json()
    assert done["status"] == "captured" and done["captured_amount"] == "20.00"
    capture_tx = Transaction.objects.get(pk=done["capture_transaction_id"])
    assert capture_tx.pk != body["transaction_id"] and capture_tx.status == "completed"
    assert [e.amount for e in capture_tx.entries.all()] == [Decimal("20.00")] * 2
    assert Transaction.objects.get(pk=body["transaction_id"]).status == "voided"
    w, m = wallet(source), wallet(merchant)
    assert (w.balance, w.held, w.available_balance, m.balance) == (Decimal("80.00"), 0, Decimal("80.00"), Decimal("20.00"))
    assert Hold.objects.get(transaction=capture_tx).status == "captured"
    # the capture is an ordinary completed transaction: reversible
    reversed_ = client_a.post(f"/api/v1/transactions/{capture_tx.pk}/reverse", {"reason": "refund"}, format="json",
                              HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert reversed_.status_code == 201, reversed_.content
    assert wallet(source).balance == Decimal("100.00")
    assert ledger_check() == []


def test_capture_more_than_held_is_400_and_the_hold_stays_open(client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    response = capture(client_a, body["id"], {"amount": "25.01"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR" and "amount" in response.json()["error"]["details"]["fields"]
    bad = capture(client_a, body["id"], {"amount": "1.001"})
    assert bad.status_code == 400
    assert AuthorizationHold.objects.get(pk=body["id"]).status == "held"
    assert wallet(source).held == Decimal("25.00")
    assert ledger_check() == []


def test_void_releases_everything_and_nothing_moves_afterwards(org, client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    response = void(client_a, body["id"])
    assert response.status_code == 200 and response.json()["status"] == "voided"
    assert Transaction.objects.get(pk=body["transaction_id"]).status == "voided"
    assert (wallet(source).held, wallet(source).balance, wallet(merchant).balance) == (0, Decimal("100.00"), 0)
    for again in (capture(client_a, body["id"]), void(client_a, body["id"])):
        assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
        assert again.json()["error"]["details"]["status"] == "voided"
    reverse = client_a.post(f"/api/v1/transactions/{body['transaction_id']}/reverse", {"reason": "x"}, format="json",
                            HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert reverse.status_code == 409
    assert WebhookDelivery.objects.filter(organization=org.organization, event_type="hold.voided").count() == 1
    assert ledger_check() == []


def test_a_capture_after_expiry_is_refused_and_expires_the_hold_once(org, client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    AuthorizationHold.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = capture(client_a, body["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_STATE" and response.json()["error"]["details"]["status"] == "expired"
    assert AuthorizationHold.objects.get(pk=body["id"]).status == "expired"
    assert (wallet(source).held, wallet(merchant).balance) == (0, 0)
    assert holds_expire_due() == 0  # already expired: the task has nothing to do
    assert WebhookDelivery.objects.filter(organization=org.organization, event_type="hold.expired").count() == 1
    assert ledger_check() == []


def test_the_beat_task_expires_due_holds_exactly_once(org, client_a, pair):
    from config.celery import app

    source, merchant = pair
    due = held(client_a, source, merchant, "10.00")
    later = held(client_a, source, merchant, "5.00")
    AuthorizationHold.objects.filter(pk=due["id"]).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert expire_holds() == 1
    assert expire_holds() == 0
    assert AuthorizationHold.objects.get(pk=due["id"]).status == "expired"
    assert AuthorizationHold.objects.get(pk=later["id"]).status == "held"
    assert wallet(source).held == Decimal("5.00")
    assert Transaction.objects.get(pk=due["transaction_id"]).failure_code == "HOLD_EXPIRED"
    assert AuditEvent.objects.filter(action="hold.expired").count() == 1
    assert any(e["task"] == "ledger.tasks.expire_holds" for e in app.conf.beat_schedule.values())
    assert ledger_check() == []


def test_authorize_refusals(org, client_a, client_b, pair, usd):
    source, merchant = pair
    too_much = create(client_a, source, merchant, "100.01")
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert Transaction.objects.get(pk=too_much.json()["error"]["details"]["transaction_id"]).status == "failed"
    assert not AuthorizationHold.objects.exists()

    held(client_a, source, merchant, "60.00", reference="dup")
    second = create(client_a, source, merchant, "40.01")  # 40.00 available
    assert second.status_code == 422 and second.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert held(client_a, source, merchant, "40.00")["status"] == "held"
    used = create(client_a, source, merchant, "1.00", reference="dup")
    assert used.status_code == 409 and used.json()["error"]["code"] == "DUPLICATE_REFERENCE"

    platform_asset("EUR")
    mismatch = create(client_a, source, merchant, "1.00", currency="EUR")
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "CURRENCY_MISMATCH"
    other = make_org_key("Gamma")
    theirs = customer_wallet(other, usd, "10.00")
    assert create(client_a, theirs, merchant, "1.00").status_code == 404
    assert create(client_a, source, source, "1.00").status_code == 400
    missing_key = client_a.post("/api/v1/holds", {}, format="json")
    assert missing_key.status_code == 400 and missing_key.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert ledger_check() == []


def test_someone_elses_hold_is_404(client_a, client_b, pair):
    source, merchant = pair
    body = held(client_a, source, merchant)
    for response in (client_b.get(f"/api/v1/holds/{body['id']}"), capture(client_b, body["id"]), void(client_b, body["id"])):
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert client_b.get("/api/v1/holds").json()["count"] == 0
    assert AuthorizationHold.objects.get(pk=body["id"]).status == "held"


def test_open_holds_count_toward_limits_until_voided(org, client_a, usd):
    """An organization customer at KYC level none (daily 2,000 outgoing): holds of 900 + 900
    leave 200; a third of 900 is refused while they are open, and passes once one is voided."""
    source = customer_wallet(org, usd, "5000.00")
    merchant = system_wallet(org, usd, label="merchant")
    first = held(client_a, source, merchant, "900.00")
    held(client_a, source, merchant, "900.00")
    third = create(client_a, source, merchant, "900.00")
    assert third.status_code == 422 and third.json()["error"]["code"] == "LIMIT_EXCEEDED", third.content
    assert void(client_a, first["id"]).status_code == 200
    assert create(client_a, source, merchant, "900.00").status_code == 201
    assert ledger_check() == []


def test_idempotent_capture_replays(client_a, pair):
    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    first = capture(client_a, body["id"], {"amount": "10.00"}, key="cap-1")
    replay = capture(client_a, body["id"], {"amount": "10.00"}, key="cap-1")
    assert first.status_code == replay.status_code == 200 and replay["Idempotency-Replayed"] == "true"
    assert replay.json() == first.json()
    assert wallet(merchant).balance == Decimal("10.00")
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_a_capture_racing_the_expiry_task_in_threads_releases_the_funds_exactly_once():
    org = make_org_key("Racers")
    usd = platform_asset("USD")
    source = customer_wallet(org, usd, "100.00")
    merchant = system_wallet(org, usd, label="merchant")
    client = key_client(org)
    holds = [held(client, source, merchant, "10.00") for _ in range(4)]
    AuthorizationHold.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    clients = [key_client(org) for _ in range(4)]

    def work(n: int):
        if n % 2 == 0:
            return holds_expire_due()
        return [capture(clients[n], h["id"]).status_code for h in holds]

    results = run_in_threads(4, work)
    assert not errors_of(results), errors_of(results)
    captures = [code for r in results if isinstance(r, list) for code in r]
    assert captures and set(captures) == {409}  # past expiry, no capture posts
    assert sum(r for r in results if isinstance(r, int)) <= 4
    assert set(AuthorizationHold.objects.values_list("status", flat=True)) == {"expired"}
    assert AuditEvent.objects.filter(action="hold.expired").count() == 4  # once per hold, whoever did it
    w = wallet(source)
    assert (w.balance, w.held) == (Decimal("100.00"), 0) and wallet(merchant).balance == 0
    assert set(Transaction.objects.filter(pk__in=[h["transaction_id"] for h in holds]).values_list("status", flat=True)) == {"voided"}
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_a_hold_captured_by_racing_requests_posts_once():
    org = make_org_key("Racers")
    usd = platform_asset("USD")
    source = customer_wallet(org, usd, "100.00")
    merchant = system_wallet(org, usd, label="merchant")
    body = held(key_client(org), source, merchant, "30.00")
    clients = [key_client(org) for _ in range(6)]

    def work(n: int):
        if n == 5:
            return void(clients[n], body["id"]).status_code
        return capture(clients[n], body["id"], {"amount": "20.00"}).status_code

    results = run_in_threads(6, work)
    assert not errors_of(results), errors_of(results)
    assert sorted(results).count(200) == 1 and sorted(results).count(409) == 5, results
    hold = AuthorizationHold.objects.get(pk=body["id"])
    merchant_balance = wallet(merchant).balance
    if hold.status == "captured":
        assert merchant_balance == Decimal("20.00") and wallet(source).balance == Decimal("80.00")
    else:
        assert hold.status == "voided" and merchant_balance == 0
    assert wallet(source).held == 0
    assert ledger_check() == []


@pytest.mark.parametrize("amount", [None, "10.00"])
def test_a_capture_the_ledger_refuses_leaves_the_hold_open(org, client_a, pair, amount):
    """A destination suspended after the authorization: the capture (in full or in part) is 409
    WALLET_INACTIVE, audited, and the hold stays held with its funds reserved; once the wallet is
    active again the capture goes through."""
    from ledger.services import wallet_activate, wallet_suspend

    source, merchant = pair
    body = held(client_a, source, merchant, "25.00")
    wallet_suspend(wallet=merchant)
    refused = capture(client_a, body["id"], {"amount": amount} if amount else {})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "WALLET_INACTIVE", refused.content
    assert AuthorizationHold.objects.get(pk=body["id"]).status == "held"
    assert Transaction.objects.get(pk=body["transaction_id"]).status == "pending"
    assert (wallet(source).held, wallet(source).balance, wallet(merchant).balance) == (Decimal("25.00"), Decimal("100.00"), 0)
    assert AuditEvent.objects.filter(action="hold.capture_refused").count() == 1
    wallet_activate(wallet=merchant)
    assert capture(client_a, body["id"], {"amount": amount} if amount else {}).status_code == 200
    assert wallet(merchant).balance == Decimal(amount or "25.00") and wallet(source).held == 0
    assert ledger_check() == []
