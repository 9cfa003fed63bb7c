"""DEPOSIT orders for a customer: the payment credits that customer's wallet (seed 002).

Invariants:
- A DEPOSIT with `customer_external_id` routes to its customer (others settle to the merchant).
  Confirmed in full -> EXECUTING_ORDER + a `payorder.settle` outbox message; executing it is one
  money-path movement (never the ledger engine), reference `payorder:<public id>:deposit`, under
  the order's row lock, then the pipeline's customer and wallet locks.
- The customer's wallet in `settlement_currency` (opened on first use) receives the order's worth
  less the settlement fee. Paid in another asset, the paid amount is issued into that asset's FX
  account and the destination's FX float pays the customer and the fee; a float that cannot
  cover it refuses the posting, the order stays EXECUTING_ORDER and the outbox retries.
- The customer's limits and the organization's risk rules apply: a refusal fails the order
  (what was paid is `refund_due`); a hold for review keeps it EXECUTING_ORDER until the review
  decides (`deposit_follow`, run by the confirmation poll).
- A completed deposit is the customer's balance: it is not refunded as a pay order.
"""

from __future__ import annotations

from django.utils import timezone

from compliance.fees import fee_compute
from compliance.limits import LimitExceeded
from compliance.models import Direction, MovementType
from compliance.risk import TransactionRejected
from core.money import format_amount
from ledger.errors import DuplicateReference, WalletAlreadyExists
from ledger.models import Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Transfer, platform_wallet_covering
from ledger.services import wallet_open
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from payorders.models import PayOrder
from ledger.selectors import platform_asset
from payorders.services.history import Actor, payorder_flag, payorder_transition

REFUSALS = (LimitExceeded, TransactionRejected)


def routes_to_customer(order: PayOrder) -> bool:
    return order.type == PayOrder.Type.DEPOSIT and order.customer_id is not None


def customer_wallet(*, customer, asset) -> Wallet:
    """The customer's unlabelled wallet in `asset`, opened on first use."""

    def find():
        return Wallet.objects.filter(customer=customer, asset=asset, label="").exclude(status=Wallet.Status.CLOSED).first()

    wallet = find()
    if wallet is None:
        try:
            wallet = wallet_open(asset=asset, customer=customer)
        except WalletAlreadyExists:
            wallet = find()
    return wallet


def _operations(order: PayOrder, wallet: Wallet, *, gross, fee) -> list:
    destination = wallet.asset
    if order.source_currency == destination.code:  # paid in the destination asset: it enters as itself
        operations = [Issue(wallet=wallet.pk, amount=gross, currency=destination.code)]
        if fee > 0:
            operations.append(Transfer(source=wallet.pk, destination=PlatformAccount(Wallet.Purpose.FEE), amount=fee, currency=destination.code))
        return operations
    paid = platform_asset(order.source_currency)
    float_wallet = platform_wallet_covering(destination, Wallet.Purpose.FX, gross)
    operations = [
        Issue(wallet=platform_wallet_covering(paid, Wallet.Purpose.FX, order.source_amount).pk, amount=order.source_amount, currency=paid.code),
        Transfer(source=float_wallet.pk, destination=wallet.pk, amount=gross - fee, currency=destination.code),
    ]
    if fee > 0:
        operations.append(Transfer(source=float_wallet.pk, destination=PlatformAccount(Wallet.Purpose.FEE), amount=fee, currency=destination.code))
    return operations


def deposit_execute_locked(actor: Actor, order: PayOrder) -> None:
    """Credit the LOCKED, EXECUTING_ORDER deposit to its customer (see the module docstring).
    Raises on a posting the next run may get through (float, wallet state): nothing is kept."""
    asset = platform_asset(order.settlement_currency)
    wallet = customer_wallet(customer=order.customer, asset=asset)
    gross = order.settlement_amount
    fee = min(fee_compute(movement_type=MovementType.SETTLEMENT, amount=gross, asset=asset).fee_amount, gross)
    net = gross - fee
    result = money_path(MoneyMovement(
        actor=None, movement_type=MovementType.DEPOSIT, ledger_type=Transaction.Type.DEPOSIT, wallet=wallet, amount=net,
        operations=_operations(order, wallet, gross=gross, fee=fee), direction=Direction.INCOMING, step_up=False,
        limits=[LimitScope(asset, MovementType.DEPOSIT, Direction.INCOMING, net)], organization=order.organization,
        reference=f"payorder:{order.public_id}:deposit",
        description=f"Deposit by pay order {order.public_id}" + (f": {order.description}" if order.description else "")[:400],
        metadata={"pay_order": str(order.public_id), "gross": gross, "fee": fee, "paid": order.source_amount, "paid_currency": order.source_currency},
        audit_data={"pay_order": str(order.public_id)},
    ))
    if isinstance(result.error, REFUSALS):
        order.failure_reason = f"deposit refused: {result.error.message}"[:200]
        order.refund_due = order.amount_received
        payorder_transition(actor, order, "fail", cause=order.failure_reason, data={"code": result.error.code})
        return
    if not result.ok and isinstance(result.error, DuplicateReference) and result.transaction.status != Transaction.Status.FAILED:
        tx = result.transaction  # executed before (the order row was not updated): the posting stands
    else:
        tx = result.raise_for_error()
    order.settlement_transaction = tx
    order.settlement_fee = fee
    order.settled_at = timezone.now()
    order.save()
    data = {"transaction_id": tx.pk, "wallet_id": wallet.pk, "customer_external_id": order.customer.external_id,
            "gross": gross, "fee": fee, "net": net, "currency": asset.code}
    actor.audit("payorder.deposit", order, data)
    deposit_follow(actor, order)


def deposit_follow(actor: Actor, order: PayOrder) -> None:
    """The LOCKED, EXECUTING_ORDER deposit after its posting: completed -> COMPLETED; held for
    review -> stays (flagged once); rejected or failed in review -> FAILED, refundable."""
    tx = order.settlement_transaction
    if tx is None:
        return
    credited = f"{format_amount(order.settlement_amount - (order.settlement_fee or 0), platform_asset(order.settlement_currency).exponent, trim=True)} {order.settlement_currency}"
    if tx.status == Transaction.Status.COMPLETED:
        payorder_transition(actor, order, "complete", cause=f"deposited {credited} to customer {order.customer.external_id}", data={"transaction_id": tx.pk})
    elif tx.status == Transaction.Status.IN_REVIEW:
        if not order.status_changes.filter(cause__startswith="deposit held for review").exists():
            payorder_flag(actor, order, cause=f"deposit held for review: {credited} to customer {order.customer.external_id}", data={"transaction_id": tx.pk})
    elif tx.status in (Transaction.Status.REJECTED, Transaction.Status.FAILED):
        order.failure_reason = f"deposit {tx.status} in review"[:200]
        order.refund_due = order.amount_received
        payorder_transition(actor, order, "fail", cause=order.failure_reason, data={"transaction_id": tx.pk})
