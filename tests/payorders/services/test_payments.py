"""Payments on the sandbox chain: the watcher, under/over/late payments, refused submissions,
expiry, cancellation, illegal transitions, tenancy, list filters and input validation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import WebhookDelivery
from ledger.checks import ledger_check
from payorders import tasks
from payorders.models import PayOrder, PayOrderPayment, XpubKey
from payorders.services.settlement import payorder_settle
from tests.payorders.support import API, history, merchant, mine, new_merchant, order_row, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db
S = PayOrder.Status


def _snapshot(order_id: str) -> tuple:
    row = order_row(order_id)
    return (row.status, row.amount_received, row.underpaid, row.overpaid, row.late_payment, row.payments.count(), row.status_changes.count())


def _backdate(order_id: str, seconds: int = 3600) -> None:
    PayOrder.objects.filter(public_id=order_id).update(expires_at=timezone.now() - timedelta(seconds=seconds))


def test_watcher_finds_a_payment_nobody_submitted(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    tasks.watch_addresses()
    # broadcast, not mined: seen already (issue 14), with no block and 0 confirmations
    row = order_row(order["id"])
    assert row.status == S.AWAITING_CONFIRMATION
    payment = row.payments.get()
    assert payment.source == "watcher" and payment.block_number is None and payment.confirmations == 0 and not payment.late
    mine(merchant.client, 1)
    tasks.watch_addresses()
    tasks.watch_addresses()  # mined now, and twice: still recorded once
    tasks.poll_confirmations()
    payment = order_row(order["id"]).payments.get()
    assert payment.confirmations == 1 and payment.block_number is not None
    mine(merchant.client, 2)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.COMPLETED


def test_underpaid_waits_for_the_rest_then_confirms(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    due = Decimal(details["amount"])
    part = (due / 2).quantize(Decimal("1e-18"))
    first = sandbox_pay(merchant.client, details["deposit_address"], part)
    # a submitted hash that does not cover what is due is refused and changes nothing ...
    before = _snapshot(order["id"])
    refused = merchant.post(order["id"], "process", {"tx_hash": first})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "PAYMENT_MISMATCH"
    assert refused.json()["error"]["details"]["due"] == details["amount"]
    assert _snapshot(order["id"]) == before
    # ... but the money is not lost: the watcher records it as an underpayment
    mine(merchant.client, 1)
    tasks.watch_addresses()
    row = order_row(order["id"])
    assert row.status == S.AWAITING_PAYMENT and row.underpaid and row.amount_received == part
    assert row.status_changes.last().cause.startswith("underpaid:")
    second = sandbox_pay(merchant.client, details["deposit_address"], due - part)
    assert merchant.post(order["id"], "process", {"tx_hash": second}).json()["status"] == "AWAITING_CONFIRMATION"
    row = order_row(order["id"])
    assert not row.underpaid and not row.overpaid and row.amount_received == due
    mine(merchant.client, 1)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.AWAITING_CONFIRMATION  # the second payment has 1 confirmation
    mine(merchant.client, 2)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.COMPLETED


def test_overpaid_completes_and_the_excess_is_refundable(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    due = Decimal(details["amount"])
    tx = sandbox_pay(merchant.client, details["deposit_address"], due + Decimal("0.5"))
    body = merchant.post(order["id"], "process", {"tx_hash": tx}).json()
    assert body["status"] == "AWAITING_CONFIRMATION" and body["overpaid"] is True
    assert Decimal(body["refund_due"]) == Decimal("0.5")
    assert "overpaid" in body["status_history"][-1]["cause"]
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.COMPLETED
    # a further transfer after completion is recorded too, and adds to what is refundable
    sandbox_pay(merchant.client, details["deposit_address"], "0.25")
    mine(merchant.client, 1)
    tasks.watch_addresses()
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.refund_due == Decimal("0.75") and row.payments.count() == 2


def test_late_payment_on_an_expired_order_is_recorded_and_refundable(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    _backdate(order["id"])
    tasks.expire_orders()
    assert order_row(order["id"]).status == S.EXPIRED
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    response = merchant.post(order["id"], "process", {"tx_hash": tx})
    assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_STATE"
    mine(merchant.client, 1)
    tasks.watch_addresses()
    row = order_row(order["id"])
    assert row.status == S.EXPIRED and row.late_payment and row.refund_due == Decimal(details["amount"])
    assert row.payments.get().late
    assert row.status_changes.last().cause.startswith("late payment")


def test_payment_seen_after_the_window_expires_the_order_first(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    mine(merchant.client, 1)
    _backdate(order["id"])
    tasks.watch_addresses()
    row = order_row(order["id"])
    assert row.status == S.EXPIRED and row.late_payment and row.payments.get().late
    assert history(order["id"])[-2:] == [("AWAITING_PAYMENT", "EXPIRED"), ("EXPIRED", "EXPIRED")]


def test_process_refuses_wrong_recipient_asset_unknown_and_reused_hashes(merchant):
    order = merchant.create()
    other = merchant.create()
    details = merchant.pay_details(order["id"])
    other_details = merchant.pay_details(other["id"])
    before = _snapshot(order["id"])

    elsewhere = sandbox_pay(merchant.client, other_details["deposit_address"], details["amount"])
    r = merchant.post(order["id"], "process", {"tx_hash": elsewhere})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH")
    assert r.json()["error"]["details"]["expected_recipient"] == details["deposit_address"]

    usdc = sandbox_pay(merchant.client, details["deposit_address"], "500", currency="USDC")
    r = merchant.post(order["id"], "process", {"tx_hash": usdc})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH") and "not ETH" in r.json()["error"]["message"]

    r = merchant.post(order["id"], "process", {"tx_hash": "0x" + "ab" * 32})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "TRANSACTION_NOT_FOUND")
    r = merchant.post(order["id"], "process", {"tx_hash": "not-a-hash"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert _snapshot(order["id"]) == before

    paid_other = sandbox_pay(merchant.client, other_details["deposit_address"], other_details["amount"])
    assert merchant.post(other["id"], "process", {"tx_hash": paid_other}).status_code == 200
    r = merchant.post(order["id"], "process", {"tx_hash": paid_other.upper().replace("0X", "0x")})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "TRANSACTION_ALREADY_USED")
    assert _snapshot(order["id"]) == before


def test_process_before_payment_details_and_after_the_window(merchant):
    order = merchant.create()
    r = merchant.post(order["id"], "process", {"tx_hash": "0x" + "ab" * 32})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INVALID_STATE")
    details = merchant.pay_details(order["id"])
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    _backdate(order["id"])
    r = merchant.post(order["id"], "process", {"tx_hash": tx})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "QUOTE_EXPIRED")
    assert order_row(order["id"]).payments.count() == 0


def test_expire_task_expires_open_orders_only_after_the_grace(merchant, settings):
    settings.PAYORDER_EXPIRY_GRACE_SECONDS = 60
    pending = merchant.create()
    awaiting = merchant.create()
    fresh = merchant.create()
    just_past = merchant.create()
    merchant.pay_details(awaiting["id"])
    _backdate(pending["id"])
    _backdate(awaiting["id"])
    _backdate(just_past["id"], seconds=10)  # inside the grace: blocks may still be in flight
    assert tasks.expire_orders() == 2
    assert tasks.expire_orders() == 0
    assert order_row(pending["id"]).status == S.EXPIRED and order_row(awaiting["id"]).status == S.EXPIRED
    assert order_row(fresh["id"]).status == S.PENDING and order_row(just_past["id"]).status == S.PENDING
    assert WebhookDelivery.objects.filter(event_type="payorder.expired").count() == 0  # no endpoint subscribed
    assert history(pending["id"])[-1] == ("PENDING", "EXPIRED")


def test_underpaid_order_that_expires_owes_the_payer_a_refund(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    sandbox_pay(merchant.client, details["deposit_address"], "0.001")
    mine(merchant.client, 1)
    tasks.watch_addresses()
    _backdate(order["id"])
    tasks.expire_orders()
    row = order_row(order["id"])
    assert row.status == S.EXPIRED and row.underpaid and row.refund_due == Decimal("0.001")


def test_cancel_and_illegal_transitions_are_409(merchant):
    order = merchant.create()
    r = merchant.post(order["id"], "cancel", {"reason": "customer left"})
    assert r.status_code == 200 and r.json()["status"] == "FAILED" and r.json()["failure_reason"] == "cancelled: customer left"
    for action, body in (("cancel", {}), ("quote", {}), ("refund", {"destination_address": "0x" + "11" * 20})):
        extra = {"HTTP_IDEMPOTENCY_KEY": f"k-{action}"} if action == "refund" else {}
        r = merchant.post(order["id"], action, body, **extra)
        assert r.status_code == 409, (action, r.json())
        assert r.json()["error"]["code"] == "INVALID_STATE"
    assert order_row(order["id"]).status == S.FAILED

    paid = merchant.create()
    details = merchant.pay_details(paid["id"])
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    merchant.post(paid["id"], "process", {"tx_hash": tx})
    r = merchant.post(paid["id"], "cancel")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INVALID_STATE")
    quote = merchant.post(merchant.create()["id"], "quote").json()["quotes"][0]
    r = merchant.post(paid["id"], "payment-details", {"quote_id": quote["quote_id"]})
    assert r.status_code == 404  # a quote of another order
    # the model refuses a transition that skips a state
    row = order_row(paid["id"])
    from django_fsm import TransitionNotAllowed

    with pytest.raises(TransitionNotAllowed):
        row.refund()
    with pytest.raises(AttributeError):
        row.status = S.COMPLETED  # protected: only transitions


def test_quote_expired_and_missing_deposit_key(merchant, settings):
    order = merchant.create()
    quote = merchant.quote(order["id"], "ETH")
    from payorders.models import PayOrderQuote

    PayOrderQuote.objects.filter(public_id=quote["quote_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = merchant.post(order["id"], "payment-details", {"quote_id": quote["quote_id"]})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "QUOTE_EXPIRED")
    assert order_row(order["id"]).status == S.PENDING and order_row(order["id"]).deposit_address is None

    XpubKey.objects.filter(organization=merchant.organization, chain="bitcoin").update(is_active=False)
    btc = merchant.quote(order["id"], "BTC")
    r = merchant.post(order["id"], "payment-details", {"quote_id": btc["quote_id"]})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "DEPOSIT_KEY_MISSING")
    assert order_row(order["id"]).status == S.PENDING
    assert merchant.post(order["id"], "payment-details", {"quote_id": "nope"}).status_code == 404

    settings.PAYORDER_QUOTE_TTL_SECONDS = 5
    q = merchant.quote(order["id"], "USDC")
    assert q["amount"] == "100.250627"  # 100 / 0.9975 rounded up to 6 decimals


def test_quotes_with_a_wallet_address_only_offer_what_it_can_pay(merchant):
    order = merchant.create(amount="10.00")
    payer = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"
    r = merchant.post(order["id"], "quote", {"wallet_address": payer})
    assert r.status_code == 200 and r.json()["quotes"] == []
    sandbox_pay(merchant.client, payer, "11", currency="USDC")
    mine(merchant.client, 1)
    quotes = merchant.post(order["id"], "quote", {"wallet_address": payer}).json()["quotes"]
    assert [q["source_currency"] for q in quotes] == ["USDC"]
    r = merchant.post(order["id"], "quote", {"wallet_address": "not an address"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    r = merchant.post(order["id"], "quote", {"source_currencies": ["DOGE"]})
    assert r.status_code == 400 and "source_currencies" in r.json()["error"]["details"]["fields"]


def test_tenancy_another_organizations_order_is_404(merchant, seed):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    intruder = new_merchant(seed, "Intruder")
    for method, path, body in (
        ("get", f"{API}/{order['id']}", None),
        ("post", f"{API}/{order['id']}/cancel", {}),
        ("post", f"{API}/{order['id']}/quote", {}),
        ("post", f"{API}/{order['id']}/payment-details", {"quote_id": details["quote_id"]}),
        ("post", f"{API}/{order['id']}/process", {"tx_hash": "0x" + "ab" * 32}),
        ("post", f"{API}/{order['id']}/refund", {"destination_address": "0x" + "11" * 20}),
    ):
        r = getattr(intruder.client, method)(path, body, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
        assert r.status_code == 404, (path, r.status_code)
        assert r.json()["error"]["code"] == "NOT_FOUND"
    assert intruder.client.get(API).json()["count"] == 0
    assert merchant.client.get(API).json()["count"] == 1
    assert merchant.client.get(f"{API}/not-a-uuid").status_code == 404
    from rest_framework.test import APIClient

    assert APIClient().get(API).status_code == 401
    assert order_row(order["id"]).status == S.AWAITING_PAYMENT


def test_list_filters_and_pagination(merchant):
    a = merchant.create()
    b = merchant.create(type="DEPOSIT")
    merchant.post(a["id"], "cancel")
    body = merchant.client.get(API, {"limit": 1}).json()
    assert body["count"] == 2 and body["limit"] == 1 and len(body["results"]) == 1 and body["results"][0]["id"] == b["id"]
    assert [o["id"] for o in merchant.client.get(API, {"status": "FAILED"}).json()["results"]] == [a["id"]]
    assert [o["id"] for o in merchant.client.get(API, {"type": "DEPOSIT"}).json()["results"]] == [b["id"]]
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert merchant.client.get(API, {"created_from": later}).json()["count"] == 0
    assert merchant.client.get(API, {"created_to": later}).json()["count"] == 2
    r = merchant.client.get(API, {"status": "NOPE"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    r = merchant.client.get(API, {"created_from": "yesterday"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"settlement_currency": "NOPE"}, "settlement_currency"),
        ({"type": "GIFT"}, "type"),
        ({"expires_in": 5}, "expires_in"),
        ({"customer_external_id": "ghost"}, "customer_external_id"),
        ({"redirect_url": "javascript:alert(1)"}, "redirect_url"),
        ({"metadata": [1, 2]}, "metadata"),
    ],
)
def test_create_validation(merchant, body, field):
    payload = {"type": "SALE", "amount": "100.00", "currency": "USD", **body}
    r = merchant.client.post(API, payload, format="json")
    assert r.status_code == 400, r.json()
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in str(r.json()["error"]), r.json()
    assert PayOrder.objects.count() == 0


def test_create_with_customer_and_optional_idempotency_key(merchant):
    from accounts.orgs.services import customer_upsert

    customer_upsert(organization=merchant.organization, external_id="user-1", data={"name": "Ada"})
    body = {"type": "SALE", "amount": "12.50", "currency": "USD", "customer_external_id": "user-1", "metadata": {"n": 1.25}}
    first = merchant.client.post(API, body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    again = merchant.client.post(API, body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotency-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert first.json()["customer_external_id"] == "user-1" and first.json()["metadata"] == {"n": "1.25"}
    other = merchant.client.post(API, {**body, "amount": "13"}, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert other.status_code == 422
    assert merchant.client.post(API, body, format="json").status_code == 201  # no key: a new order
    assert PayOrder.objects.count() == 2


def test_settlement_in_another_currency_with_fee(merchant):
    order = merchant.create(amount="200.00", currency="USD", settlement_currency="EUR")
    details = merchant.pay_details(order["id"], "USDC")
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"], currency="USDC")
    merchant.post(order["id"], "process", {"tx_hash": tx})
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    row = order_row(order["id"])
    payorder_settle(order_id=row.pk)
    row = order_row(order["id"])
    # 200 USD at the sandbox mid (1 / 1.08) = 185.185185... -> 185.18 EUR, fee 1% rounded up 1.86
    assert row.settlement_amount == Decimal("185.18") and row.settlement_fee == Decimal("1.86")
    from ledger.models import Wallet

    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="EUR").balance == Decimal("183.32")
    assert ledger_check() == []
    assert not PayOrder.objects.filter(status="COMPLETED", settlement_transaction__isnull=True).exists()
    assert PayOrderPayment.objects.get(pay_order=row).asset == "USDC"
