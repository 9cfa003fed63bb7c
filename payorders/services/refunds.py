"""Refunds: the payer's money back to an address of theirs, in the source currency.

Invariants:
- At most one refund per order and kind (full, excess): a unique constraint, checked under the
  order's row lock. A refund takes only money that is in a block (a payment still in the mempool
  can be replaced or dropped).
- full: a COMPLETED order is settled first if it was not, then the settled net amount is
  Redeemed from the settlement wallet through the money path with reference
  `payorder:<public id>:refund` (sanctions screening of the destination applies; 422
  INSUFFICIENT_FUNDS if the merchant no longer holds it) -> REFUNDED. An EXPIRED/FAILED order's
  money never entered the ledger: no posting. excess: an overpaid order's `refund_due`; the
  order keeps its state.
- On the sandbox chain the refund is sent at once from the deposit address; on a live chain it
  awaits the merchant's own signed transaction (`refund_attach_transaction`; no keys here).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from ledger.models import Transaction
from ledger.posting import Redeem
from wallets.pipeline import MoneyMovement, money_path
from payorders.addresses import normalize_address
from payorders.chains import chain_provider_name, get_chain_provider
from payorders.chains.base import TransferStatus, normalize_tx_hash, same_address, same_pending_transfer
from payorders.chains.sandbox import sandbox_send
from core.errors import field_error
from payorders.errors import NothingToRefund, PaymentMismatch, PayOrderInvalidState, TransactionAlreadyUsed, TransactionUnknown
from payorders.locks import payorders_for_update, refunds_for_update
from payorders.models import PayOrder, PayOrderPayment, Refund
from ledger.selectors import platform_asset
from payorders.selectors import fmt_source, ledger_settles, payorder_get, payorder_livemode, refund_get
from payorders.services.deposits import routes_to_customer
from payorders.services.history import Actor, payorder_flag, payorder_transition
from payorders.services.payments import hash_check_unused
from payorders.services.settlement import settle_locked, settlement_wallet

Status = PayOrder.Status


def _unmined_payments(order: PayOrder):
    """The order's payments last seen outside a block (submitted from the mempool)."""
    return order.payments.filter(status=PayOrderPayment.Status.PENDING, confirmations__lt=1)


def _payments_now_in_a_block(order: PayOrder) -> set[int]:
    """Ids of the order's unmined-when-seen payments that the chain now shows executed in a block
    (asked before any lock is taken: a network call). A refund counts only money on chain."""
    payments = list(_unmined_payments(order))
    if not payments:
        return set()
    provider = get_chain_provider(order.chain, livemode=order.livemode)
    mined = set()
    for payment in payments:
        transfers = provider.get_transaction(payment.tx_hash) or []
        if any(
            ((t.stored_log_index == payment.log_index and t.asset == payment.asset)
             or same_pending_transfer(payment.log_index, payment.asset, payment.to_address, payment.amount, t))
            and t.status == TransferStatus.SUCCEEDED and t.confirmations >= 1
            for t in transfers
        ):
            mined.add(payment.pk)
    return mined


