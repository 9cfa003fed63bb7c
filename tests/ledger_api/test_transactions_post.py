"""POST /api/v1/transactions: an organization's operations, in order, all or none (seed 003)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import WebhookDelivery, WebhookEndpoint
from compliance.models import AuditEvent
from core.models import IdempotencyRecord
from ledger.models import Entry, Transaction
from ledger.services import wallet_close, wallet_suspend
from tests.factories.accounts import MembershipFactory, UserFactory
from tests.factories.ledger_api import (
    balance,
    customer_wallet,
    op_issue,
    op_redeem,
    op_transfer,
    person,
    post_tx,
    system_wallet,
    user_client,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def w1(org, points):
    return customer_wallet(org, points, "5", external_id="w1-owner", name="Ada Lovelace")


@pytest.fixture
def w2(org, points):
    return customer_wallet(org, points, "7", external_id="w2-owner", name="Bob")


@pytest.fixture
def hooks(org):
    return WebhookEndpoint.objects.create(
        organization=org.organization, url="http://127.0.0.1:9/hooks", events=["*"], secret_encrypted="x"
    ) if False else None


def subscribe(client, events=("*",)):
    response = client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks", "events": list(events)}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


# --- seed 003 ------------------------------------------------------------------------------------


def test_seed_003_transfer_before_issue_fails_at_operation_0_and_moves_nothing(client_a, w1, w2):
    response = post_tx(client_a, {"reference": "seed-003-a", "operations": [op_transfer(w1, w2, "11"), op_issue(w1, "6")]})

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert error["details"]["operation_index"] == 0
    assert error["details"]["code"] == "INSUFFICIENT_FUNDS"
    assert "insufficient" in error["details"]["reason"].lower()
    failed = Transaction.objects.get(pk=error["details"]["transaction_id"])
    assert failed.status == "failed" and failed.reference == "seed-003-a" and failed.failure_operation_index == 0
    assert not Entry.objects.filter(transaction=failed).exists()
    assert error["details"]["transaction"]["status"] == "failed"
    assert error["details"]["transaction"]["failure"]["operation_index"] == 0
    assert (balance(w1), balance(w2)) == (Decimal(5), Decimal(7))


def test_seed_003_issue_first_succeeds(client_a, w1, w2):
    response = post_tx(client_a, {"reference": "seed-003-b", "operations": [op_issue(w1, "6"), op_transfer(w1, w2, "11")]})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "completed" and body["type"] == "ledger" and body["reference"] == "seed-003-b"
    assert response["Location"] == f"/api/v1/transactions/{body['id']}"
    assert (balance(w1), balance(w2)) == (Decimal(0), Decimal(18))
    # summary = the first operation (issue 6 into w1); the caller owns w1, so balance_after is w1's final balance
    assert (body["amount"], body["currency"], body["fee"]) == ("6", "POINTS", "0")
    assert (body["source_wallet_id"], body["destination_wallet_id"]) == (None, w1.pk)
    assert body["destination_wallet_name"] == "Ada Lovelace"
    assert body["balance_after"] == "0"
    assert body["failure"] is None
    assert body["operations"] == [
        {"index": 0, "type": "issue", "wallet_id": w1.pk, "amount": "6", "currency": "POINTS"},
        {"index": 1, "type": "transfer", "source_wallet_id": w1.pk, "destination_wallet_id": w2.pk, "amount": "11", "currency": "POINTS"},
    ]
    own = [(e["wallet_id"], e["entry_type"], e["amount"], e["balance_after"], e["operation_index"]) for e in body["entries"] if e["wallet_id"] in (w1.pk, w2.pk)]
    assert own == [(w1.pk, "credit", "6", "11", 0), (w1.pk, "debit", "11", "0", 1), (w2.pk, "credit", "11", "18", 1)]
    issuance = [e for e in body["entries"] if e["wallet_id"] not in (w1.pk, w2.pk)]
    assert len(issuance) == 1 and issuance[0]["balance_after"] is None  # the platform's account is not the caller's


def test_bodies_are_exactly_the_documented_serializer(client_a, org, points, w1, w2):
    """The view renders the presenter's dict without a serializer pass: it must be what
    LedgerTransactionDetailOutput (the schema's response) renders, field for field, for a
    completed transaction, one through a system wallet, and a failed one (in the 422's details)."""
    import json

    from rest_framework.renderers import JSONRenderer

    from ledger.serializers import LedgerTransactionDetailOutput

    system = system_wallet(org, points)
    bodies = [
        post_tx(client_a, {"reference": "shape-1", "operations": [op_issue(w1, "6"), op_transfer(w1, w2, "2")]}),
        post_tx(client_a, {"reference": "shape-2", "operations": [op_issue(system, "3"), op_transfer(system, w2, "1"), op_redeem(w2, "1")]}),
    ]
    failed = post_tx(client_a, {"reference": "shape-3", "operations": [op_transfer(w2, w1, "1000")]})
    assert [r.status_code for r in bodies] == [201, 201] and failed.status_code == 422
    for body in [r.json() for r in bodies] + [failed.json()["error"]["details"]["transaction"]]:
        assert json.loads(JSONRenderer().render(LedgerTransactionDetailOutput(body).data)) == body


def test_redeem_and_system_wallets(client_a, org, points, w1):
    fees = system_wallet(org, points, label="fees")
    response = post_tx(client_a, {"reference": "r-1", "description": "cash out", "metadata": {"order": 7},
                                  "operations": [op_transfer(w1, fees, 2), op_redeem(w1, "3")]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (balance(w1), balance(fees)) == (Decimal(0), Decimal(2))
    assert body["destination_wallet_name"] == "fees"
    assert body["metadata"] == {"order": 7} or body["metadata"] == {"order": "7"}
    assert body["description"] == "cash out"


def test_usd_amounts_are_formatted_to_the_exponent(client_a, org, usd):
    a = customer_wallet(org, usd)
    response = post_tx(client_a, {"reference": "usd-1", "operations": [op_issue(a, "10.5")]})
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "10.50"
    assert response.json()["balance_after"] == "10.50"


# --- duplicate references -------------------------------------------------------------------------


def test_duplicate_reference_of_a_completed_transaction_is_409_with_that_transaction(client_a, w1, w2):
    first = post_tx(client_a, {"reference": "dup-1", "operations": [op_transfer(w1, w2, "1")]})
    assert first.status_code == 201
    again = post_tx(client_a, {"reference": "dup-1", "operations": [op_transfer(w1, w2, "1")]})  # another key
    assert again.status_code == 409, again.content
    error = again.json()["error"]
    assert error["code"] == "DUPLICATE_REFERENCE"
    assert error["details"]["transaction_id"] == first.json()["id"]
    assert error["details"]["transaction"]["id"] == first.json()["id"]
    assert error["details"]["transaction"]["status"] == "completed"
    assert (balance(w1), balance(w2)) == (Decimal(4), Decimal(8))  # moved once
    assert Transaction.objects.filter(reference="dup-1").count() == 1


def test_duplicate_reference_of_a_failed_transaction_is_409_with_the_failed_one(client_a, w1, w2):
    first = post_tx(client_a, {"reference": "dup-2", "operations": [op_transfer(w1, w2, "50")]})
    assert first.status_code == 422
    failed_id = first.json()["error"]["details"]["transaction_id"]
    # the retry would now succeed, but the reference is spent: the client learns what happened
    again = post_tx(client_a, {"reference": "dup-2", "operations": [op_transfer(w1, w2, "1")]})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "DUPLICATE_REFERENCE"
    assert error["details"]["transaction"]["id"] == failed_id
    assert error["details"]["transaction"]["status"] == "failed"
    assert error["details"]["transaction"]["failure"]["code"] == "INSUFFICIENT_FUNDS"
    assert (balance(w1), balance(w2)) == (Decimal(5), Decimal(7))


def test_references_are_per_organization(client_a, client_b, other_org, w1, w2):
    assert post_tx(client_a, {"reference": "same", "operations": [op_issue(w1, "1")]}).status_code == 201
    from ledger.services import asset_create

    tickets = asset_create(code="TICKETS", name="Tickets", exponent=0, organization=other_org.organization)
    b_wallet = customer_wallet(other_org, tickets)
    assert post_tx(client_b, {"reference": "same", "operations": [op_issue(b_wallet, "1")]}).status_code == 201


# --- idempotency ----------------------------------------------------------------------------------


def test_idempotent_replay_returns_the_stored_response_and_moves_once(client_a, w1, w2):
    body = {"reference": "idem-1", "operations": [op_transfer(w1, w2, "2")]}
    first = post_tx(client_a, body, key="key-1")
    replay = post_tx(client_a, body, key="key-1")
    assert first.status_code == replay.status_code == 201
    assert replay["Idempotency-Replayed"] == "true"
    assert replay.content == first.content
    assert (balance(w1), balance(w2)) == (Decimal(3), Decimal(9))


def test_idempotent_replay_of_a_failure_replays_the_422(client_a, w1, w2):
    body = {"reference": "idem-2", "operations": [op_transfer(w1, w2, "99")]}
    first = post_tx(client_a, body, key="key-2")
    replay = post_tx(client_a, body, key="key-2")
    assert first.status_code == replay.status_code == 422
    assert replay["Idempotency-Replayed"] == "true" and replay.content == first.content
    assert Transaction.objects.filter(reference="idem-2").count() == 1


def test_same_key_other_body_is_422(client_a, w1, w2):
    assert post_tx(client_a, {"reference": "idem-3", "operations": [op_issue(w1, "1")]}, key="k3").status_code == 201
    reused = post_tx(client_a, {"reference": "idem-3b", "operations": [op_issue(w1, "1")]}, key="k3")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert not Transaction.objects.filter(reference="idem-3b").exists()
    assert balance(w1) == Decimal(6)


def test_the_reference_is_the_retry_key_without_an_idempotency_key(client_a, w1, w2):
    """Seed 003: "it's safe to repeat the call with the same Reference ID"."""
    body = {"reference": "ref-only", "operations": [op_transfer(w1, w2, "2")]}
    first = client_a.post("/api/v1/transactions", body, format="json")
    assert first.status_code == 201, first.content
    again = client_a.post("/api/v1/transactions", body, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "DUPLICATE_REFERENCE"
    assert again.json()["error"]["details"]["transaction"]["id"] == first.json()["id"]
    assert (balance(w1), balance(w2)) == (Decimal(3), Decimal(9))
    assert not IdempotencyRecord.objects.exists()
    failed = client_a.post("/api/v1/transactions", {"reference": "ref-fail", "operations": [op_transfer(w1, w2, "99")]}, format="json")
    assert failed.status_code == 422 and failed.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert Transaction.objects.get(reference="ref-fail").status == "failed"  # recorded and committed with the 422
    retried = client_a.post("/api/v1/transactions", {"reference": "ref-fail", "operations": [op_transfer(w1, w2, "99")]}, format="json")
    assert retried.status_code == 409 and retried.json()["error"]["details"]["transaction"]["status"] == "failed"


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    ["0", "-1", "1.5", "abc", "1e3", "", "NaN", "Infinity", True, None, "123456789012345678901", " ", "+1", "0.0"],
)
def test_bad_amounts_are_400_naming_the_field_and_record_nothing(client_a, w1, w2, amount):
    response = post_tx(client_a, {"reference": "bad", "operations": [op_issue(w1, "1"), op_transfer(w1, w2, amount)]})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "operations[1].amount" in error["details"]["fields"]
    assert not Transaction.objects.filter(reference="bad").exists()
    assert balance(w1) == Decimal(5)


def test_float_json_number_is_refused_and_exact_decimal_number_is_accepted(client_a, org, usd):
    wallet = customer_wallet(org, usd)
    raw = b'{"reference": "num-1", "operations": [{"type": "issue", "wallet_id": %d, "amount": 10.25}]}' % wallet.pk
    ok = client_a.post("/api/v1/transactions", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="num-1")
    assert ok.status_code == 201, ok.content
    assert balance(wallet) == Decimal("10.25")
    raw = b'{"reference": "num-2", "operations": [{"type": "issue", "wallet_id": %d, "amount": 0.001}]}' % wallet.pk
    refused = client_a.post("/api/v1/transactions", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="num-2")
    assert refused.status_code == 400
    assert "operations[0].amount" in refused.json()["error"]["details"]["fields"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"operations": [{"type": "issue", "wallet_id": 1, "amount": "1"}]}, "reference"),
        ({"reference": "x", "operations": []}, "operations"),
        ({"reference": "x"}, "operations"),
        ({"reference": "   ", "operations": [{"type": "issue", "wallet_id": 1, "amount": "1"}]}, "reference"),
        ({"reference": "x", "operations": [{"type": "mint", "wallet_id": 1, "amount": "1"}]}, "operations[0].type"),
        ({"reference": "x", "operations": [{"type": "transfer", "source_wallet_id": 1, "amount": "1"}]}, "operations[0].destination_wallet_id"),
        ({"reference": "x", "operations": [{"type": "issue", "source_wallet_id": 1, "wallet_id": 2, "amount": "1"}]}, "operations[0].source_wallet_id"),
        ({"reference": "x", "operations": [{"type": "issue", "wallet_id": "one", "amount": "1"}]}, "operations[0].wallet_id"),
        ({"reference": "x", "operations": "issue"}, "operations"),
        ({"reference": "x", "operations": [{"type": "issue", "wallet_id": 1, "amount": "1"}] * 101}, "operations"),
        ({"reference": "x", "metadata": [1], "operations": [{"type": "issue", "wallet_id": 1, "amount": "1"}]}, "metadata"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(client_a, w1, body, field):
    response = post_tx(client_a, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"], response.json()
    assert Transaction.objects.count() == 1  # the fixture's deposit into w1


def test_transfer_to_itself_is_400(client_a, w1):
    response = post_tx(client_a, {"reference": "self", "operations": [op_transfer(w1, w1, "1")]})
    assert response.status_code == 400
    assert not Transaction.objects.filter(reference="self").exists()


# --- wallets that are not the caller's, or not usable -----------------------------------------------


def test_another_organizations_wallet_is_404_like_a_missing_one_and_moves_nothing(client_b, other_org, w1, w2):
    from ledger.services import asset_create

    tickets = asset_create(code="TICKETS", name="Tickets", exponent=0, organization=other_org.organization)
    mine = customer_wallet(other_org, tickets, "10")
    cases = {
        "issue into A's wallet": [op_issue(w1, "1")],
        "redeem from A's wallet": [op_redeem(w1, "1")],
        "transfer out of A's wallet": [op_transfer(w1, w2, "1")],
        "transfer from mine into A's": [op_transfer(mine, w1, "1")],
    }
    for name, operations in cases.items():
        response = post_tx(client_b, {"reference": name, "operations": operations})
        assert response.status_code == 404, name
        assert response.json()["error"]["code"] == "NOT_FOUND"
    missing = post_tx(client_b, {"reference": "missing", "operations": [op_issue(999_999_999, "1")]})
    theirs = post_tx(client_b, {"reference": "missing", "operations": [op_issue(w1, "1")]})
    assert missing.json() == theirs.json()  # nothing tells A's wallet apart from no wallet
    assert not Transaction.objects.filter(organization=other_org.organization).exists()
    assert (balance(w1), balance(w2), balance(mine)) == (Decimal(5), Decimal(7), Decimal(10))


def test_a_users_wallet_and_platform_accounts_are_404(client_a, usd, org):
    jane = person()
    from ledger.services import wallet_open

    personal = wallet_open(asset=usd, customer=jane.customer)
    org_wallet = customer_wallet(org, usd, "5")
    for operations in ([op_issue(personal, "1")], [op_transfer(org_wallet, personal, "1")]):
        response = post_tx(client_a, {"reference": "u", "operations": operations})
        assert response.status_code == 404
    issuance = Entry.objects.filter(wallet__kind="issuance").values_list("wallet_id", flat=True).first()
    assert post_tx(client_a, {"reference": "p", "operations": [op_transfer(issuance, org_wallet, "1")]}).status_code == 404


def test_suspended_and_closed_wallets_are_wallet_inactive_and_the_attempt_is_recorded(client_a, org, points, w1, w2):
    wallet_suspend(wallet=w2)
    response = post_tx(client_a, {"reference": "inactive-1", "operations": [op_issue(w1, "1"), op_transfer(w1, w2, "1")]})
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "WALLET_INACTIVE"
    assert error["details"]["operation_index"] == 1
    assert Transaction.objects.get(pk=error["details"]["transaction_id"]).status == "failed"
    assert balance(w1) == Decimal(5)

    empty = customer_wallet(org, points)
    wallet_close(wallet=empty)
    closed = post_tx(client_a, {"reference": "inactive-2", "operations": [op_issue(empty, "1")]})
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "WALLET_INACTIVE"


def test_currency_mismatch_is_recorded(client_a, org, usd, w1):
    dollars = customer_wallet(org, usd, "5")
    response = post_tx(client_a, {"reference": "mix", "operations": [op_transfer(dollars, w1, "1")]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "CURRENCY_MISMATCH" and error["details"]["operation_index"] == 0
    assert Transaction.objects.get(reference="mix").status == "failed"
    stated = post_tx(client_a, {"reference": "mix-2", "operations": [{**op_issue(w1, "1"), "currency": "USD"}]})
    assert stated.status_code == 400 and stated.json()["error"]["code"] == "CURRENCY_MISMATCH"


# --- who may post ---------------------------------------------------------------------------------


def test_users_and_viewer_members_cannot_post_but_developers_can(org, w1):
    body = {"reference": "member", "operations": [op_issue(w1, "1")]}
    stranger = user_client(UserFactory())
    assert post_tx(stranger, body).status_code == 403
    viewer = UserFactory()
    MembershipFactory(organization=org.organization, user=viewer, role="viewer")
    assert post_tx(user_client(viewer), body, HTTP_X_ORGANIZATION=str(org.organization.pk)).status_code == 403
    developer = UserFactory()
    MembershipFactory(organization=org.organization, user=developer, role="developer")
    response = post_tx(user_client(developer), body, HTTP_X_ORGANIZATION=org.organization.slug)
    assert response.status_code == 201, response.content
    event = AuditEvent.objects.get(action="transaction.completed", target_id=str(response.json()["id"]))
    assert event.actor_id == developer.pk
    from rest_framework.test import APIClient

    assert post_tx(APIClient(), body).status_code == 401


# --- webhooks and audit ---------------------------------------------------------------------------


def test_completed_and_failed_transactions_write_webhook_deliveries_and_audit_events(client_a, org, w1, w2):
    subscribe(client_a, ["transaction.completed", "transaction.failed"])
    ok = post_tx(client_a, {"reference": "hook-ok", "operations": [op_transfer(w1, w2, "1")]})
    bad = post_tx(client_a, {"reference": "hook-bad", "operations": [op_transfer(w1, w2, "100")]})
    dup = post_tx(client_a, {"reference": "hook-ok", "operations": [op_transfer(w1, w2, "1")]})
    assert (ok.status_code, bad.status_code, dup.status_code) == (201, 422, 409)

    deliveries = list(WebhookDelivery.objects.filter(organization=org.organization).order_by("created_at"))
    assert [d.event_type for d in deliveries] == ["transaction.completed", "transaction.failed"]  # none for the duplicate
    assert deliveries[0].payload["data"]["id"] == ok.json()["id"]
    assert deliveries[0].payload["data"]["reference"] == "hook-ok"
    assert deliveries[0].payload["data"]["amount"] == "1"
    failed_id = bad.json()["error"]["details"]["transaction_id"]
    assert deliveries[1].payload["data"]["id"] == failed_id
    assert deliveries[1].payload["data"]["failure"]["code"] == "INSUFFICIENT_FUNDS"

    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="transaction.")}
    assert events["transaction.completed"].target_id == str(ok.json()["id"])
    assert events["transaction.completed"].data["api_key_id"] == org.key_id
    assert events["transaction.failed"].target_id == str(failed_id)
    assert events["transaction.failed"].data["failure_code"] == "INSUFFICIENT_FUNDS"


def test_other_organizations_endpoints_get_nothing(client_a, client_b, w1):
    subscribe(client_b)
    assert post_tx(client_a, {"reference": "quiet", "operations": [op_issue(w1, "1")]}).status_code == 201
    assert not WebhookDelivery.objects.exists()
