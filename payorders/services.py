"""Pay-order services: the only writers of pay orders, their quotes, payments, history and refunds.

Life of an order (SPEC 7): PENDING --payment-details--> AWAITING_PAYMENT --paid in full-->
AWAITING_CONFIRMATION --confirmations >= threshold--> COMPLETED --settle--> (ledger) --refund-->
REFUNDED. PENDING/AWAITING_PAYMENT --cancel--> FAILED ("cancelled") or --expire--> EXPIRED.

Rules every function here keeps:
- Locks: the pay order row first (`payorders_for_update`), then the xpub key (address allocation)
  or the wallets (ledger_post locks them in id order). Chain and price providers are called
  BEFORE the lock is taken (they are network calls); what they said is re-checked under the lock.
- Transitions change state only (models.PayOrder); `_transition` saves, writes the
  PayOrderStatusChange (from, to, at, cause, actor), publishes `payorder.<status>` through the
  webhook engine in the same database transaction, and queues the audit event. Audit events are
  written last (`_Work.flush`): `audit_record` holds the chain lock until commit.
- Payments: a transfer is recorded once (unique chain + tx_hash + log_index); whatever the order's
  state, money that reached its address is recorded and flagged (underpaid, overpaid, late) with
  `refund_due` telling what the payer should get back. Timing is by detection: a payment counts
  as on time while the order still awaits it and the window (plus PAYORDER_EXPIRY_GRACE_SECONDS
  for blocks in flight) has not passed.
- Settlement: one `ledger_post` with reference `payorder:<public id>:settlement`: Issue of the
  order's worth in the settlement currency to the organization's settlement wallet and, in the
  same posting, the settlement fee (compliance fee rule, 1% by default) to the platform fee
  account. The order row lock serialises settlers and the unique reference is the last line: a
  duplicate is success. A refused posting raises, so nothing (not even a failed record under the
  reference) is kept and the next run retries.
- Refunds: `payorder:<public id>:refund` Redeems what was settled; a refund of an overpaid excess
  or of money that arrived on an expired order touches no ledger wallet (it never entered one).

Transactions: services use `transaction.atomic` (not durable) so the idempotency layer can run a
refund inside its own durable block; called from a task they are the outermost block.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from accounts.orgs.authentication import OrganizationPrincipal
from accounts.models import Customer, User
from accounts.webhooks import webhook_publish
from core.errors import ValidationFailed
from core.money import MONEY_CONTEXT, format_amount, parse_amount, quantum
from core.outbox import outbox_emit
from core.prices import get_price_provider
from payorders.addresses import deposit_address_allocate, normalize_address
from payorders.chains import get_chain_provider, sandbox_enabled
from payorders.chains.base import CHAIN_ASSETS, ChainTransfer, ChainUnavailable, TransferStatus, normalize_tx_hash
from payorders.errors import (
    NothingToRefund,
    PaymentMismatch,
    PayOrderInvalidState,
    QuoteExpired,
    TransactionAlreadyUsed,
    TransactionUnknown,
)
from payorders.models import PayOrder, PayOrderPayment, PayOrderQuote, PayOrderStatusChange, Refund
from payorders.selectors import (  # noqa: F401 - re-exported for the checkout views
    payment_details,
    payorder_get,
    payorder_get_public,
    payorder_public_status,
    quote_get,
    refund_get,
    required_confirmations,
)

logger = logging.getLogger("coffer.payorders")

S = PayOrder.Status
SOURCE_CURRENCIES = ("BTC", "ETH", "USDC")
# Quoted amounts are rounded UP to this many decimals (never more than the asset has): a payer may
# type the amount, and 8 decimals of ETH stay exact everywhere (SQLite keeps 15 significant digits).
QUOTE_DECIMALS = {"BTC": 8, "ETH": 8, "USDC": 6}
DEFAULT_EXPIRES_IN = 30 * 60
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_METADATA_BYTES = 8 * 1024
LATE_WATCH_WINDOW = timedelta(hours=24)  # keep watching closed orders' addresses this long


def quote_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PAYORDER_QUOTE_TTL_SECONDS", 600)))


def expiry_grace() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PAYORDER_EXPIRY_GRACE_SECONDS", 60)))


def payorders_for_update():
    return PayOrder.objects.select_for_update(of=("self",))


# --------------------------------------------------------------------------------------------
# Bookkeeping: actor, history, webhooks, audit
# --------------------------------------------------------------------------------------------


@dataclass
class _Work:
    """Who acts, and the audit events to write last."""

    actor: Any = None
    events: list[tuple[str, Any, dict]] = field(default_factory=list)

    @property
    def user(self) -> User | None:
        return self.actor if isinstance(self.actor, User) else None

    @property
    def label(self) -> str:
        if isinstance(self.actor, User):
            return f"user:{self.actor.pk}"
        if isinstance(self.actor, OrganizationPrincipal):
            return f"api_key:{self.actor.api_key.key_id}"
        if isinstance(self.actor, str):
            return self.actor
        return "system"

    def audit(self, action: str, target, data: dict) -> None:
        self.events.append((action, target, data))

    def flush(self) -> None:
        from compliance.services import audit_record

        extra = {"actor": self.label}
        for action, target, data in self.events:
            audit_record(actor=self.user, action=action, target=target, data={**data, **extra})
        self.events.clear()


def _asset(code: str):
    from ledger.models import Asset

    return Asset.objects.filter(code=code, organization__isnull=True).first()


def _exponent(code: str) -> int:
    if code in CHAIN_ASSETS:
        return CHAIN_ASSETS[code].decimals
    asset = _asset(code)
    return asset.exponent if asset else 2


def event_payload(order: PayOrder) -> dict:
    """The `data` of a payorder.* webhook."""
    return {
        "id": str(order.public_id),
        "type": order.type,
        "status": order.status,
        "amount": format_amount(order.amount, _exponent(order.currency)),
        "currency": order.currency,
        "settlement_currency": order.settlement_currency,
        "customer_external_id": order.customer.external_id if order.customer_id else None,
        "source_currency": order.source_currency or None,
        "source_amount": format_amount(order.source_amount, _exponent(order.source_currency)) if order.source_amount else None,
        "amount_received": format_amount(order.amount_received, _exponent(order.source_currency)) if order.source_currency else None,
        "underpaid": order.underpaid,
        "overpaid": order.overpaid,
        "late_payment": order.late_payment,
        "metadata": order.metadata,
        "failure_reason": order.failure_reason or None,
    }


_VERBS = {
    "await_payment": "await payment",
    "await_confirmation": "await confirmation",
    "execute": "be executed",
    "complete": "complete",
    "fail": "fail",
    "cancel": "be cancelled",
    "expire": "expire",
    "refund": "be refunded",
}


def _json_safe(value):
    """Decimals (the API parses JSON numbers to Decimal), datetimes and UUIDs as strings."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _history(work: _Work, order: PayOrder, *, from_status: str, to_status: str, cause: str, data: dict | None = None) -> None:
    PayOrderStatusChange.objects.create(
        pay_order=order,
        from_status=from_status,
        to_status=to_status,
        cause=cause[:300],
        actor=work.user,
        actor_label=work.label[:100],
        data=_json_safe(data or {}),
        at=timezone.now(),
    )