def payorder_refund(*, organization, public_id, destination_address: str, kind: str = Refund.Kind.FULL, actor=None, reason: str = "") -> Refund:
    """Give the payer's money back to `destination_address`: everything received and not refunded
    yet (kind=full: a COMPLETED, EXPIRED or FAILED order -> REFUNDED), or an overpaid order's
    excess (kind=excess). See the module docstring for the ledger side."""
    if kind not in Refund.Kind.values:
        raise field_error("kind", "One of full, excess.")
    acting = Actor(actor)
    in_block = _payments_now_in_a_block(payorder_get(organization=organization, public_id=public_id))
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(
            pk=payorder_get(organization=organization, public_id=public_id).pk
        )
        if order.deposit_address_id is None or order.amount_received <= 0:
            raise NothingToRefund("Nothing has been paid to this order.", details={"id": str(order.public_id), "status": order.status})
        destination = normalize_address(chain=order.chain, address=destination_address, field="destination_address")
        refunded = sum((r.amount for r in order.refunds.all()), Decimal(0))
        if kind == Refund.Kind.EXCESS:
            if order.status not in (Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER, Status.COMPLETED) or order.refund_due <= 0:
                raise NothingToRefund(
                    "Only an overpaid order has an excess to refund.", details={"id": str(order.public_id), "status": order.status}
                )
            amount = order.refund_due
        else:
            if order.status not in (Status.COMPLETED, Status.EXPIRED, Status.FAILED):
                raise PayOrderInvalidState(
                    f"A {order.status} pay order cannot be refunded.", details={"id": str(order.public_id), "status": order.status}
                )
            amount = order.amount_received - refunded
            if amount <= 0:
                raise NothingToRefund(details={"id": str(order.public_id), "status": order.status})
        if kind == Refund.Kind.FULL and order.status == Status.COMPLETED and routes_to_customer(order):
            raise PayOrderInvalidState(
                "A completed deposit is the customer's balance now: pay it out with a withdrawal from their wallet.",
                details={"id": str(order.public_id), "status": order.status, "type": order.type},
            )
        if _unmined_payments(order).exclude(pk__in=in_block).exists():
            raise PayOrderInvalidState(
                "A payment to this order is not in a block yet (it can still be replaced or dropped); refund once it is mined.",
                details={"id": str(order.public_id), "status": order.status},
            )
        if Refund.objects.filter(pay_order=order, kind=kind).exists():
            raise PayOrderInvalidState(f"This order already has a {kind} refund.", details={"id": str(order.public_id), "kind": kind})
        ledger_tx = None
        ledger_amount = None
        if kind == Refund.Kind.FULL and order.status == Status.COMPLETED and ledger_settles(order):
            settle_locked(acting, order)
            ledger_amount = order.settlement_amount - (order.settlement_fee or 0)
            if ledger_amount > 0:
                wallet = settlement_wallet(organization=order.organization, asset=platform_asset(order.settlement_currency), livemode=payorder_livemode(order))
                ledger_tx = money_path(MoneyMovement(  # sanctions screening of the destination always applies
                    actor=actor if isinstance(actor, User) else None, movement_type="withdrawal", ledger_type=Transaction.Type.REFUND,
                    wallet=wallet, amount=ledger_amount,
                    operations=[Redeem(wallet=wallet, amount=ledger_amount, currency=order.settlement_currency)],
                    step_up=False, beneficiary_name=destination, organization=order.organization,
                    reference=f"payorder:{order.public_id}:refund",
                    description=f"Refund of pay order {order.public_id}",
                    metadata={"pay_order": str(order.public_id), "refund_amount": amount, "currency": order.source_currency},
                    publish=lambda tx: None, audit_action="refund.{status}", audit_data={"pay_order": str(order.public_id)},
                )).raise_for_error()
        refund = Refund.objects.create(
            pay_order=order,
            kind=kind,
            chain=order.chain,
            currency=order.source_currency,
            amount=amount,
            destination_address=destination,
            ledger_transaction=ledger_tx,
            ledger_amount=ledger_amount,
            reason=(reason or "")[:300],
        )
        if chain_provider_name(livemode=order.livemode) == "sandbox":  # paid and refunded on the sandbox (a test-mode order, by default)
            refund.tx_hash = sandbox_send(
                to_address=destination, amount=amount, currency=order.source_currency, from_address=order.deposit_address.address
            )
            refund.mark_sent()
            refund.sent_at = timezone.now()
            refund.save()
        order.refund_due = max(order.refund_due - amount, Decimal(0))
        data = {"refund_id": str(refund.public_id), "kind": kind, "amount": amount, "destination_address": destination, "tx_hash": refund.tx_hash}
        unit = order.source_currency
        if kind == Refund.Kind.FULL:
            order.refund_due = Decimal(0)
            payorder_transition(acting, order, "refund", cause=f"refunded {fmt_source(order, amount, trim=True)} {unit} to {destination}", data=data)
        else:
            order.save()
            payorder_flag(acting, order, cause=f"excess of {fmt_source(order, amount, trim=True)} {unit} refunded to {destination}", data=data)
        acting.audit("payorder.refund_create", refund, {**data, "ledger_transaction_id": ledger_tx.pk if ledger_tx else None})
    return refund


def refund_attach_transaction(*, organization, public_id, refund_id, tx_hash, actor=None) -> Refund:
    """The merchant signed and sent the refund itself (live chains; no keys here): check that
    the transaction pays the destination at least the refund amount in the right asset."""
    tx_hash = normalize_tx_hash(tx_hash)
    order = payorder_get(organization=organization, public_id=public_id)
    refund = refund_get(order=order, refund_id=refund_id)
    if refund.status != Refund.Status.AWAITING_TRANSACTION:
        raise PayOrderInvalidState("This refund has been sent already.", details={"refund_id": str(refund.public_id), "status": refund.status})
    hash_check_unused(chain=refund.chain, tx_hash=tx_hash)
    transfers = get_chain_provider(refund.chain, livemode=refund.pay_order.livemode).get_transaction(tx_hash)
    if transfers is None:
        raise TransactionUnknown(details={"tx_hash": tx_hash, "chain": refund.chain})
    paid = sum(
        (
            t.amount
            for t in transfers
            if same_address(refund.chain, t.to_address, refund.destination_address)
            and t.asset == refund.currency
            and t.status != TransferStatus.FAILED
        ),
        Decimal(0),
    )
    if paid < refund.amount:
        raise PaymentMismatch(
            "This transaction does not send the refund amount to the refund's destination.",
            details={
                "tx_hash": tx_hash, "due": fmt_source(order, refund.amount), "paid": fmt_source(order, paid),
                "destination_address": refund.destination_address,
            },
        )
    with transaction.atomic():
        payorders_for_update().get(pk=order.pk)
        refund = refunds_for_update().get(pk=refund.pk)
        if refund.status != Refund.Status.AWAITING_TRANSACTION:
            raise PayOrderInvalidState("This refund has been sent already.", details={"refund_id": str(refund.public_id), "status": refund.status})
        refund.tx_hash = tx_hash
        refund.mark_sent()
        refund.sent_at = timezone.now()
        try:
            with transaction.atomic():
                refund.save()
        except IntegrityError:
            raise TransactionAlreadyUsed(details={"tx_hash": tx_hash, "chain": refund.chain}) from None
        Actor(actor).audit("payorder.refund_sent", refund, {"pay_order": str(order.public_id), "tx_hash": tx_hash, "amount": refund.amount})
    return refund
