"""Tasks and endpoints run twice at the same moment (real threads, PostgreSQL row locks):
nothing is recorded, transitioned, announced or settled twice, and the ledger stays sound."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import WebhookDelivery
from core.models import OutboxMessage
from core.outbox import outbox_sweep
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from payorders import tasks
from payorders.models import DepositAddress, PayOrder, PayOrderPayment, XpubKey
from payorders.services.payments import payorder_process
from payorders.services.quotes import payorder_select_quote
from payorders.services.refunds import payorder_refund
from payorders.services.settlement import payorder_settle
from tests.concurrency import run_in_threads
from tests.payorders.support import mine, new_merchant, order_row, reseed, sandbox_pay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
S = PayOrder.Status


def run_at_once(*funcs, timeout: float = 60) -> list:
    """Start every callable in its own thread behind one barrier; return results or exceptions."""
    return run_in_threads(len(funcs), lambda i: funcs[i](), timeout=timeout)


def _paid_order(merchant, *, mined: int = 3) -> tuple[dict, dict]:
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    assert merchant.post(order["id"], "process", {"tx_hash": tx}).status_code == 200
    if mined:
        mine(merchant.client, mined)
    return order, details


@pytest.fixture
def merchant(seed):
    reseed()
    m = new_merchant(seed)
    m.subscribe("http://127.0.0.1:9/hooks")  # deliveries are rows; nobody needs to answer here
    return m


def test_poll_twice_at_once_completes_once(merchant):
    order, _ = _paid_order(merchant)
    results = run_at_once(tasks.poll_confirmations, tasks.poll_confirmations)
    assert not any(isinstance(r, Exception) for r in results), results
    row = order_row(order["id"])
    assert row.status == S.COMPLETED
    assert row.status_changes.filter(to_status=S.COMPLETED).count() == 1
    assert WebhookDelivery.objects.filter(event_type="payorder.completed").count() == 1


def test_settle_twice_at_once_settles_once(merchant):
    orders = [_paid_order(merchant, mined=0)[0] for _ in range(3)]
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    pks = [order_row(o["id"]).pk for o in orders]
    assert OutboxMessage.objects.filter(topic="payorder.settle").count() == 3  # one kick per completed order
    later = timezone.now() + timedelta(seconds=16)  # past the grace of the messages' own dispatch
    funcs = [lambda pk=pk: payorder_settle(order_id=pk) for pk in pks for _ in range(2)] + [lambda: outbox_sweep(now=later)] * 2
    results = run_at_once(*funcs)
    assert not any(isinstance(r, Exception) for r in results), results
    settlements = Transaction.objects.filter(type="settlement", organization=merchant.organization)
    assert settlements.count() == 3 and set(settlements.values_list("status", flat=True)) == {"completed"}
    assert sorted(settlements.values_list("reference", flat=True)) == sorted(f"payorder:{o['id']}:settlement" for o in orders)
    wallet = Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD")
    assert wallet.balance == Decimal("297.00")
    assert all(order_row(o["id"]).settlement_transaction_id for o in orders)
    assert ledger_check() == []
    assert set(OutboxMessage.objects.filter(topic="payorder.settle").values_list("status", flat=True)) == {"done"}
    # and once more, sequentially: still nothing new
    for pk in pks:
        payorder_settle(order_id=pk)
    assert settlements.count() == 3


def test_watch_twice_at_once_records_once(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    sandbox_pay(merchant.client, details["deposit_address"], "0.1")
    mine(merchant.client, 1)
    results = run_at_once(tasks.watch_addresses, tasks.watch_addresses, tasks.watch_addresses)
    assert not any(isinstance(r, Exception) for r in results), results
    row = order_row(order["id"])
    assert row.payments.count() == 2
    assert row.amount_received == Decimal(details["amount"]) + Decimal("0.1")
    assert row.status == S.AWAITING_CONFIRMATION and row.overpaid and row.refund_due == Decimal("0.1")
    assert row.status_changes.filter(to_status=S.AWAITING_CONFIRMATION, from_status=S.AWAITING_PAYMENT).count() == 1


def test_expire_twice_at_once_expires_once(merchant):
    from datetime import timedelta

    from django.utils import timezone

    ids = [merchant.create()["id"] for _ in range(3)]
    merchant.pay_details(ids[0])
    PayOrder.objects.filter(public_id__in=ids).update(expires_at=timezone.now() - timedelta(hours=1))
    results = run_at_once(tasks.expire_orders, tasks.expire_orders)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sum(results) == 3
    for order_id in ids:
        assert order_row(order_id).status_changes.filter(to_status=S.EXPIRED).count() == 1
    assert WebhookDelivery.objects.filter(event_type="payorder.expired").count() == 3


def test_process_and_watcher_race_on_one_transfer(merchant):
    order = merchant.create()
    details = merchant.pay_details(order["id"])
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    mine(merchant.client, 1)
    org = merchant.organization
    results = run_at_once(
        lambda: payorder_process(organization=org, public_id=order["id"], tx_hash=tx),
        lambda: payorder_process(organization=org, public_id=order["id"], tx_hash=tx),
        tasks.watch_addresses,
    )
    assert not any(isinstance(r, Exception) for r in results), results
    assert PayOrderPayment.objects.filter(tx_hash=tx).count() == 1
    assert order_row(order["id"]).amount_received == Decimal(details["amount"])


def test_payment_details_races_never_share_an_address(merchant):
    orders = [merchant.create()["id"] for _ in range(6)]
    quotes = {o: merchant.quote(o, "ETH")["quote_id"] for o in orders}
    org = merchant.organization
    funcs = [lambda o=o: payorder_select_quote(organization=org, public_id=o, quote_id=quotes[o]) for o in orders]
    funcs += [lambda: payorder_select_quote(organization=org, public_id=orders[0], quote_id=quotes[orders[0]])]
    results = run_at_once(*funcs)
    assert not any(isinstance(r, Exception) for r in results), results
    addresses = [order_row(o).deposit_address.address for o in orders]
    assert len(set(addresses)) == 6
    assert DepositAddress.objects.filter(xpub_key__organization=org).count() == 6
    assert XpubKey.objects.get(organization=org, chain="ethereum", is_active=True).next_index == 6
    assert results[0].deposit_address_id == results[-1].deposit_address_id


def test_refund_twice_at_once_refunds_once(merchant):
    order, _ = _paid_order(merchant)
    tasks.poll_confirmations()
    dest = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"
    org = merchant.organization
    results = run_at_once(
        lambda: payorder_refund(organization=org, public_id=order["id"], destination_address=dest),
        lambda: payorder_refund(organization=org, public_id=order["id"], destination_address=dest),
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and getattr(errors[0], "code", "") == "INVALID_STATE", results
    row = order_row(order["id"])
    assert row.status == S.REFUNDED and row.refunds.count() == 1
    assert Transaction.objects.filter(reference=f"payorder:{order['id']}:refund").count() == 1
    assert Wallet.objects.get(organization=org, purpose="settlement", asset__code="USD").balance == 0
    assert ledger_check() == []