def _transition(work: _Work, order: PayOrder, name: str, *, cause: str, data: dict | None = None) -> None:
    before = order.status
    try:
        getattr(order, name)()
    except TransitionNotAllowed:
        raise PayOrderInvalidState(
            f"A {before} pay order cannot {_VERBS.get(name, name)}.",
            details={"id": str(order.public_id), "status": before, "action": name},
        ) from None
    if order.status == S.COMPLETED:
        order.completed_at = timezone.now()
    order.save()
    _history(work, order, from_status=before, to_status=order.status, cause=cause, data=data)
    webhook_publish(organization=order.organization, event_type=f"payorder.{order.status.lower()}", payload=event_payload(order))
    work.audit(f"payorder.{name}", order, {"from": before, "to": order.status, "cause": cause, **(data or {})})


def _flag(work: _Work, order: PayOrder, *, cause: str, data: dict | None = None) -> None:
    """A history entry that is not a transition (from == to): underpaid, overpaid, late."""
    _history(work, order, from_status=order.status, to_status=order.status, cause=cause, data=data)
    work.audit("payorder.flag", order, {"status": order.status, "cause": cause, **(data or {})})


# --------------------------------------------------------------------------------------------
# Create, cancel
# --------------------------------------------------------------------------------------------


def _field_error(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field_name}: {message}", details={"fields": {field_name: [message]}})


def _platform_asset(code: object, field_name: str):
    if not isinstance(code, str) or not code.strip():
        raise _field_error(field_name, "A currency code is required.")
    asset = _asset(code.strip().upper())
    if asset is None:
        raise _field_error(field_name, f"Unknown currency {code!s}.")
    return asset


