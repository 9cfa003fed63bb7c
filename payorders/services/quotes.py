"""Quotes and payment details: pricing an order in a crypto asset and fixing how it is paid.

Invariants:
- A quote never changes the order: it is a priced option (amount rounded UP to QUOTE_DECIMALS,
  rate at the bid, fee = the spread) valid until min(now + PAYORDER_QUOTE_TTL_SECONDS, the
  order's window). With a payer's wallet address, only options its on-chain balance covers.
- `payment-details` takes one unexpired quote of a PENDING order, under the order's row lock,
  assigns a deposit address of the organization's active key within its gap limit
  (services.addresses, which locks the key after the order; 409 GAP_LIMIT_REACHED when none can
  be) and moves the order to AWAITING_PAYMENT. The same quote again returns the same details;
  any other request once details exist is 409 INVALID_STATE.
- Chain and price providers are asked before the order lock is taken (network calls).
- The payer may switch currency (`payorder_public_choose_again`, AWAITING_PAYMENT -> PENDING)
  only while nothing has been seen at the issued address, mined or broadcast: the address is
  scanned first, then checked again under the lock. The abandoned address is released (reusable
  after the quiet period, never if it is ever funded) and named in the order's history.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import QuoteExpired, ValidationFailed
from core.money import MONEY_CONTEXT, quantum
from core.prices import get_price_provider
from payorders.addresses import normalize_address
from payorders.chains import get_chain_provider
from payorders.chains.base import CHAIN_ASSETS, ChainUnavailable
from core.errors import field_error
from payorders.errors import GapLimitReached, PayOrderInvalidState
from payorders.locks import payorders_for_update
from payorders.models import PayOrder, PayOrderQuote
from payorders.selectors import currency_exponent, fmt_source, payment_details, payorder_get, payorder_get_public, payorder_livemode, quote_get
from payorders.services.addresses import deposit_address_assign, deposit_address_release, xpub_key_flag_refusal
from payorders.services.history import Actor, payorder_transition
from payorders.services.payments import payorder_scan

SOURCE_CURRENCIES = ("BTC", "ETH", "USDC")
# Quoted amounts are rounded UP to this many decimals (never more than the asset has): a payer may
# type the amount, and 8 decimals of ETH stay exact everywhere (SQLite keeps 15 significant digits).
QUOTE_DECIMALS = {"BTC": 8, "ETH": 8, "USDC": 6}


def quote_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PAYORDER_QUOTE_TTL_SECONDS", 600)))


def _ceil(value: Decimal, exponent: int) -> Decimal:
    return value.quantize(quantum(exponent), rounding=ROUND_CEILING)


def _check_open_for_quotes(order: PayOrder, now) -> None:
    if order.status != PayOrder.Status.PENDING:
        raise PayOrderInvalidState(
            f"A {order.status} pay order takes no new quotes.", details={"id": str(order.public_id), "status": order.status}
        )
    if now >= order.expires_at:
        raise QuoteExpired("The order's payment window has passed.", details={"id": str(order.public_id), "expires_at": order.expires_at.isoformat()})


def _source_list(source_currencies) -> list[str]:
    if source_currencies in (None, []):
        return list(SOURCE_CURRENCIES)
    if not isinstance(source_currencies, (list, tuple)):
        raise field_error("source_currencies", "A list of currency codes.")
    wanted: list[str] = []
    for code in source_currencies:
        norm = code.strip().upper() if isinstance(code, str) else ""
        if norm not in SOURCE_CURRENCIES:
            raise field_error("source_currencies", f"{code!s} is not accepted; one of {', '.join(SOURCE_CURRENCIES)}.")
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
            else (order.amount * settlement_rate).quantize(quantum(currency_exponent(order.settlement_currency)), rounding=ROUND_FLOOR)
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
                balance = get_chain_provider(spec.chain, livemode=order.livemode).get_balance(payer_address, code)
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
        raise field_error("wallet_address", "Not a valid address on any chain of the requested currencies.")
    if settlement_amount <= 0:
        raise field_error("amount", "Too small to settle in the settlement currency.")
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


def _scan_start(chain: str, *, livemode: bool = True) -> int | None:
    """The chain head now: the watcher looks for payments from this block on (None when the chain
    cannot be read: the watcher then starts at 0 and no address is reused)."""
    try:
        return get_chain_provider(chain, livemode=livemode).current_block()
    except ChainUnavailable:
        return None


def _select_quote(order_pk: int, quote_id, *, actor, scan_from: int | None) -> PayOrder:
    order = payorders_for_update().select_related("organization").get(pk=order_pk)
    quote = quote_get(order=order, quote_id=quote_id)
    if order.status != PayOrder.Status.PENDING:
        if order.quote_id == quote.pk and order.status == PayOrder.Status.AWAITING_PAYMENT:
            return order  # the same request again: the same details
        raise PayOrderInvalidState(
            f"A {order.status} pay order already has its payment details.",
            details={"id": str(order.public_id), "status": order.status},
        )
    now = timezone.now()
    if now >= quote.expires_at or now >= order.expires_at:
        raise QuoteExpired(details={"quote_id": str(quote.public_id), "expires_at": quote.expires_at.isoformat()})
    assignment = deposit_address_assign(organization=order.organization, chain=quote.chain, head_block=scan_from, livemode=payorder_livemode(order))
    address = assignment.address
    order.quote = quote
    order.deposit_address = address
    order.chain = quote.chain
    order.source_currency = quote.source_currency
    order.source_amount = quote.amount
    order.settlement_amount = quote.settlement_amount
    order.scan_from_block = assignment.scan_from_block
    data = {"quote_id": str(quote.public_id), "address": address.address, "amount": quote.amount, "source_currency": quote.source_currency}
    if assignment.reused:
        data["address_reused"] = True
    cause = f"payment details issued: {fmt_source(order, quote.amount, trim=True)} {quote.source_currency} to {address.address}"
    payorder_transition(Actor(actor), order, "await_payment", cause=cause, data=data)
    payment_details(order)  # a token without a configured contract fails here, before commit
    return order


def _select_quote_flagging_refusal(order_pk: int, quote_id, *, actor, scan_from: int | None) -> PayOrder:
    try:
        with transaction.atomic():
            return _select_quote(order_pk, quote_id, actor=actor, scan_from=scan_from)
    except GapLimitReached as exc:
        xpub_key_flag_refusal(key_id=exc.key_id)  # the refusal rolled back: the warning commits on its own
        raise


def payorder_select_quote(*, organization, public_id, quote_id, actor=None) -> PayOrder:
    """`payment-details`: fix the quote, derive a fresh deposit address -> AWAITING_PAYMENT."""
    order = payorder_get(organization=organization, public_id=public_id)
    quote = quote_get(order=order, quote_id=quote_id)
    return _select_quote_flagging_refusal(order.pk, quote_id, actor=actor, scan_from=_scan_start(quote.chain, livemode=order.livemode))


def payorder_public_select_quote(*, public_id, quote_id) -> PayOrder:
    order = payorder_get_public(public_id=public_id)
    quote = quote_get(order=order, quote_id=quote_id)
    return _select_quote_flagging_refusal(order.pk, quote_id, actor="payer", scan_from=_scan_start(quote.chain, livemode=order.livemode))


def payorder_public_choose_again(*, public_id) -> PayOrder:
    """The payer wants to pay in another currency: back to PENDING (quotes again), if no payment
    has been seen at the issued address. 409 INVALID_STATE otherwise (the page then shows the
    payment it saw)."""
    order = payorder_get_public(public_id=public_id)
    if order.status == PayOrder.Status.PENDING:
        return order  # already choosing (a double click, a second tab)
    if order.status == PayOrder.Status.AWAITING_PAYMENT:
        payorder_scan(order_id=order.pk)  # mined and broadcast payments first: never abandon a paid address
    with transaction.atomic():
        order = payorders_for_update().select_related("organization", "deposit_address").get(pk=order.pk)
        if order.status == PayOrder.Status.PENDING:
            return order
        if order.status != PayOrder.Status.AWAITING_PAYMENT or order.amount_received > 0 or order.payments.exists():
            raise PayOrderInvalidState(
                "A payment has been seen for this order: it can no longer switch currency.",
                details={"id": str(order.public_id), "status": order.status},
            )
        if timezone.now() >= order.expires_at:
            raise QuoteExpired("The order's payment window has passed.", details={"id": str(order.public_id), "expires_at": order.expires_at.isoformat()})
        abandoned = order.deposit_address
        data = {"abandoned_address": abandoned.address if abandoned else None, "source_currency": order.source_currency}
        cause = f"payer chose to pay in another currency than {order.source_currency}"
        if abandoned is not None:
            deposit_address_release(order)
        order.quote = None
        order.deposit_address = None
        order.chain = ""
        order.source_currency = ""
        order.source_amount = None
        order.settlement_amount = None
        order.scan_from_block = 0
        payorder_transition(Actor("payer"), order, "choose_again", cause=cause, data=data)
    return order
