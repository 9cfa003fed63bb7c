"""Refunds on the sandbox chain (sent at once from the deposit address), the public checkout
services, and the OpenAPI schema of the pay-order endpoints."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compliance.services import audit_verify
from core.errors import NotFound
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.posting import Redeem, ledger_post
from payorders import services, tasks
from payorders.chains import get_chain_provider
from payorders.models import PayOrder, Refund
from tests.payorders.test_payorders_support import merchant, mine, order_row, sandbox_pay  # noqa: F401

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
    services.payorder_settle(order_id=order_row(order["id"]).pk)
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
    services.payorder_settle(order_id=row.pk)  # a REFUNDED order is never settled again (its kick may still run)
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
    services.payorder_settle(order_id=order_row(order["id"]).pk)
    wallet = Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD")
    ledger_post(type="withdrawal", operations=[Redeem(wallet=wallet, amount=Decimal("50.00"))], organization=merchant.organization).raise_for_error()
    r = _refund(merchant, order["id"], key="broke")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "INSUFFICIENT_FUNDS")
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.refunds.count() == 0
    assert not Transaction.objects.filter(reference=f"payorder:{order['id']}:refund").exists()
    assert ledger_check() == []


def test_public_checkout_services(merchant):  # noqa: F811
    order = merchant.create(description="Coffee", redirect_url="https://shop.example.com/done")
    status = services.payorder_public_status(public_id=order["id"])
    assert status["status"] == "PENDING" and status["amount"] == "100.00" and status["payment"] is None
    assert status["description"] == "Coffee" and status["redirect_url"] == "https://shop.example.com/done"
    assert 0 < status["seconds_left"] <= 1800
    quotes = services.payorder_public_quote(public_id=order["id"], source_currencies=["BTC"])
    assert [q.source_currency for q in quotes] == ["BTC"]
    selected = services.payorder_public_select_quote(public_id=order["id"], quote_id=quotes[0].public_id)
    assert selected.status == S.AWAITING_PAYMENT and selected.deposit_address.address.startswith("bc1q")
    assert selected.status_changes.last().actor_label == "payer"
    status = services.payorder_public_status(public_id=order["id"])
    assert status["payment"]["payment_uri"].startswith("bitcoin:bc1q") and status["payment"]["chain"] == "bitcoin"
    tx = sandbox_pay(merchant.client, status["payment"]["deposit_address"], status["payment"]["amount"], currency="BTC")
    merchant.post(order["id"], "process", {"tx_hash": tx})
    mine(merchant.client, 1)
    tasks.poll_confirmations()
    status = services.payorder_public_status(public_id=order["id"])
    assert status["status"] == "AWAITING_CONFIRMATION" and (status["confirmations"], status["confirmations_required"]) == (1, 3)
    with pytest.raises(NotFound):
        services.payorder_public_status(public_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        services.payorder_public_status(public_id="<script>")


def test_schema_has_every_pay_order_endpoint_with_examples(api_client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    ops = {
        ("/api/v1/pay-orders", "get"), ("/api/v1/pay-orders", "post"), ("/api/v1/pay-orders/{public_id}", "get"),
        ("/api/v1/pay-orders/{public_id}/cancel", "post"), ("/api/v1/pay-orders/{public_id}/quote", "post"),
        ("/api/v1/pay-orders/{public_id}/payment-details", "post"), ("/api/v1/pay-orders/{public_id}/process", "post"),
        ("/api/v1/pay-orders/{public_id}/refund", "post"), ("/api/v1/pay-orders/{public_id}/refunds/{refund_id}/transaction", "post"),
        ("/api/v1/xpub-keys", "get"), ("/api/v1/xpub-keys", "post"),
    }
    for path, method in ops:
        op = schema["paths"][path][method]
        responses = op["responses"]
        ok = next(code for code in responses if code.startswith("2"))
        assert "examples" in responses[ok]["content"]["application/json"], (path, method)
        if method == "post":
            assert "examples" in op["requestBody"]["content"]["application/json"], (path, method)


def test_xpub_keys_endpoint(merchant, seed):  # noqa: F811
    from tests.payorders.test_payorders_support import account_keys

    eth, _ = account_keys(seed, 90)
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth}, format="json")
    assert r.status_code == 201 and r.json()["is_active"] and r.json()["next_index"] == 0
    listed = merchant.client.get("/api/v1/xpub-keys").json()
    assert listed["count"] == 3 and sum(k["is_active"] for k in listed["results"]) == 2
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"}, format="json")
    assert r.status_code == 400 and "xprv9s21" not in r.content.decode()
    assert Refund.objects.count() == 0


def test_beat_schedule_registers_the_pay_order_tasks():
    from config.celery import app

    entries = {e["task"]: e["schedule"] for e in app.conf.beat_schedule.values()}
    for name in ("poll_confirmations", "watch_addresses", "expire_orders"):
        assert f"payorders.tasks.{name}" in entries and entries[f"payorders.tasks.{name}"] <= 60
    assert tasks.poll_confirmations.retry_backoff
    # settlement is a topic of the one outbox, not a task with a sweeper of its own
    from core.outbox import handlers_for

    assert handlers_for(services.PAYORDER_SETTLE_TOPIC) == [tasks.payorder_settle_handler]
    assert not hasattr(tasks, "settle_order") and not hasattr(tasks, "settle_completed")