@transaction.atomic
def payorder_create(
    *,
    organization,
    actor=None,
    type: str,  # noqa: A002 - the API's field name
    amount,
    currency: str,
    settlement_currency: str | None = None,
    customer_external_id: str | None = None,
    description: str = "",
    metadata: dict | None = None,
    redirect_url: str = "",
    expires_in: int | None = None,
) -> PayOrder:
    work = _Work(actor)
    if type not in PayOrder.Type.values:
        raise _field_error("type", "One of SALE, DEPOSIT.")
    asset = _platform_asset(currency, "currency")
    parsed = parse_amount(amount, exponent=asset.exponent, field="amount")
    settle_asset = _platform_asset(settlement_currency, "settlement_currency") if settlement_currency else asset
    if expires_in is None:
        expires_in = DEFAULT_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise _field_error("expires_in", f"Seconds, an integer from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN}.")
    metadata = metadata if metadata is not None else {}
    if not isinstance(metadata, dict):
        raise _field_error("metadata", "A JSON object.")
    metadata = _json_safe(metadata)
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise _field_error("metadata", f"At most {MAX_METADATA_BYTES} bytes of JSON.")
    customer = None
    if customer_external_id:
        customer = Customer.objects.filter(organization=organization, external_id=customer_external_id).first()
        if customer is None:
            raise _field_error("customer_external_id", "No customer with this external id (create it with PUT /customers/{external_id}).")
    order = PayOrder.objects.create(
        organization=organization,
        type=type,
        amount=parsed,
        currency=asset.code,
        settlement_currency=settle_asset.code,
        customer=customer,
        description=description or "",
        metadata=metadata,
        redirect_url=redirect_url or "",
        expires_at=timezone.now() + timedelta(seconds=expires_in),
    )
    _history(work, order, from_status="", to_status=order.status, cause="created")
    webhook_publish(organization=organization, event_type="payorder.created", payload=event_payload(order))
    work.audit("payorder.create", order, {"amount": parsed, "currency": asset.code, "type": type, "settlement_currency": settle_asset.code})
    work.flush()
    return order


@transaction.atomic
def payorder_cancel(*, organization, public_id, actor=None, reason: str = "") -> PayOrder:
    work = _Work(actor)
    order = payorders_for_update().get(pk=payorder_get(organization=organization, public_id=public_id).pk)
    if order.amount_received > 0:
        raise PayOrderInvalidState(
            "Money has already reached this order's address; it cannot be cancelled (let it expire and refund it).",
            details={"id": str(order.public_id), "status": order.status},
        )
    order.failure_reason = ("cancelled: " + reason)[:200] if reason else "cancelled"
    _transition(work, order, "cancel", cause=order.failure_reason)
    work.flush()
    return order


# --------------------------------------------------------------------------------------------
# Quotes and payment details
# --------------------------------------------------------------------------------------------


def _ceil(value: Decimal, exponent: int) -> Decimal:
    return value.quantize(quantum(exponent), rounding=ROUND_CEILING)


def _check_open_for_quotes(order: PayOrder, now) -> None:
    if order.status != S.PENDING:
        raise PayOrderInvalidState(
            f"A {order.status} pay order takes no new quotes.", details={"id": str(order.public_id), "status": order.status}
        )
    if now >= order.expires_at:
        raise QuoteExpired("The order's payment window has passed.", details={"id": str(order.public_id), "expires_at": order.expires_at.isoformat()})


def _source_list(source_currencies) -> list[str]:
    if source_currencies in (None, []):
        return list(SOURCE_CURRENCIES)
    if not isinstance(source_currencies, (list, tuple)):
        raise _field_error("source_currencies", "A list of currency codes.")
    wanted: list[str] = []
    for code in source_currencies:
        norm = code.strip().upper() if isinstance(code, str) else ""
        if norm not in SOURCE_CURRENCIES:
            raise _field_error("source_currencies", f"{code!s} is not accepted; one of {', '.join(SOURCE_CURRENCIES)}.")
        if norm not in wanted:
            wanted.append(norm)
    return wanted


def _quote_order(order: PayOrder, *, wallet_address: str | None, source_currencies) -> list[PayOrderQuote]:
    now = timezone.now()
    _check_open_for_quotes(order, now)
    wanted = _source_list(source_currencies)
    wallet_address = (wallet_address or "").strip() or None
    prices = get_price_provider()
    settlement_rate = None
    if order.settlement_currency != order.currency:
        settlement_rate = prices.quote(order.currency, order.settlement_currency).mid
    with localcontext(MONEY_CONTEXT):
        settlement_amount = (
            order.amount
            if settlement_rate is None
            else (order.amount * settlement_rate).quantize(quantum(_exponent(order.settlement_currency)), rounding=ROUND_FLOOR)
        )
    options: list[dict] = []
    address_valid_somewhere = wallet_address is None
    for code in wanted:
        spec = CHAIN_ASSETS[code]
        rate = prices.quote(code, order.currency)
        places = min(QUOTE_DECIMALS.get(code, spec.decimals), spec.decimals)
        with localcontext(MONEY_CONTEXT):
            amount = _ceil(order.amount / rate.bid, places)
            at_mid = _ceil(order.amount / rate.mid, places)
        payer_address = ""
        if wallet_address is not None:
            try:
                payer_address = normalize_address(chain=spec.chain, address=wallet_address, field="wallet_address")
            except ValidationFailed:
                continue  # an address of another chain: this option is not for this wallet
            address_valid_somewhere = True
            try:
                balance = get_chain_provider(spec.chain).get_balance(payer_address, code)
            except ChainUnavailable:
                continue  # no provider can tell: do not offer what we cannot check
            if balance < amount:
                continue
        options.append(
            {
                "source_currency": code,
                "chain": spec.chain,
                "amount": amount,
                "rate": rate.bid,
                "fee": max(amount - at_mid, Decimal(0)),
                "wallet_address": payer_address,
            }
        )
    if not address_valid_somewhere:
        raise _field_error("wallet_address", "Not a valid address on any chain of the requested currencies.")
    if settlement_amount <= 0:
        raise _field_error("amount", "Too small to settle in the settlement currency.")
    expires_at = min(now + quote_ttl(), order.expires_at)
    return [
        PayOrderQuote.objects.create(pay_order=order, settlement_amount=settlement_amount, expires_at=expires_at, **option)
        for option in options
    ]


