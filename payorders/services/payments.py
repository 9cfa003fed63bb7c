"""Payments: chain transfers to deposit addresses, submitted hashes, the watcher, confirmations.

- A transfer is recorded once over all orders (unique chain + tx_hash + log_index; a token
  transfer seen while pending has log index PENDING_LOG_INDEX until its mined log gives the real
  one, and is never confirmed before that, so it is counted once); whatever the
  order's state, money that reached its address is recorded and flagged (underpaid, overpaid,
  late) with `refund_due` telling what the payer should get back. Nothing received is dropped.
- Timing is by detection: a payment is on time while the order awaits it and its window plus
  PAYORDER_EXPIRY_GRACE_SECONDS (blocks in flight) has not passed.
- A reused address (services.addresses) is shared by block range: an order takes transfers mined
  from its `scan_from_block` and below its `scan_until_block`, so a late payment to an earlier
  order is that order's, never the live one's.
- Chain providers are asked before the order's row lock is taken, and re-checked under it.
- Confirmed in full -> COMPLETED (a DEPOSIT for a customer -> EXECUTING_ORDER, services.deposits),
  and in the same transaction a `payorder.settle` outbox message (services.settlement); a payment
  that failed on chain and leaves the order uncovered -> FAILED.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import QuoteExpired
from payorders.chains import get_chain_provider
from payorders.chains.base import PENDING_LOG_INDEX, ChainTransfer, TransferStatus, normalize_tx_hash, same_address, same_pending_transfer
from payorders.errors import PaymentMismatch, PayOrderInvalidState, TransactionAlreadyUsed, TransactionUnknown
from payorders.locks import payorders_for_update
from payorders.models import PayOrder, PayOrderPayment, Refund
from payorders.selectors import fmt_source, ledger_settles, payorder_get
from payorders.services.deposits import deposit_follow, routes_to_customer
from payorders.services.history import Actor, payorder_flag, payorder_transition
from payorders.services.settlement import settlement_enqueue

Status = PayOrder.Status
LATE_WATCH_WINDOW = timedelta(hours=24)  # keep watching closed orders' addresses this long
WATCHED_STATUSES = (
    Status.AWAITING_PAYMENT, Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER, Status.COMPLETED,
    Status.EXPIRED, Status.FAILED, Status.REFUNDED,
)


def expiry_grace() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PAYORDER_EXPIRY_GRACE_SECONDS", 60)))


def _record(actor: Actor, order: PayOrder, transfers: list[ChainTransfer], *, source: str) -> list[PayOrderPayment]:
    """Record the transfers not seen before on the LOCKED order and apply them: flags, history,
    transitions. Returns the new payments."""
    now = timezone.now()
    if order.status == Status.AWAITING_PAYMENT and now > order.expires_at + expiry_grace():
        payorder_transition(actor, order, "expire", cause="payment window passed before the payment was seen")
    late = order.status in (Status.EXPIRED, Status.FAILED, Status.REFUNDED)
    new: list[PayOrderPayment] = []
    for t in transfers:
        if t.status == TransferStatus.FAILED:
            continue
        try:
            with transaction.atomic():
                payment = PayOrderPayment.objects.create(
                    pay_order=order,
                    chain=t.chain,
                    asset=t.asset,
                    tx_hash=t.tx_hash.lower(),
                    log_index=t.stored_log_index,
                    from_address=t.from_address[:100],
                    to_address=t.to_address,
                    amount=t.amount,
                    block_number=t.block_number,
                    confirmations=t.confirmations,
                    status=PayOrderPayment.Status.PENDING,
                    source=source,
                    late=late,
                    detected_at=now,
                )
        except IntegrityError:
            continue  # recorded already (by the watcher, a retry, or a concurrent run)
        new.append(payment)
    if not new:
        return new
    total = sum((p.amount for p in new), Decimal(0))
    order.amount_received += total
    hashes = sorted({p.tx_hash for p in new})
    data = {"tx_hashes": hashes, "amount": total, "source": source}
    expected = order.source_amount or Decimal(0)
    unit = order.source_currency
    if late:
        order.late_payment = True
        order.refund_due += total
        order.save()
        payorder_flag(actor, order, cause=f"late payment: {fmt_source(order, total, trim=True)} {unit} arrived on a {order.status} order; refundable", data=data)
    elif order.status == Status.AWAITING_PAYMENT:
        if order.amount_received >= expected:
            order.underpaid = False
            if order.amount_received > expected:
                order.overpaid = True
                order.refund_due = order.amount_received - expected
            payorder_transition(
                actor, order, "await_confirmation",
                cause=f"paid {fmt_source(order, order.amount_received, trim=True)} of {fmt_source(order, expected, trim=True)} {unit} ({source})", data=data,
            )
            if order.overpaid:
                payorder_flag(actor, order, cause=f"overpaid by {fmt_source(order, order.refund_due, trim=True)} {unit}; the excess is refundable", data=data)
        else:
            order.underpaid = True
            order.save()
            payorder_flag(
                actor, order,
                cause=f"underpaid: {fmt_source(order, order.amount_received, trim=True)} of {fmt_source(order, expected, trim=True)} {unit} received; "
                f"waiting for {fmt_source(order, expected - order.amount_received, trim=True)} until {order.expires_at.isoformat()}",
                data=data,
            )
    else:  # AWAITING_CONFIRMATION, EXECUTING_ORDER, COMPLETED: more than was due
        order.overpaid = True
        order.refund_due += total
        order.save()
        payorder_flag(actor, order, cause=f"overpaid: a further {fmt_source(order, total, trim=True)} {unit} arrived; refundable", data=data)
    return new


def hash_check_unused(*, chain: str, tx_hash: str, order: PayOrder | None = None) -> None:
    """409 TRANSACTION_ALREADY_USED when the hash paid another order or sent a refund."""
    payments = PayOrderPayment.objects.filter(chain=chain, tx_hash=tx_hash)
    if order is not None:
        payments = payments.exclude(pay_order=order)
    if payments.exists() or Refund.objects.filter(chain=chain, tx_hash=tx_hash).exists():
        raise TransactionAlreadyUsed(details={"tx_hash": tx_hash, "chain": chain})


def payorder_process(*, organization, public_id, tx_hash, actor=None) -> PayOrder:
    """Check a submitted transaction on chain and take it as the order's payment.

    Refused (4xx, nothing recorded) when: the chain does not know the hash (404), it pays
    another address or another asset, it reverted, or it does not cover what is still due (422
    PAYMENT_MISMATCH; a partial payment to the address is still found by the watcher and flagged
    underpaid, never lost); the hash is recorded for another order (409); the order does not
    await payment (409 INVALID_STATE) or its window has passed (409 QUOTE_EXPIRED)."""
    tx_hash = normalize_tx_hash(tx_hash)
    order = payorder_get(organization=organization, public_id=public_id)
    if order.deposit_address_id is None:
        raise PayOrderInvalidState(
            "Request payment details first: this order has no deposit address yet.",
            details={"id": str(order.public_id), "status": order.status},
        )
    hash_check_unused(chain=order.chain, tx_hash=tx_hash, order=order)
    if PayOrderPayment.objects.filter(pay_order=order, chain=order.chain, tx_hash=tx_hash).exists():
        return order  # already taken (a retry, or the watcher saw it first)
    transfers = get_chain_provider(order.chain, livemode=order.livemode).get_transaction(tx_hash)
    if transfers is None:
        raise TransactionUnknown(details={"tx_hash": tx_hash, "chain": order.chain})
    address = order.deposit_address.address
    to_us = [t for t in transfers if same_address(order.chain, t.to_address, address)]
    matching = [t for t in to_us if t.asset == order.source_currency]
    if not to_us:
        raise PaymentMismatch(
            "This transaction does not pay the order's deposit address.",
            details={"tx_hash": tx_hash, "expected_recipient": address, "recipients": sorted({t.to_address for t in transfers})},
        )
    if not matching:
        raise PaymentMismatch(
            f"This transaction pays the address in {', '.join(sorted({t.asset for t in to_us}))}, not {order.source_currency}.",
            details={"tx_hash": tx_hash, "expected_asset": order.source_currency},
        )
    if any(t.status == TransferStatus.FAILED for t in matching):
        raise PaymentMismatch("This transaction failed on chain; nothing was paid.", details={"tx_hash": tx_hash})
    if any(_predates(order, t) for t in matching):
        raise PaymentMismatch(
            "This transaction was mined before this order's payment details were issued; it paid an earlier order at this address.",
            details={"tx_hash": tx_hash},
        )
    paid = sum((t.amount for t in matching), Decimal(0))
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(pk=order.pk)
        hash_check_unused(chain=order.chain, tx_hash=tx_hash, order=order)
        if PayOrderPayment.objects.filter(pay_order=order, chain=order.chain, tx_hash=tx_hash).exists():
            return order
        if order.status != Status.AWAITING_PAYMENT:
            raise PayOrderInvalidState(
                f"A {order.status} pay order does not take a payment hash (the watcher records any further transfer).",
                details={"id": str(order.public_id), "status": order.status},
            )
        if timezone.now() > order.expires_at + expiry_grace():
            raise QuoteExpired(
                "The payment window has passed; the payment is recorded as late by the watcher and can be refunded.",
                details={"id": str(order.public_id), "expires_at": order.expires_at.isoformat()},
            )
        outstanding = order.source_amount - order.amount_received
        if paid < outstanding:
            raise PaymentMismatch(
                f"This transaction pays {fmt_source(order, paid)} {order.source_currency}; {fmt_source(order, outstanding)} is due.",
                details={"tx_hash": tx_hash, "paid": fmt_source(order, paid), "due": fmt_source(order, outstanding), "currency": order.source_currency},
            )
        _record(Actor(actor), order, matching, source=PayOrderPayment.Source.SUBMITTED)
    return order


def payorders_to_watch(*, now=None):
    """Ids of the orders whose address the watcher reads: open ones, and closed ones for
    LATE_WATCH_WINDOW after their window (late payments)."""
    now = now or timezone.now()
    recent = now - LATE_WATCH_WINDOW
    return (
        PayOrder.objects.filter(deposit_address__isnull=False, status__in=WATCHED_STATUSES, expires_at__gte=recent)
        .order_by("id")
        .values_list("pk", flat=True)
    )


def _before(t: ChainTransfer, until: int | None) -> bool:
    return until is None or (t.block_number is not None and t.block_number < until)


def _predates(order: PayOrder, t: ChainTransfer) -> bool:
    """A transfer mined before this order took a reused address (it is an earlier order's)."""
    return (
        t.block_number is not None and t.block_number < order.scan_from_block
        and PayOrder.objects.filter(deposit_address_id=order.deposit_address_id, scan_until_block__isnull=False).exclude(pk=order.pk).exists()
    )


def _take_mined_log(payment: PayOrderPayment, mined: ChainTransfer) -> None:
    """A token payment seen while pending (log index PENDING_LOG_INDEX) is the mined log `mined`:
    it takes the log's index and block (one row: the transfer is never counted twice)."""
    payment.log_index = mined.stored_log_index
    payment.block_number = mined.block_number
    payment.save(update_fields=["log_index", "block_number"])


def payorder_scan(*, order_id: int, pending_only: bool = False) -> PayOrder | None:
    """The watcher for one order: transfers to its address since the last scan are recorded, and
    so are broadcast ones not mined yet (mempool / pending block, where the chain provider sees
    them: the payer's page then says "Payment detected" at once). A pending payment is recorded
    with 0 confirmations and no block; once mined, the confirmation poll fills its block in.
    `pending_only`: look at the broadcast ones only (the checkout page's quick look)."""
    order = PayOrder.objects.select_related("deposit_address").filter(pk=order_id).first()
    if order is None or order.deposit_address_id is None:
        return order
    until = order.scan_until_block  # the address passed to a later order: its blocks are that order's
    if until is not None and order.scan_from_block >= until:
        return order
    provider = get_chain_provider(order.chain, livemode=order.livemode)
    start = order.scan_from_block
    if pending_only:
        head, end, transfers = None, None, []
    else:
        head = provider.current_block()
        transfers = provider.transfers_to(order.deposit_address.address, order.source_currency, from_block=start)
        end = head if until is None else min(head, until - 1)
        if provider.name == "evm":
            end = min(end, start + int(settings.EVM_SCAN_MAX_BLOCKS) - 1)
    transfers = [t for t in transfers if t.status != TransferStatus.FAILED and _before(t, until)]
    if until is None and order.status == Status.AWAITING_PAYMENT:
        mined = {t.tx_hash.lower() for t in transfers}
        transfers += [
            t for t in provider.pending_transfers_to(order.deposit_address.address, order.source_currency)
            if t.tx_hash.lower() not in mined
        ]
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(pk=order.pk)
        if order.scan_until_block is not None:  # the address passed on while we read the chain
            until = order.scan_until_block
            if end is not None:
                end = min(end, until - 1)
            transfers = [t for t in transfers if _before(t, until)]
        recorded = list(PayOrderPayment.objects.filter(chain=order.chain, tx_hash__in=[t.tx_hash.lower() for t in transfers]))
        known = {(p.tx_hash, p.log_index) for p in recorded}
        for t in transfers:  # a token payment recorded while pending is this mined log: it takes the log's index, once
            for p in recorded:
                if p.tx_hash == t.tx_hash.lower() and same_pending_transfer(p.log_index, p.asset, p.to_address, p.amount, t):
                    _take_mined_log(p, t)
                    known.add((p.tx_hash, p.log_index))
        fresh = [t for t in transfers if (t.tx_hash.lower(), t.stored_log_index) not in known]
        if fresh:
            _record(Actor("system:watch_addresses"), order, fresh, source=PayOrderPayment.Source.WATCHER)
        if end is not None and end + 1 > order.scan_from_block and end >= start:
            order.scan_from_block = end + 1
            order.save(update_fields=["scan_from_block", "updated_at"])
    return order


def payorder_refresh_confirmations(*, order_id: int) -> PayOrder | None:
    """Confirmations of an order's pending payments; enough confirmed -> COMPLETED (and its
    settlement kicked through the outbox); a payment that failed on chain -> FAILED if the rest does
    not cover the order."""
    order = PayOrder.objects.filter(pk=order_id).first()
    if order is None or order.status not in (Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER):
        return order
    if order.status == Status.EXECUTING_ORDER:  # paid and confirmed: a deposit waiting on its posting
        with transaction.atomic():
            order = payorders_for_update().select_related("organization", "customer", "settlement_transaction").get(pk=order.pk)
            if order.status == Status.EXECUTING_ORDER:
                deposit_follow(Actor("system:poll_confirmations"), order)
        return order
    provider = get_chain_provider(order.chain, livemode=order.livemode)
    required = provider.confirmations_required()
    seen: dict[int, tuple[int, int | None, bool, int]] = {}  # payment id -> (confirmations, block, failed, log index)
    for payment in order.payments.filter(status=PayOrderPayment.Status.PENDING):
        transfers = provider.get_transaction(payment.tx_hash)
        match = None
        for t in transfers or []:
            if (t.stored_log_index == payment.log_index and t.asset == payment.asset) or same_pending_transfer(
                payment.log_index, payment.asset, payment.to_address, payment.amount, t
            ):
                match = t  # a token payment seen pending matches its mined log (same asset, recipient, amount)
        if match is None or match.status == TransferStatus.FAILED:
            seen[payment.pk] = (0, None, True, payment.log_index)
        else:
            seen[payment.pk] = (match.confirmations, match.block_number, False, match.stored_log_index)
    actor = Actor("system:poll_confirmations")
    with transaction.atomic():
        order = payorders_for_update().select_related("organization").get(pk=order.pk)
        if order.status != Status.AWAITING_CONFIRMATION:
            return order  # a concurrent run got here first
        now = timezone.now()
        failed_total = Decimal(0)
        for payment in order.payments.select_for_update().filter(pk__in=list(seen), status=PayOrderPayment.Status.PENDING):
            confirmations, block, failed, log_index = seen[payment.pk]
            if failed:
                payment.status = PayOrderPayment.Status.FAILED
                failed_total += payment.amount
            else:
                payment.confirmations = confirmations
                payment.block_number = block
                payment.log_index = log_index  # PENDING_LOG_INDEX -> the mined log's, once mined
                if confirmations >= required and log_index != PENDING_LOG_INDEX:
                    payment.status = PayOrderPayment.Status.CONFIRMED
                    payment.confirmed_at = now
            payment.save(update_fields=["status", "confirmations", "block_number", "confirmed_at", "log_index"])
        if failed_total:
            order.amount_received -= failed_total
            order.refund_due = max(order.amount_received - order.source_amount, Decimal(0))
            order.overpaid = order.refund_due > 0
            order.save()
        on_time = order.payments.filter(late=False)
        confirmed = sum((p.amount for p in on_time.filter(status=PayOrderPayment.Status.CONFIRMED)), Decimal(0))
        valid = sum((p.amount for p in on_time.exclude(status=PayOrderPayment.Status.FAILED)), Decimal(0))
        if valid < order.source_amount:
            order.failure_reason = "payment failed on chain"
            order.refund_due = order.amount_received
            payorder_transition(actor, order, "fail", cause="a payment failed or vanished on chain; what is left does not cover the order")
        elif confirmed >= order.source_amount:
            cause, data = f"payment confirmed ({required} confirmations)", {"confirmations_required": required}
            if not ledger_settles(order):  # a test key's order on a live deployment: nothing reaches the ledger
                payorder_transition(actor, order, "complete", cause=cause + "; test mode: not settled", data=data)
                return order
            if routes_to_customer(order):
                payorder_transition(actor, order, "execute", cause=cause + "; crediting the customer's wallet", data=data)
            else:
                payorder_transition(actor, order, "complete", cause=cause, data=data)
            settlement_enqueue(order)
    return order
