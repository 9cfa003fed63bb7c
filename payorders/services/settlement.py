"""Settlement: a COMPLETED order's worth credited to the merchant's settlement wallet, once
(a DEPOSIT for a customer is credited to the customer instead: services.deposits).

Invariants:
- One money-path movement (`wallets.pipeline.money_path`) with reference
  `payorder:<public id>:settlement`: Issue of `settlement_amount` in the settlement currency to
  the organization's settlement system wallet and, in the same posting, the settlement fee
  (compliance fee rule, 1% by default) to the platform fee account. Payorders never call the
  ledger engine directly.
- At most once: the order's row lock serialises settlers, and the unique reference is the last
  line (a duplicate whose transaction completed is success). A refused posting raises, so
  nothing is kept and the next run retries.
- Started by a `payorder.settle` outbox message written in the transaction that completes the
  order (`settlement_enqueue`); payorders.tasks handles the topic with `payorder_settle`.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from compliance.fees import fee_compute
from core.livemode import deployment_livemode
from core.outbox import outbox_emit
from ledger.errors import DuplicateReference, WalletAlreadyExists
from ledger.models import Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Transfer
from ledger.services import wallet_open
from wallets.pipeline import MoneyMovement, money_path
from payorders.locks import payorders_for_update
from payorders.models import PayOrder
from ledger.selectors import platform_asset
from payorders.selectors import ledger_settles, payorder_livemode
from payorders.services.deposits import deposit_execute_locked, routes_to_customer
from payorders.services.history import Actor

PAYORDER_SETTLE_TOPIC = "payorder.settle"


def settlement_enqueue(order: PayOrder) -> None:
    """In the transaction that completes the order: a `payorder.settle` outbox message (one per
    order), run after commit by the one outbox; a dead broker only delays it, the outbox sweeper
    runs it."""
    outbox_emit(topic=PAYORDER_SETTLE_TOPIC, payload={"order_id": order.pk}, organization=order.organization_id, key=f"payorder:{order.pk}:settle")


def settlement_wallet(*, organization, asset, livemode: bool | None = None) -> Wallet:
    """The organization's settlement system wallet in `asset` of mode `livemode` (the
    deployment's by default, core.livemode), opened on first use."""
    livemode = deployment_livemode() if livemode is None else livemode

    def find():
        return (
            Wallet.objects.filter(organization=organization, asset=asset, purpose=Wallet.Purpose.SETTLEMENT, label="", livemode=livemode)
            .exclude(status=Wallet.Status.CLOSED)
            .first()
        )

    wallet = find()
    if wallet is None:
        try:
            wallet = wallet_open(asset=asset, organization=organization, kind=Wallet.Kind.SYSTEM, purpose=Wallet.Purpose.SETTLEMENT, livemode=livemode)
        except WalletAlreadyExists:
            wallet = find()
    return wallet


def settle_locked(actor: Actor, order: PayOrder) -> None:
    """Settle the LOCKED, completed order if it is not settled yet."""
    if order.settlement_transaction_id is not None:
        return
    asset = platform_asset(order.settlement_currency)
    wallet = settlement_wallet(organization=order.organization, asset=asset, livemode=payorder_livemode(order))
    gross = order.settlement_amount
    fee = min(fee_compute(movement_type="settlement", amount=gross, asset=asset).fee_amount, gross)
    operations = [Issue(wallet=wallet, amount=gross, currency=asset.code)]
    if fee > 0:
        operations.append(Transfer(source=wallet, destination=PlatformAccount("fee"), amount=fee, currency=asset.code))
    result = money_path(MoneyMovement(  # the merchant's system wallet: no customer to limit or screen
        actor=None, movement_type="settlement", ledger_type=Transaction.Type.SETTLEMENT, wallet=wallet, amount=gross,
        operations=operations, direction="incoming", step_up=False, risk=False, organization=order.organization,
        reference=f"payorder:{order.public_id}:settlement",
        description=f"Pay order {order.public_id}" + (f": {order.description}" if order.description else "")[:400],
        metadata={"pay_order": str(order.public_id), "gross": gross, "fee": fee, "source_currency": order.source_currency},
        publish=lambda tx: None,  # the merchant hears of it as payorder.* events
        audit_data={"pay_order": str(order.public_id)},
    ))
    if not result.ok and isinstance(result.error, DuplicateReference) and result.transaction.status == Transaction.Status.COMPLETED:
        tx = result.transaction  # settled before (the order row was not updated): the posting stands
    else:
        tx = result.raise_for_error()
    order.settlement_transaction = tx
    order.settlement_fee = fee
    order.settled_at = timezone.now()
    order.save()
    actor.audit(
        "payorder.settle", order,
        {"transaction_id": tx.pk, "wallet_id": wallet.pk, "gross": gross, "fee": fee, "net": gross - fee, "currency": asset.code},
    )


def payorder_settle(*, order_id: int) -> PayOrder | None:
    """Settle a COMPLETED order into the merchant's settlement wallet, or credit an
    EXECUTING_ORDER deposit to its customer (services.deposits), exactly once."""
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "customer").filter(pk=order_id).first()
        if order is None or order.settlement_transaction_id is not None or not ledger_settles(order):
            return order
        if routes_to_customer(order):
            if order.status == PayOrder.Status.EXECUTING_ORDER:
                deposit_execute_locked(Actor("system:execute_deposit"), order)
        elif order.status == PayOrder.Status.COMPLETED:
            settle_locked(Actor("system:settle_order"), order)
    return order