@transaction.atomic
def payorder_quote(*, organization, public_id, wallet_address: str | None = None, source_currencies=None) -> list[PayOrderQuote]:
    """Priced options to pay the order (quotes do not change the order; no lock needed)."""
    order = payorder_get(organization=organization, public_id=public_id)
    return _quote_order(order, wallet_address=wallet_address, source_currencies=source_currencies)


@transaction.atomic
def payorder_public_quote(*, public_id, wallet_address: str | None = None, source_currencies=None) -> list[PayOrderQuote]:
    """The checkout page's quote request (no auth: the public id is the capability)."""
    order = payorder_get_public(public_id=public_id)
    return _quote_order(order, wallet_address=wallet_address, source_currencies=source_currencies)


def _scan_start(chain: str) -> int:
    """The chain head now: the watcher looks for payments from this block on."""
    try:
        return get_chain_provider(chain).current_block()
    except ChainUnavailable:
        return 0


def _select_quote(order_pk: int, quote_id, *, actor, scan_from: int) -> PayOrder:
    work = _Work(actor)
    order = payorders_for_update().select_related("organization").get(pk=order_pk)
    quote = quote_get(order=order, quote_id=quote_id)
    if order.status != S.PENDING:
        if order.quote_id == quote.pk and order.status == S.AWAITING_PAYMENT:
            return order  # the same request again: the same details
        raise PayOrderInvalidState(
            f"A {order.status} pay order already has its payment details.",
            details={"id": str(order.public_id), "status": order.status},
        )
    now = timezone.now()
    if now >= quote.expires_at or now >= order.expires_at:
        raise QuoteExpired(details={"quote_id": str(quote.public_id), "expires_at": quote.expires_at.isoformat()})
    address = deposit_address_allocate(organization=order.organization, chain=quote.chain)
    order.quote = quote
    order.deposit_address = address
    order.chain = quote.chain
    order.source_currency = quote.source_currency
    order.source_amount = quote.amount
    order.settlement_amount = quote.settlement_amount
    order.scan_from_block = scan_from
    data = {"quote_id": str(quote.public_id), "address": address.address, "amount": quote.amount, "source_currency": quote.source_currency}
    _transition(work, order, "await_payment", cause=f"payment details issued: {quote.amount} {quote.source_currency} to {address.address}", data=data)
    payment_details(order)  # a token without a configured contract fails here, before commit
    work.flush()
    return order


def payorder_select_quote(*, organization, public_id, quote_id, actor=None) -> PayOrder:
    """`payment-details`: fix the quote, derive a fresh deposit address -> AWAITING_PAYMENT."""
    order = payorder_get(organization=organization, public_id=public_id)
    quote = quote_get(order=order, quote_id=quote_id)
    scan_from = _scan_start(quote.chain)
    with transaction.atomic():
        return _select_quote(order.pk, quote_id, actor=actor, scan_from=scan_from)


def payorder_public_select_quote(*, public_id, quote_id) -> PayOrder:
    order = payorder_get_public(public_id=public_id)
    quote = quote_get(order=order, quote_id=quote_id)
    scan_from = _scan_start(quote.chain)
    with transaction.atomic():
        return _select_quote(order.pk, quote_id, actor="payer", scan_from=scan_from)


# --------------------------------------------------------------------------------------------
# Payments: recording, processing a submitted hash, watching addresses, confirmations
# --------------------------------------------------------------------------------------------


def _log_index(t: ChainTransfer) -> int:
    return -1 if t.log_index is None else t.log_index


def _same_address(chain: str, a: str, b: str) -> bool:
    return a.lower() == b.lower() if chain == "ethereum" else a == b


def _fmt(order: PayOrder, amount: Decimal) -> str:
    return format_amount(amount, _exponent(order.source_currency))


