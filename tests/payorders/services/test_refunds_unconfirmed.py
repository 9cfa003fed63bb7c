"""Review 2: a refund never gives back money that is not on chain yet.

A payment submitted through /process may still be in the mempool (0 confirmations): its sender can
replace or drop it. Refunding an "overpayment" carried by such a transaction hands the payer money
that may never arrive (on a live chain the merchant signs that refund; on the sandbox it is sent
from what the earlier, confirmed payments brought in)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payorders import tasks
from payorders.chains import get_chain_provider
from payorders.models import PayOrder, Refund
from tests.payorders.support import merchant, mine, order_row, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db
S = PayOrder.Status
PAYER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"


def _refund(merchant, order_id, key, **body):  # noqa: F811
    return merchant.post(order_id, "refund", {"destination_address": PAYER, **body}, HTTP_IDEMPOTENCY_KEY=key)


def _overpaid_by_a_pending_transaction(merchant):  # noqa: F811
    """Part of the price confirmed on chain, the rest plus an excess in a transaction not mined yet
    (the excess is smaller than the confirmed part, so the sandbox could send it from the address)."""
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    due = Decimal(details["amount"])
    part = (due * Decimal("0.8")).quantize(Decimal("0.00000001"))
    sandbox_pay(merchant.client, details["deposit_address"], part)
    mine(merchant.client, 1)
    tasks.watch_addresses()
    assert order_row(order["id"]).underpaid
    excess = (part / 2).quantize(Decimal("0.00000001"))
    pending = sandbox_pay(merchant.client, details["deposit_address"], due - part + excess)
    body = merchant.post(order["id"], "process", {"tx_hash": pending}).json()
    assert body["status"] == "AWAITING_CONFIRMATION" and Decimal(body["refund_due"]) == excess
    assert get_chain_provider("ethereum").get_transaction(pending)[0].confirmations == 0
    return order, details, excess


def test_an_excess_carried_by_a_transaction_not_yet_mined_is_not_refunded(merchant):  # noqa: F811
    order, details, excess = _overpaid_by_a_pending_transaction(merchant)
    address_balance = get_chain_provider("ethereum").get_balance(details["deposit_address"], "ETH")

    r = _refund(merchant, order["id"], "early", kind="excess")
    assert r.status_code == 409, r.json()
    assert r.json()["error"]["code"] == "INVALID_STATE"
    assert not Refund.objects.filter(pay_order__public_id=order["id"]).exists()
    assert order_row(order["id"]).refund_due == excess
    assert get_chain_provider("ethereum").get_balance(details["deposit_address"], "ETH") == address_balance

    # once the transaction is in a block the excess is the payer's to get back
    mine(merchant.client, 1)
    r = _refund(merchant, order["id"], "later", kind="excess")
    assert r.status_code == 201, r.json()
    assert Decimal(r.json()["amount"]) == excess

