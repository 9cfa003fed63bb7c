"""The hosted checkout's services (payorders.checkout.services) over the public quote and
payment-details services: what the payer sees, step by step, and nothing for an unknown id."""

from __future__ import annotations

import pytest

from core.errors import NotFound
from payorders import tasks
from payorders.checkout.services import checkout_order, checkout_state
from payorders.models import PayOrder
from payorders.services.quotes import payorder_public_quote, payorder_public_select_quote
from tests.payorders.support import merchant, mine, order_row, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db
S = PayOrder.Status


def _public_state(public_id: str) -> dict:
    return checkout_state(checkout_order(public_id=public_id))


def test_public_checkout_services(merchant):  # noqa: F811
    order = merchant.create(description="Coffee", redirect_url="https://shop.example.com/done")
    status = _public_state(order["id"])
    assert status["status"] == "PENDING" and status["amount"] == "100.00" and status["payment"] is None
    # the merchant's return URL is kept, and shown to the payer only once the order is completed
    assert status["description"] == "Coffee" and status["redirect_url"] is None
    assert order_row(order["id"]).redirect_url == "https://shop.example.com/done"
    assert 0 < status["seconds_left"] <= 1800
    quotes = payorder_public_quote(public_id=order["id"], source_currencies=["BTC"])
    assert [q.source_currency for q in quotes] == ["BTC"]
    selected = payorder_public_select_quote(public_id=order["id"], quote_id=quotes[0].public_id)
    assert selected.status == S.AWAITING_PAYMENT and selected.deposit_address.address.startswith("tb1q")  # test mode: the testnet address (issue 14)
    assert selected.status_changes.last().actor_label == "payer"
    status = _public_state(order["id"])
    assert status["payment"]["payment_uri"].startswith("bitcoin:tb1q") and status["payment"]["chain"] == "bitcoin"
    tx = sandbox_pay(merchant.client, status["payment"]["deposit_address"], status["payment"]["amount"], currency="BTC")
    merchant.post(order["id"], "process", {"tx_hash": tx})
    mine(merchant.client, 1)
    tasks.poll_confirmations()
    status = _public_state(order["id"])
    assert status["status"] == "AWAITING_CONFIRMATION" and (status["confirmations"], status["confirmations_required"]) == (1, 3)
    mine(merchant.client, 2)
    tasks.poll_confirmations()
    status = _public_state(order["id"])
    assert status["status"] == "COMPLETED" and status["redirect_url"] == "https://shop.example.com/done"
    with pytest.raises(NotFound):
        checkout_order(public_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        checkout_order(public_id="<script>")