def _record(work: _Work, order: PayOrder, transfers: list[ChainTransfer], *, source: str) -> list[PayOrderPayment]:
    """Record the transfers not seen before on the LOCKED order and apply them: flags, history,
    transitions. Returns the new payments."""
    now = timezone.now()
    if order.status == S.AWAITING_PAYMENT and now > order.expires_at + expiry_grace():
        _transition(work, order, "expire", cause="payment window passed before the payment was seen")
    late = order.status in (S.EXPIRED, S.FAILED, S.REFUNDED)
    new: list[PayOrderPayment] = []
    for t in transfers:
        status = PayOrderPayment.Status.FAILED if t.status == TransferStatus.FAILED else PayOrderPayment.Status.PENDING
        if status == PayOrderPayment.Status.FAILED:
            continue
        try:
            with transaction.atomic():
                payment = PayOrderPayment.objects.create(
                    pay_order=order,
                    chain=t.chain,
                    asset=t.asset,
                    tx_hash=t.tx_hash.lower(),
                    log_index=_log_index(t),
                    from_address=t.from_address[:100],
                    to_address=t.to_address,
                    amount=t.amount,
                    block_number=t.block_number,
                    confirmations=t.confirmations,
                    status=status,
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
    if late:
        order.late_payment = True
        order.refund_due += total
        order.save()
        _flag(work, order, cause=f"late payment: {_fmt(order, total)} {order.source_currency} arrived on a {order.status} order; refundable", data=data)
    elif order.status == S.AWAITING_PAYMENT:
        if order.amount_received >= expected:
            order.underpaid = False
            if order.amount_received > expected:
                order.overpaid = True
                order.refund_due = order.amount_received - expected
            _transition(
                work, order, "await_confirmation",
                cause=f"paid {_fmt(order, order.amount_received)} of {_fmt(order, expected)} {order.source_currency} ({source})", data=data,
            )
            if order.overpaid:
                _flag(work, order, cause=f"overpaid by {_fmt(order, order.refund_due)} {order.source_currency}; the excess is refundable", data=data)
        else:
            order.underpaid = True
            order.save()
            _flag(
                work, order,
                cause=f"underpaid: {_fmt(order, order.amount_received)} of {_fmt(order, expected)} {order.source_currency} received; "
                f"waiting for {_fmt(order, expected - order.amount_received)} until {order.expires_at.isoformat()}",
                data=data,
            )
    else:  # AWAITING_CONFIRMATION, EXECUTING_ORDER, COMPLETED: more than was due
        order.overpaid = True
        order.refund_due += total
        order.save()
        _flag(work, order, cause=f"overpaid: a further {_fmt(order, total)} {order.source_currency} arrived; refundable", data=data)
    return new


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
    _check_hash_unused(order, tx_hash)
    if PayOrderPayment.objects.filter(pay_order=order, chain=order.chain, tx_hash=tx_hash).exists():
        return order  # already taken (a retry, or the watcher saw it first)
    transfers = get_chain_provider(order.chain).get_transaction(tx_hash)
    if transfers is None:
        raise TransactionUnknown(details={"tx_hash": tx_hash, "chain": order.chain})
    address = order.deposit_address.address
    to_us = [t for t in transfers if _same_address(order.chain, t.to_address, address)]
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
    paid = sum((t.amount for t in matching), Decimal(0))
    work = _Work(actor)
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(pk=order.pk)
        _check_hash_unused(order, tx_hash)
        if PayOrderPayment.objects.filter(pay_order=order, chain=order.chain, tx_hash=tx_hash).exists():
            return order
        if order.status != S.AWAITING_PAYMENT:
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
                f"This transaction pays {_fmt(order, paid)} {order.source_currency}; {_fmt(order, outstanding)} is due.",
                details={"tx_hash": tx_hash, "paid": _fmt(order, paid), "due": _fmt(order, outstanding), "currency": order.source_currency},
            )
        _record(work, order, matching, source=PayOrderPayment.Source.SUBMITTED)
        work.flush()
    return order


def _check_hash_unused(order: PayOrder, tx_hash: str) -> None:
    other = PayOrderPayment.objects.filter(chain=order.chain, tx_hash=tx_hash).exclude(pay_order=order).exists()
    refund = Refund.objects.filter(chain=order.chain, tx_hash=tx_hash).exists()
    if other or refund:
        raise TransactionAlreadyUsed(details={"tx_hash": tx_hash, "chain": order.chain})


WATCHED_STATUSES = (S.AWAITING_PAYMENT, S.AWAITING_CONFIRMATION, S.EXECUTING_ORDER, S.COMPLETED, S.EXPIRED, S.FAILED, S.REFUNDED)


def payorders_to_watch(*, now=None):
    now = now or timezone.now()
    recent = now - LATE_WATCH_WINDOW
    return (
        PayOrder.objects.filter(deposit_address__isnull=False, status__in=WATCHED_STATUSES, expires_at__gte=recent)
        .order_by("id")
        .values_list("pk", flat=True)
    )


