"""`POST /api/v1/transactions/{id}/reverse` end to end over the API on PostgreSQL: full and partial
reversals (pro rata, largest remainder, fees with their legs or not), the links both ways, the
refusals (not completed, twice, past the remainder, money already spent, a reversal, someone
else's), idempotency, the webhook and audit event, racing partial reversals in threads, and the
admin's chargeback of a customer deposit. `ledger_check()` is clean after each."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import WebhookDelivery
from compliance.models import AuditEvent
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Transfer, ledger_post
from wallets.movements.reversals import LegShare, pro_rata
from ledger.services import asset_create, wallet_open
from tests.factories.orgs import key_client, make_org_key
from tests.concurrency import errors_of, run_in_threads
from tests.factories.accounts import CustomerFactory, UserFactory
from tests.factories.ledger_api import balance, customer_wallet, op_issue, op_transfer, platform_asset, post_tx, system_wallet

pytestmark = pytest.mark.postgres


def reverse(client, tx_id: int, body: dict, *, key: str | None = None, **headers):
    return client.post(f"/api/v1/transactions/{tx_id}/reverse", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex, **headers)


def posted(client, operations, reference=None) -> dict:
    response = post_tx(client, {"reference": reference or uuid.uuid4().hex, "operations": operations})
    assert response.status_code == 201, response.content
    return response.json()


def subscribe(client) -> None:
    response = client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/h", "events": ["*"]}, format="json")
    assert response.status_code == 201, response.content


@pytest.fixture
def setup(org, client_a, points):
    a = customer_wallet(org, points, name="Ada")
    b = customer_wallet(org, points, name="Bob")
    treasury = system_wallet(org, points, label="treasury")
    subscribe(client_a)
    return a, b, treasury


def test_a_full_reversal_mirrors_the_postings_links_both_ways_and_restores_every_balance(org, client_a, setup):
    a, b, _ = setup
    original = posted(client_a, [op_issue(a, "10"), op_transfer(a, b, "4")])
    assert (balance(a), balance(b)) == (6, 4)

    response = reverse(client_a, original["id"], {"reason": "order cancelled"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == "reversal" and body["status"] == "completed" and body["reversal_of"] == original["id"]
    assert body["original"] == {"id": original["id"], "status": "reversed", "amount": "10", "currency": "POINTS",
                                "reversed_amount": "10", "remaining_amount": "0"}
    # the inverse legs, in reverse order: the transfer back first, then the issue redeemed
    assert [(o["type"], o.get("wallet_id"), o.get("source_wallet_id"), o["amount"]) for o in body["operations"]] == [
        ("transfer", None, b.pk, "4"), ("redeem", a.pk, None, "10")]
    assert (balance(a), balance(b)) == (0, 0)

    stored = Transaction.objects.get(pk=original["id"])
    assert stored.status == "reversed" and stored.reversed_amount == 10
    assert client_a.get(f"/api/v1/transactions/{original['id']}").json()["reversed_amount"] == "10"
    assert client_a.get(f"/api/v1/transactions/{body['id']}").json()["reversal_of"] == original["id"]
    assert response["Location"] == f"/api/v1/transactions/{body['id']}"

    delivery = WebhookDelivery.objects.get(organization=org.organization, event_type="transaction.reversed")
    assert delivery.payload["data"]["reversal_of"] == original["id"]
    assert delivery.payload["data"]["original"]["status"] == "reversed"
    event = AuditEvent.objects.get(action="reversal.completed")
    assert event.data["reversal_of"] == original["id"] and event.data["reason"] == "order cancelled"
    assert ledger_check() == []


def test_reversing_twice_is_409_invalid_state_and_moves_nothing(client_a, setup):
    a, b, _ = setup
    original = posted(client_a, [op_issue(a, "5")])
    assert reverse(client_a, original["id"], {"reason": "x"}).status_code == 201
    again = reverse(client_a, original["id"], {"reason": "again"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "INVALID_STATE"
    assert again.json()["error"]["details"]["status"] == "reversed"
    assert Transaction.objects.filter(reversal_of_id=original["id"]).count() == 1
    assert balance(a) == 0
    assert ledger_check() == []


def test_partial_reversals_up_to_the_whole_and_one_past_the_remainder(client_a, setup):
    a, b, _ = setup
    original = posted(client_a, [op_issue(a, "10"), op_transfer(a, b, "7")])
    first = reverse(client_a, original["id"], {"amount": "4", "reason": "part"})
    assert first.status_code == 201, first.content
    # 4/10 of each leg: the 7 transferred gives 2.8 -> 3 (the one unit goes to the largest remainder)
    assert [o["amount"] for o in first.json()["operations"]] == ["3", "4"]
    assert first.json()["original"]["remaining_amount"] == "6"
    assert Transaction.objects.get(pk=original["id"]).status == "completed"

    past = reverse(client_a, original["id"], {"amount": "7", "reason": "too much"})
    assert past.status_code == 409
    error = past.json()["error"]
    assert error["code"] == "INVALID_STATE" and error["details"]["remaining_amount"] == "6" and error["details"]["requested_amount"] == "7"

    rest = reverse(client_a, original["id"], {"reason": "the rest"})
    assert rest.status_code == 201, rest.content
    # the last reversal takes the exact remainders: 7 - 3 = 4 and 10 - 4 = 6
    assert [o["amount"] for o in rest.json()["operations"]] == ["4", "6"]
    assert Transaction.objects.get(pk=original["id"]).status == "reversed"
    assert (balance(a), balance(b)) == (0, 0)
    assert ledger_check() == []


def test_fee_legs_are_reversed_pro_rata_unless_the_request_says_otherwise(org, client_a):
    usd = platform_asset("USD")
    a = customer_wallet(org, usd, "200.00")
    b = customer_wallet(org, usd)
    original = ledger_post(type="ledger", organization=org.organization, reference="with-fee", operations=[
        Transfer(source=a, destination=b, amount=Decimal("100.00")),
        Transfer(source=a, destination=PlatformAccount(Wallet.Purpose.FEE), amount=Decimal("1.00")),
    ]).raise_for_error()
    assert balance(a) == Decimal("99.00")

    third = reverse(client_a, original.pk, {"amount": "33.33", "reason": "a third"})
    assert third.status_code == 201, third.content
    assert sorted(o["amount"] for o in third.json()["operations"]) == ["0.33", "33.33"]
    kept = reverse(client_a, original.pk, {"amount": "33.33", "reason": "fees kept", "include_fees": False})
    assert kept.status_code == 201, kept.content
    assert [o["amount"] for o in kept.json()["operations"]] == ["33.33"]
    last = reverse(client_a, original.pk, {"reason": "the rest"})
    assert last.status_code == 201, last.content
    # the principal's exact remainder, and the fee's pro rata share of what this reversal covers
    amounts = sorted(Decimal(o["amount"]) for o in last.json()["operations"])
    assert amounts == [Decimal("0.33"), Decimal("33.34")]
    assert Transaction.objects.get(pk=original.pk).status == "reversed"
    # 100 back in full, 0.66 of the 1.00 fee (the third left out stays with the platform)
    assert balance(a) == Decimal("199.66") and balance(b) == 0
    assert ledger_check() == []


def test_a_reversal_of_money_already_spent_is_422_and_recorded_as_a_failed_reversal(org, client_a, setup):
    a, b, treasury = setup
    original = posted(client_a, [op_issue(a, "10"), op_transfer(a, b, "10")])
    posted(client_a, [op_transfer(b, treasury, "8")])  # Bob spent 8 of the 10

    response = reverse(client_a, original["id"], {"reason": "chargeback"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    failed = Transaction.objects.get(pk=error["details"]["transaction_id"])
    assert failed.status == "failed" and failed.type == "reversal" and failed.reversal_of_id == original["id"]
    assert error["details"]["transaction"]["status"] == "failed"
    assert Transaction.objects.get(pk=original["id"]).status == "completed"
    assert Transaction.objects.get(pk=original["id"]).reversed_amount == 0
    assert WebhookDelivery.objects.filter(organization=org.organization, event_type="transaction.failed").exists()
    assert AuditEvent.objects.filter(action="reversal.failed").count() == 1
    assert (balance(a), balance(b)) == (0, 2)

    # a partial reversal the wallet covers still works
    assert reverse(client_a, original["id"], {"amount": "2", "reason": "what is left"}).status_code == 201
    assert ledger_check() == []


def test_refusals_not_completed_a_reversal_someone_elses_and_no_reason(org, client_a, client_b, setup):
    a, b, _ = setup
    failed = post_tx(client_a, {"reference": "f1", "operations": [op_transfer(a, b, "5")]})
    assert failed.status_code == 422
    not_completed = reverse(client_a, failed.json()["error"]["details"]["transaction_id"], {"reason": "x"})
    assert not_completed.status_code == 409 and not_completed.json()["error"]["code"] == "INVALID_STATE"
    assert not_completed.json()["error"]["details"]["status"] == "failed"

    original = posted(client_a, [op_issue(a, "3")])
    reversal = reverse(client_a, original["id"], {"amount": "1", "reason": "x"}).json()
    of_reversal = reverse(client_a, reversal["id"], {"reason": "undo the undo"})
    assert of_reversal.status_code == 409 and of_reversal.json()["error"]["code"] == "INVALID_STATE"

    theirs = reverse(client_b, original["id"], {"reason": "not mine"})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "NOT_FOUND"
    assert reverse(client_a, 987654321, {"reason": "x"}).status_code == 404

    no_reason = reverse(client_a, original["id"], {"amount": "1"})
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["details"]["fields"]
    bad_amount = reverse(client_a, original["id"], {"amount": "0.5", "reason": "x"})
    assert bad_amount.status_code == 400 and bad_amount.json()["error"]["code"] == "VALIDATION_ERROR"
    assert Transaction.objects.get(pk=original["id"]).reversed_amount == 1
    assert ledger_check() == []


def test_idempotent_replay_and_the_key_is_required(client_a, setup):
    a, _, _ = setup
    original = posted(client_a, [op_issue(a, "9")])
    first = reverse(client_a, original["id"], {"amount": "3", "reason": "x"}, key="rev-1")
    replay = reverse(client_a, original["id"], {"amount": "3", "reason": "x"}, key="rev-1")
    assert first.status_code == replay.status_code == 201
    assert replay["Idempotency-Replayed"] == "true" and replay.json() == first.json()
    assert Transaction.objects.get(pk=original["id"]).reversed_amount == 3
    reused = reverse(client_a, original["id"], {"amount": "4", "reason": "x"}, key="rev-1")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    missing = client_a.post(f"/api/v1/transactions/{original['id']}/reverse", {"reason": "x"}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert balance(a) == 6
    assert ledger_check() == []


def test_a_read_only_key_cannot_reverse(org, client_a, setup):
    from accounts.orgs.services import api_key_create

    a, _, _ = setup
    original = posted(client_a, [op_issue(a, "2")])
    _, secret = api_key_create(organization=org.organization, name="ro", actor=org.owner, scopes=["read"])
    response = reverse(client_a.__class__(HTTP_X_API_KEY=secret), original["id"], {"reason": "x"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert Transaction.objects.get(pk=original["id"]).status == "completed"


@pytest.mark.django_db(transaction=True)
def test_racing_partial_reversals_never_exceed_the_original():
    org = make_org_key("Racers")
    points = asset_create(code="POINTS", name="Points", exponent=0, organization=org.organization)
    a = customer_wallet(org, points)
    b = customer_wallet(org, points)
    client = key_client(org)
    original = posted(client, [op_issue(a, "100"), op_transfer(a, b, "100")])
    clients = [key_client(org) for _ in range(8)]

    results = run_in_threads(8, lambda n: reverse(clients[n], original["id"], {"amount": "40", "reason": f"race {n}"}))
    assert not errors_of(results), errors_of(results)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 201] + [409] * 6, statuses
    assert all(r.json()["error"]["code"] == "INVALID_STATE" for r in results if r.status_code == 409)
    stored = Transaction.objects.get(pk=original["id"])
    assert stored.reversed_amount == 80 and stored.status == "completed"
    assert Transaction.objects.filter(reversal_of=stored, status="completed").count() == 2
    assert (balance(a), balance(b)) == (0, 20)  # each reversal: 40 back from Bob to Ada, 40 of the issue redeemed from Ada
    assert ledger_check() == []


def test_staff_charge_back_a_customer_deposit_from_the_admin(db):
    from django.contrib.auth.models import Permission

    usd = platform_asset("USD")
    user = UserFactory()
    customer = CustomerFactory(user=user)
    wallet = wallet_open(asset=usd, customer=customer)
    deposit = ledger_post(type="deposit", customer=customer, operations=[Issue(wallet=wallet, amount=Decimal("50.00"))]).raise_for_error()
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_transaction", "change_transaction"]))
    admin = Client()
    admin.force_login(staff)
    url = "/admin/ledger/transaction/"
    ask = admin.post(url, {"action": "reverse_transactions", "_selected_action": [deposit.pk]})
    assert ask.status_code == 200 and b"reason" in ask.content.lower()
    no_reason = admin.post(url, {"action": "reverse_transactions", "_selected_action": [deposit.pk], "apply": "1", "reason": ""})
    assert no_reason.status_code == 200  # the form again, nothing reversed
    assert Transaction.objects.get(pk=deposit.pk).status == "completed"
    done = admin.post(url, {"action": "reverse_transactions", "_selected_action": [deposit.pk], "apply": "1", "reason": "card chargeback",
                            "amount": "20.00"}, follow=True)
    assert done.status_code == 200
    assert Transaction.objects.get(pk=deposit.pk).reversed_amount == Decimal("20.00")
    assert balance(wallet) == Decimal("30.00")
    reversal = Transaction.objects.get(reversal_of=deposit)
    assert reversal.customer_id == customer.pk and reversal.status == "completed"
    event = AuditEvent.objects.get(action="reversal.completed")
    assert event.actor_id == staff.pk and event.data["reason"] == "card chargeback"
    # the rest; then a third time is refused with a message, not a crash
    admin.post(url, {"action": "reverse_transactions", "_selected_action": [deposit.pk], "apply": "1", "reason": "the rest"})
    assert Transaction.objects.get(pk=deposit.pk).status == "reversed" and balance(wallet) == 0
    again = admin.post(url, {"action": "reverse_transactions", "_selected_action": [deposit.pk], "apply": "1", "reason": "again"}, follow=True)
    assert b"already fully reversed" in again.content
    assert ledger_check() == []


def test_an_organization_cannot_reverse_a_customer_deposit_it_did_not_post(org, client_a):
    usd = platform_asset("USD")
    wallet = customer_wallet(org, usd)
    deposit = ledger_post(type="deposit", customer=wallet.customer, operations=[Issue(wallet=wallet, amount=Decimal("5.00"))]).raise_for_error()
    response = reverse(client_a, deposit.pk, {"reason": "x"})
    assert response.status_code == 404
    assert Transaction.objects.get(pk=deposit.pk).status == "completed"


# --- pro rata with largest remainder -----------------------------------------------------------


def test_pro_rata_gives_the_lost_units_to_the_largest_remainders():
    legs = [LegShare(0, 1, 2, Decimal("100.00"), Decimal("100.00"), False),
            LegShare(1, 1, 2, Decimal("0.05"), Decimal("0.05"), False),
            LegShare(2, 1, 2, Decimal("0.07"), Decimal("0.07"), False)]
    # a tenth: exact 10, 0.005, 0.007 -> total 10.012 -> 10.01; floors 10 + 0 + 0 lose one unit: to leg 2 (0.007)
    assert pro_rata(legs, part=Decimal("10.00"), whole=Decimal("100.00")) == {0: Decimal("10.00"), 1: Decimal("0.00"), 2: Decimal("0.01")}
    capped = [LegShare(0, 1, 0, Decimal("7"), Decimal("1"), False)]
    assert pro_rata(capped, part=Decimal("5"), whole=Decimal("10")) == {0: Decimal("1")}  # never more than is left
    exact = [LegShare(0, 1, 0, Decimal("7"), Decimal("4"), True)]
    assert pro_rata(exact, part=Decimal("1"), whole=Decimal("10")) == {0: Decimal("4")}


def test_pro_rata_over_a_series_of_partial_reversals_loses_no_unit():
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=200, deadline=None)
    @given(
        amounts=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=5),
        cuts=st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=6),
    )
    def check(amounts, cuts):
        whole = Decimal(amounts[0]) / 100
        legs = [Decimal(x) / 100 for x in amounts]
        taken = [Decimal(0)] * len(legs)
        done = Decimal(0)
        parts = [max(Decimal(c) / 100, Decimal("0.01")) for c in cuts]
        for i, part in enumerate(parts):
            part = min(part, whole - done)
            if part <= 0:
                break
            final = done + part == whole or i == len(parts) - 1
            if final:
                part = whole - done
            shares = pro_rata([LegShare(j, 1, 2, legs[j], legs[j] - taken[j], final) for j in range(len(legs)) if legs[j] > taken[j]],
                              part=part, whole=whole)
            assert shares[0] == part  # the principal moves exactly what was asked
            for j, share in shares.items():
                assert 0 <= share <= legs[j] - taken[j]
                taken[j] += share
            done += part
        assert done == whole and taken == legs

    check()
