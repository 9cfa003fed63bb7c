"""Refunds on the sandbox chain (sent at once from the deposit address)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compliance.audit import audit_verify
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.posting import Redeem, ledger_post
from payorders import tasks
from payorders.chains import get_chain_provider
from payorders.models import PayOrder
from payorders.services.settlement import payorder_settle
from tests.payorders.support import merchant, mine, order_row, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db
S = PayOrder.Status
PAYER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"


def _completed(merchant, extra: Decimal = Decimal(0), currency: str = "ETH") -> tuple[dict, dict]:  # noqa: F811
    order = merchant.create()
    details = merchant.pay_details(order["id"], currency)
    tx = sandbox_pay(merchant.client, details["deposit_address"], Decimal(details["amount"]) + extra, currency=currency)
    assert merchant.post(order["id"], "process", {"tx_hash": tx}).status_code == 200
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.COMPLETED
    return order, details


def _refund(merchant, order_id: str, key: str | None = "r-1", **body):  # noqa: F811
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return merchant.post(order_id, "refund", {"destination_address": PAYER, **body}, **extra)


def test_full_refund_takes_the_settlement_back_and_sends_the_crypto(merchant):  # noqa: F811
    order, details = _completed(merchant)
    payorder_settle(order_id=order_row(order["id"]).pk)
    assert _refund(merchant, order["id"], key=None).json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    r = _refund(merchant, order["id"], reason="returned")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["kind"] == "full" and body["status"] == "sent" and body["amount"] == details["amount"]
    assert body["destination_address"] == PAYER and body["tx_hash"].startswith("0x")
    replay = _refund(merchant, order["id"], reason="returned")
    assert replay.status_code == 201 and replay["Idempotency-Replayed"] == "true" and replay.json() == body
    again = _refund(merchant, order["id"], key="r-2")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "INVALID_STATE")

    row = order_row(order["id"])
    assert row.status == S.REFUNDED and row.refund_due == 0
    refund = row.refunds.get()
    assert refund.ledger_transaction.reference == f"payorder:{order['id']}:refund"
    assert refund.ledger_transaction.type == Transaction.Type.REFUND and refund.ledger_amount == Decimal("99.00")
    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD").balance == 0
    (sent,) = get_chain_provider("ethereum").get_transaction(body["tx_hash"])
    assert sent.from_address == details["deposit_address"] and sent.to_address == PAYER and sent.amount == Decimal(details["amount"])
    detail = merchant.get(order["id"]).json()
    assert detail["status_history"][-1]["to_status"] == "REFUNDED" and detail["refunds"][0]["id"] == body["id"]
    assert ledger_check() == [] and audit_verify()["valid"]


def test_refund_of_an_unsettled_order_settles_it_first(merchant):  # noqa: F811
    order, _ = _completed(merchant)
    assert order_row(order["id"]).settlement_transaction is None
    assert _refund(merchant, order["id"]).status_code == 201
    row = order_row(order["id"])
    assert row.settlement_transaction is not None and row.settlement_fee == Decimal("1.00")
    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD").balance == 0
    payorder_settle(order_id=row.pk)  # a REFUNDED order is never settled again (its kick may still run)
    assert Transaction.objects.filter(reference__startswith=f"payorder:{order['id']}:").count() == 2
    assert ledger_check() == []


def test_excess_refund_then_full_refund(merchant):  # noqa: F811
    order, details = _completed(merchant, extra=Decimal("0.5"))
    r = _refund(merchant, order["id"], kind="excess")
    assert r.status_code == 201 and r.json()["amount"] == "0.500000000000000000" and r.json()["ledger_transaction_id"] is None
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.refund_due == 0 and row.overpaid
    again = _refund(merchant, order["id"], key="r-2", kind="excess")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "INVALID_STATE")
    full = _refund(merchant, order["id"], key="r-3")
    assert full.status_code == 201 and Decimal(full.json()["amount"]) == Decimal(details["amount"])
    assert order_row(order["id"]).status == S.REFUNDED
    mine(merchant.client, 1)
    assert get_chain_provider("ethereum").get_balance(details["deposit_address"], "ETH") == 0  # everything went back
    assert get_chain_provider("ethereum").get_balance(PAYER, "ETH") == Decimal(details["amount"]) + Decimal("0.5")


def test_late_payment_on_an_expired_order_is_refunded_without_the_ledger(merchant):  # noqa: F811
    from datetime import timedelta

    from django.utils import timezone

    order = merchant.create()
    details = merchant.pay_details(order["id"])
    PayOrder.objects.filter(public_id=order["id"]).update(expires_at=timezone.now() - timedelta(hours=1))
    tasks.expire_orders()
    sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    mine(merchant.client, 1)
    tasks.watch_addresses()
    r = _refund(merchant, order["id"])
    assert r.status_code == 201 and r.json()["ledger_transaction_id"] is None
    row = order_row(order["id"])
    assert row.status == S.REFUNDED and row.refund_due == 0
    assert not Transaction.objects.filter(organization=merchant.organization).exists()


def test_refund_refused_cases_leave_everything_unchanged(merchant):  # noqa: F811
    pending = merchant.create()
    r = _refund(merchant, pending["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INVALID_STATE")
    order, _ = _completed(merchant)
    r = _refund(merchant, order["id"], key="bad-address", destination_address="bc1qnotanaddress")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    r = _refund(merchant, order["id"], key="bad-kind", kind="everything")
    assert r.status_code == 400
    r = _refund(merchant, order["id"], key="no-excess", kind="excess")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INVALID_STATE")
    # the merchant has spent the settlement: the refund cannot take it back
    payorder_settle(order_id=order_row(order["id"]).pk)
    wallet = Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD")
    ledger_post(type="withdrawal", operations=[Redeem(wallet=wallet, amount=Decimal("50.00"))], organization=merchant.organization).raise_for_error()
    r = _refund(merchant, order["id"], key="broke")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "INSUFFICIENT_FUNDS")
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.refunds.count() == 0
    assert not Transaction.objects.filter(reference=f"payorder:{order['id']}:refund").exists()
    assert ledger_check() == []