def payorder_scan(*, order_id: int) -> PayOrder | None:
    """The watcher for one order: transfers to its address since the last scan are recorded."""
    order = PayOrder.objects.select_related("deposit_address").filter(pk=order_id).first()
    if order is None or order.deposit_address_id is None:
        return order
    provider = get_chain_provider(order.chain)
    head = provider.current_block()
    start = order.scan_from_block
    transfers = provider.transfers_to(order.deposit_address.address, order.source_currency, from_block=start)
    end = head
    if provider.name == "evm":
        end = min(head, start + int(settings.EVM_SCAN_MAX_BLOCKS) - 1)
    transfers = [t for t in transfers if t.status != TransferStatus.FAILED]
    work = _Work("system:watch_addresses")
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(pk=order.pk)
        known = set(PayOrderPayment.objects.filter(chain=order.chain, tx_hash__in=[t.tx_hash for t in transfers]).values_list("tx_hash", "log_index"))
        fresh = [t for t in transfers if (t.tx_hash.lower(), _log_index(t)) not in known]
        if fresh:
            _record(work, order, fresh, source=PayOrderPayment.Source.WATCHER)
        if end + 1 > order.scan_from_block and end >= start:
            order.scan_from_block = end + 1
            order.save(update_fields=["scan_from_block", "updated_at"])
        work.flush()
    return order


PAYORDER_SETTLE_TOPIC = "payorder.settle"


def _enqueue_settlement(order: PayOrder) -> None:
    """In the transaction that completes the order: a `payorder.settle` outbox message (one per
    order), run after commit by the one outbox (`payorders.tasks` handles it with
    `payorder_settle`); a dead broker only delays it, the outbox sweeper runs it."""
    outbox_emit(topic=PAYORDER_SETTLE_TOPIC, payload={"order_id": order.pk}, organization=order.organization_id, key=f"payorder:{order.pk}:settle")


def payorder_refresh_confirmations(*, order_id: int) -> PayOrder | None:
    """Confirmations of an order's pending payments; enough confirmed -> COMPLETED (and its
    settlement kicked through the outbox); a payment that failed on chain -> FAILED if the rest does
    not cover the order."""
    order = PayOrder.objects.filter(pk=order_id).first()
    if order is None or order.status not in (S.AWAITING_CONFIRMATION, S.EXECUTING_ORDER):
        return order
    provider = get_chain_provider(order.chain)
    required = provider.confirmations_required()
    seen: dict[int, tuple[int, int | None, bool]] = {}  # payment id -> (confirmations, block, failed)
    for payment in order.payments.filter(status=PayOrderPayment.Status.PENDING):
        transfers = provider.get_transaction(payment.tx_hash)
        match = None
        for t in transfers or []:
            if _log_index(t) == payment.log_index and t.asset == payment.asset:
                match = t
        if match is None or match.status == TransferStatus.FAILED:
            seen[payment.pk] = (0, None, True)
        else:
            seen[payment.pk] = (match.confirmations, match.block_number, False)
    work = _Work("system:poll_confirmations")
    with transaction.atomic():
        order = payorders_for_update().select_related("organization").get(pk=order.pk)
        if order.status not in (S.AWAITING_CONFIRMATION, S.EXECUTING_ORDER):
            return order  # a concurrent run got here first
        now = timezone.now()
        failed_total = Decimal(0)
        for payment in order.payments.select_for_update().filter(pk__in=list(seen), status=PayOrderPayment.Status.PENDING):
            confirmations, block, failed = seen[payment.pk]
            if failed:
                payment.status = PayOrderPayment.Status.FAILED
                failed_total += payment.amount
            else:
                payment.confirmations = confirmations
                payment.block_number = block
                if confirmations >= required:
                    payment.status = PayOrderPayment.Status.CONFIRMED
                    payment.confirmed_at = now
            payment.save(update_fields=["status", "confirmations", "block_number", "confirmed_at"])
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
            _transition(work, order, "fail", cause="a payment failed or vanished on chain; what is left does not cover the order")
        elif confirmed >= order.source_amount:
            _transition(work, order, "complete", cause=f"payment confirmed ({required} confirmations)", data={"confirmations_required": required})
            _enqueue_settlement(order)
        work.flush()
    return order


def payorder_expire(*, order_id: int, now=None) -> bool:
    """Expire one order if its window (plus grace) has passed; True when this call expired it."""
    now = now or timezone.now()
    work = _Work("system:expire_orders")
    with transaction.atomic():
        order = payorders_for_update().select_related("organization").filter(pk=order_id).first()
        if order is None or order.status not in PayOrder.OPEN_STATUSES or now <= order.expires_at + expiry_grace():
            return False
        cause = "payment window passed"
        if order.amount_received > 0:
            order.refund_due = order.amount_received
            cause += f"; {_fmt(order, order.amount_received)} {order.source_currency} received (underpaid) is refundable"
        _transition(work, order, "expire", cause=cause)
        work.flush()
    return True


