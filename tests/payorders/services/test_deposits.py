"""DEPOSIT orders for a customer (issue 13 item 8): confirmed in full -> EXECUTING_ORDER -> the
customer's wallet in the destination currency is credited through the money path (through the FX
float when the paid asset differs) -> COMPLETED; a float that cannot cover it is retried; the
customer's limits refuse it (FAILED, refundable); a hold for review waits for the decision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import Customer, WebhookDelivery
from compliance.models import ReviewCase
from compliance.risk import register_risk_kind, unregister_risk_kind
from wallets.review import review_approve, review_reject
from ledger.checks import ledger_check
from ledger.errors import InsufficientFunds
from ledger.models import Transaction, Wallet
from payorders import tasks
from payorders.models import PayOrder
from payorders.services.settlement import payorder_settle
from tests.factories.compliance import RiskRuleFactory
from tests.factories.accounts import StaffUserFactory
from tests.payorders.support import history, merchant, mine, order_row, sandbox_pay  # noqa: F401
from wallets.movements.exchanges import fx_float_fund

pytestmark = pytest.mark.django_db
S = PayOrder.Status


def _customer(m, external_id: str = "cust-1", **fields) -> Customer:
    r = m.client.put(f"/api/v1/customers/{external_id}", {"name": "Ada", **fields}, format="json")
    assert r.status_code in (200, 201), r.json()
    return Customer.objects.get(organization=m.organization, external_id=external_id)


def _paid_and_confirmed(m, *, paid: str = "ETH", **order) -> dict:
    """A DEPOSIT order for cust-1 (`order`: amount, currency = the destination), paid in `paid`."""
    created = m.create(type="DEPOSIT", customer_external_id="cust-1", **order)
    details = m.pay_details(created["id"], paid)
    sandbox_pay(m.client, details["deposit_address"], details["amount"], currency=paid)
    mine(m.client, 3)
    tasks.watch_addresses()
    tasks.poll_confirmations()
    return created


def _float(code: str, per_shard: str = "100000") -> None:
    from ledger.models import Asset

    fx_float_fund(asset=Asset.objects.get(code=code, organization__isnull=True), per_shard=Decimal(per_shard))


def _wallet(customer: Customer, code: str) -> Wallet | None:
    return Wallet.objects.filter(customer=customer, asset__code=code).first()


def test_a_deposit_credits_the_customers_wallet_through_the_fx_float(merchant):  # noqa: F811
    customer = _customer(merchant)
    merchant.subscribe("http://127.0.0.1:9/hooks")
    _float("USD")
    order = _paid_and_confirmed(merchant, amount="100.00", currency="USD")
    row = order_row(order["id"])
    assert row.status == S.EXECUTING_ORDER and row.settlement_transaction_id is None  # confirmed, not yet credited
    assert WebhookDelivery.objects.filter(event_type="payorder.executing_order").count() == 1
    usd_fx_before = sum(w.balance for w in Wallet.objects.filter(purpose=Wallet.Purpose.FX, asset__code="USD"))

    payorder_settle(order_id=row.pk)  # what the outbox message runs
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.completed_at is not None
    assert history(order["id"])[-2:] == [("AWAITING_CONFIRMATION", "EXECUTING_ORDER"), ("EXECUTING_ORDER", "COMPLETED")]
    tx = row.settlement_transaction
    assert (tx.type, tx.status, tx.reference) == (Transaction.Type.DEPOSIT, Transaction.Status.COMPLETED, f"payorder:{order['id']}:deposit")
    fee = row.settlement_fee
    assert fee == Decimal("1.00")  # the settlement fee rule: 1%
    assert _wallet(customer, "USD").balance == Decimal("99.00")
    assert not Wallet.objects.filter(organization=merchant.organization, purpose=Wallet.Purpose.SETTLEMENT).exists()
    usd_fx_after = sum(w.balance for w in Wallet.objects.filter(purpose=Wallet.Purpose.FX, asset__code="USD"))
    assert usd_fx_before - usd_fx_after == Decimal("100.00")  # the customer's 99 and the platform's fee of 1
    eth_fx = sum(w.balance for w in Wallet.objects.filter(purpose=Wallet.Purpose.FX, asset__code="ETH"))
    assert eth_fx == row.source_amount  # the paid ETH entered the float's other side
    payorder_settle(order_id=row.pk)  # again: nothing more
    assert Transaction.objects.filter(reference__startswith=f"payorder:{order['id']}").count() == 1
    r = merchant.post(order["id"], "refund", {"destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"}, HTTP_IDEMPOTENCY_KEY="r1")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "INVALID_STATE")  # the customer's balance now
    assert ledger_check() == []


def test_paid_in_the_destination_asset_it_enters_as_itself(merchant):  # noqa: F811
    # 0.5 ETH is USD 1,600 worth at the sandbox rate: over KYC none's USD 1,000 deposit limit
    customer = _customer(merchant, kyc_level="basic")
    order = _paid_and_confirmed(merchant, amount="0.5", currency="ETH", paid="ETH")
    payorder_settle(order_id=order_row(order["id"]).pk)
    row = order_row(order["id"])
    assert row.status == S.COMPLETED
    assert _wallet(customer, "ETH").balance == Decimal("0.5") - row.settlement_fee
    assert not Wallet.objects.filter(purpose=Wallet.Purpose.FX, asset__code="ETH", balance__gt=0).exists()
    assert ledger_check() == []


def test_a_float_that_cannot_cover_it_leaves_the_order_executing_until_funded(merchant):  # noqa: F811
    customer = _customer(merchant)
    order = _paid_and_confirmed(merchant, amount="100.00", currency="USD")
    row = order_row(order["id"])
    with pytest.raises(InsufficientFunds):
        payorder_settle(order_id=row.pk)
    row = order_row(order["id"])
    assert row.status == S.EXECUTING_ORDER and row.settlement_transaction_id is None
    assert not Transaction.objects.filter(reference=f"payorder:{order['id']}:deposit").exists()
    assert _wallet(customer, "USD") is None or _wallet(customer, "USD").balance == 0
    tasks.poll_confirmations()  # the poll does not complete it behind the posting's back
    assert order_row(order["id"]).status == S.EXECUTING_ORDER
    _float("USD")
    payorder_settle(order_id=row.pk)
    assert order_row(order["id"]).status == S.COMPLETED and _wallet(customer, "USD").balance == Decimal("99.00")
    assert ledger_check() == []


def test_the_customers_limits_refuse_it_and_the_payer_is_refunded(merchant):  # noqa: F811
    customer = _customer(merchant)
    assert customer.kyc_level == "none"  # single incoming limit 1,000
    _float("USD")
    order = _paid_and_confirmed(merchant, amount="5000.00", currency="USD")
    payorder_settle(order_id=order_row(order["id"]).pk)
    row = order_row(order["id"])
    assert row.status == S.FAILED and row.failure_reason.startswith("deposit refused")
    assert row.refund_due == row.amount_received and row.settlement_transaction_id is None
    assert _wallet(customer, "USD") is None or _wallet(customer, "USD").balance == 0
    r = merchant.post(order["id"], "refund", {"destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"}, HTTP_IDEMPOTENCY_KEY="r2")
    assert r.status_code == 201, r.json()
    assert order_row(order["id"]).status == S.REFUNDED and r.json()["ledger_transaction_id"] is None
    assert ledger_check() == []


@pytest.fixture
def review_deposits():
    @register_risk_kind("test_review_deposits")
    def check(rule, ctx):
        return "deposit" if ctx.movement_type == "deposit" else None

    RiskRuleFactory(name="test", kind="test_review_deposits", action="review", params={})
    yield
    unregister_risk_kind("test_review_deposits")


@pytest.mark.parametrize("approve", [True, False])
def test_a_deposit_held_for_review_waits_for_the_decision(merchant, review_deposits, approve):  # noqa: F811
    customer = _customer(merchant)
    _float("USD")
    order = _paid_and_confirmed(merchant, amount="100.00", currency="USD")
    payorder_settle(order_id=order_row(order["id"]).pk)
    row = order_row(order["id"])
    assert row.status == S.EXECUTING_ORDER and row.settlement_transaction.status == Transaction.Status.IN_REVIEW
    assert row.status_changes.last().cause.startswith("deposit held for review")
    tasks.poll_confirmations()
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.EXECUTING_ORDER
    assert order_row(order["id"]).status_changes.filter(cause__startswith="deposit held for review").count() == 1
    case = ReviewCase.objects.get(transaction=row.settlement_transaction)
    if approve:
        review_approve(case=case, actor=StaffUserFactory(), reason="known customer")
        tasks.poll_confirmations()
        assert order_row(order["id"]).status == S.COMPLETED and _wallet(customer, "USD").balance == Decimal("99.00")
    else:
        review_reject(case=case, actor=StaffUserFactory(), reason="source of funds unclear")
        tasks.poll_confirmations()
        row = order_row(order["id"])
        assert row.status == S.FAILED and row.refund_due == row.amount_received
        assert _wallet(customer, "USD").balance == 0
    assert ledger_check() == []