def payorder_expire_due(*, now=None, limit: int = 500) -> int:
    """Expire the orders whose window (plus grace) has passed, after a last look at their
    address. An order whose chain cannot be read now is left for the next run: we never conclude
    that a payment is missing from a node we cannot reach."""
    now = now or timezone.now()
    due = list(
        PayOrder.objects.filter(status__in=PayOrder.OPEN_STATUSES, expires_at__lt=now - expiry_grace())
        .order_by("expires_at")
        .values_list("pk", "deposit_address_id")[:limit]
    )
    expired = 0
    for pk, address_id in due:
        if address_id is not None:
            try:
                payorder_scan(order_id=pk)
            except ChainUnavailable:
                logger.warning("pay order %s: chain unavailable, expiry postponed", pk)
                continue
        if payorder_expire(order_id=pk, now=now):
            expired += 1
    return expired


# --------------------------------------------------------------------------------------------
# Settlement and refunds
# --------------------------------------------------------------------------------------------


def settlement_wallet(*, organization, asset):
    """The organization's settlement system wallet in `asset`, opened on first use."""
    from ledger.errors import WalletAlreadyExists
    from ledger.models import Wallet
    from ledger.services import wallet_open

    def find():
        return (
            Wallet.objects.filter(organization=organization, asset=asset, purpose=Wallet.Purpose.SETTLEMENT, label="")
            .exclude(status=Wallet.Status.CLOSED)
            .first()
        )

    wallet = find()
    if wallet is None:
        try:
            wallet = wallet_open(asset=asset, organization=organization, kind=Wallet.Kind.SYSTEM, purpose=Wallet.Purpose.SETTLEMENT)
        except WalletAlreadyExists:
            wallet = find()
    return wallet


def _settle_locked(work: _Work, order: PayOrder) -> None:
    """Settle the LOCKED, completed order if it is not settled yet."""
    from compliance.fees import fee_compute
    from ledger.errors import DuplicateReference
    from ledger.models import Transaction
    from ledger.posting import Issue, PlatformAccount, Transfer
    from moneypath.pipeline import MoneyMovement, money_path

    if order.settlement_transaction_id is not None:
        return
    asset = _asset(order.settlement_currency)
    wallet = settlement_wallet(organization=order.organization, asset=asset)
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
    work.audit(
        "payorder.settle", order,
        {"transaction_id": tx.pk, "wallet_id": wallet.pk, "gross": gross, "fee": fee, "net": gross - fee, "currency": asset.code},
    )


def payorder_settle(*, order_id: int) -> PayOrder | None:
    """Settle a COMPLETED order into the merchant's settlement wallet, exactly once."""
    work = _Work("system:settle_order")
    with transaction.atomic():
        order = payorders_for_update().select_related("organization").filter(pk=order_id).first()
        if order is None or order.status != S.COMPLETED or order.settlement_transaction_id is not None:
            return order
        _settle_locked(work, order)
        work.flush()
    return order


def _unmined_payments(order: PayOrder):
    """The order's payments last seen outside a block (submitted from the mempool)."""
    return order.payments.filter(status=PayOrderPayment.Status.PENDING, confirmations__lt=1)


def _payments_now_in_a_block(order: PayOrder) -> set[int]:
    """Ids of the order's unmined-when-seen payments that the chain now shows executed in a block
    (asked before any lock is taken: a network call). A refund counts only money on chain."""
    payments = list(_unmined_payments(order))
    if not payments:
        return set()
    provider = get_chain_provider(order.chain)
    mined = set()
    for payment in payments:
        transfers = provider.get_transaction(payment.tx_hash) or []
        if any(
            _log_index(t) == payment.log_index and t.asset == payment.asset
            and t.status == TransferStatus.SUCCEEDED and t.confirmations >= 1
            for t in transfers
        ):
            mined.add(payment.pk)
    return mined


def payorder_refund(*, organization, public_id, destination_address: str, kind: str = Refund.Kind.FULL, actor=None, reason: str = "") -> Refund:
    """Give the payer's money back to `destination_address` (see Refund).

    full: a COMPLETED order (settled first if it was not yet; the settled net amount is Redeemed
    from the settlement wallet with reference `payorder:<id>:refund`: 422 INSUFFICIENT_FUNDS if
    the merchant no longer holds it) or an EXPIRED/FAILED order that received money (late or
    underpaid: it never reached the ledger) -> REFUNDED; the payer gets everything received that
    was not refunded already. excess: an overpaid order's excess; the order keeps its state.
    On the sandbox chain the refund is sent at once from the deposit address; on a live chain it
    waits for the merchant's own signed transaction (`refund_attach_transaction`)."""
    from ledger.models import Transaction
    from ledger.posting import Redeem
    from moneypath.pipeline import MoneyMovement, money_path

    if kind not in Refund.Kind.values:
        raise _field_error("kind", "One of full, excess.")
    work = _Work(actor)
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
            if order.status not in (S.AWAITING_CONFIRMATION, S.EXECUTING_ORDER, S.COMPLETED) or order.refund_due <= 0:
                raise NothingToRefund(
                    "Only an overpaid order has an excess to refund.", details={"id": str(order.public_id), "status": order.status}
                )
            amount = order.refund_due
        else:
            if order.status not in (S.COMPLETED, S.EXPIRED, S.FAILED):
                raise PayOrderInvalidState(
                    f"A {order.status} pay order cannot be refunded.", details={"id": str(order.public_id), "status": order.status}
                )
            amount = order.amount_received - refunded
            if amount <= 0:
                raise NothingToRefund(details={"id": str(order.public_id), "status": order.status})
        if _unmined_payments(order).exclude(pk__in=in_block).exists():
            raise PayOrderInvalidState(
                "A payment to this order is not in a block yet (it can still be replaced or dropped); refund once it is mined.",
                details={"id": str(order.public_id), "status": order.status},
            )
        if Refund.objects.filter(pay_order=order, kind=kind).exists():
            raise PayOrderInvalidState(f"This order already has a {kind} refund.", details={"id": str(order.public_id), "kind": kind})
        ledger_tx = None
        ledger_amount = None
        if kind == Refund.Kind.FULL and order.status == S.COMPLETED:
            _settle_locked(work, order)
            ledger_amount = order.settlement_amount - (order.settlement_fee or 0)
            if ledger_amount > 0:
                wallet = settlement_wallet(organization=order.organization, asset=_asset(order.settlement_currency))
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
        if sandbox_enabled():
            from payorders.chains.sandbox import sandbox_send

            tx_hash = sandbox_send(
                to_address=destination, amount=amount, currency=order.source_currency, from_address=order.deposit_address.address
            )
            refund.tx_hash = tx_hash
            refund.mark_sent()
            refund.sent_at = timezone.now()
            refund.save()
        order.refund_due = max(order.refund_due - amount, Decimal(0))
        data = {"refund_id": str(refund.public_id), "kind": kind, "amount": amount, "destination_address": destination, "tx_hash": refund.tx_hash}
        if kind == Refund.Kind.FULL:
            order.refund_due = Decimal(0)
            _transition(work, order, "refund", cause=f"refunded {_fmt(order, amount)} {order.source_currency} to {destination}", data=data)
        else:
            order.save()
            _flag(work, order, cause=f"excess of {_fmt(order, amount)} {order.source_currency} refunded to {destination}", data=data)
        work.audit("payorder.refund_create", refund, {**data, "ledger_transaction_id": ledger_tx.pk if ledger_tx else None})
        work.flush()
    return refund


def refund_attach_transaction(*, organization, public_id, refund_id, tx_hash, actor=None) -> Refund:
    """The merchant signed and sent the refund itself (live chains; no keys here): check that
    the transaction pays the destination at least the refund amount in the right asset."""
    tx_hash = normalize_tx_hash(tx_hash)
    order = payorder_get(organization=organization, public_id=public_id)
    refund = refund_get(order=order, refund_id=refund_id)
    if refund.status != Refund.Status.AWAITING_TRANSACTION:
        raise PayOrderInvalidState("This refund has been sent already.", details={"refund_id": str(refund.public_id), "status": refund.status})
    if PayOrderPayment.objects.filter(chain=refund.chain, tx_hash=tx_hash).exists() or Refund.objects.filter(chain=refund.chain, tx_hash=tx_hash).exists():
        raise TransactionAlreadyUsed(details={"tx_hash": tx_hash, "chain": refund.chain})
    transfers = get_chain_provider(refund.chain).get_transaction(tx_hash)
    if transfers is None:
        raise TransactionUnknown(details={"tx_hash": tx_hash, "chain": refund.chain})
    paid = sum(
        (
            t.amount
            for t in transfers
            if _same_address(refund.chain, t.to_address, refund.destination_address)
            and t.asset == refund.currency
            and t.status != TransferStatus.FAILED
        ),
        Decimal(0),
    )
    if paid < refund.amount:
        raise PaymentMismatch(
            "This transaction does not send the refund amount to the refund's destination.",
            details={"tx_hash": tx_hash, "due": _fmt(order, refund.amount), "paid": _fmt(order, paid), "destination_address": refund.destination_address},
        )
    work = _Work(actor)
    with transaction.atomic():
        payorders_for_update().get(pk=order.pk)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
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
        work.audit("payorder.refund_sent", refund, {"pay_order": str(order.public_id), "tx_hash": tx_hash, "amount": refund.amount})
        work.flush()
    return refund


def xpub_key_add(*, organization, chain: str, xpub: str, actor=None):
    from payorders.addresses import xpub_key_register

    return xpub_key_register(organization=organization, chain=chain, xpub=xpub, actor=actor if isinstance(actor, User) else None)

