"""The hosted checkout page's services (SPEC 9; issue 7 item 8): what `/pay/<public id>` shows
and the two things a payer can do there (price the order, choose a currency).
- The order's public id (a random UUID4) is the only capability: no login, and what the page
  shows is limited to what a payer needs - the merchant's name, the price and description, the
  payment details, progress and (once completed) the merchant's return URL. No internal ids, no
  metadata, customer, settlement or fee data, and never another order's data (every read starts
  from the public id in the URL).
- Writes go through `payorders.services.quotes` (`payorder_public_quote`,
  `payorder_public_select_quote`); this module only chooses what to call and shapes the output.
- Choosing a currency is idempotent for the payer: the same currency again (a double click, a
  reload, a second tab) returns the details already issued; another currency once details exist
  is 409 INVALID_STATE and the page shows the details that stand.
- Public endpoints are rate-limited per client address (`CHECKOUT_RATE_LIMITS`, DRF notation) by
  the one limiter, `core.ratelimit`;
  a cache outage lets requests through (a public page must not fail for a counter).
- Test mode (core.livemode: the sandbox chain, or an order a test key created) is on the page
  (`livemode: false`, a "Test mode" badge); its payment URIs are on a test network.
- A broadcast payment is seen before it is mined: while the order awaits payment, the status
  poll asks the chain for pending transfers to the address (at most once per
  CHECKOUT_PENDING_SCAN_SECONDS per order, shared by every tab) and the page says "Payment
  detected" with 0 confirmations. A chain that cannot be reached just leaves this to the watcher.
- Until a payment is seen the payer can switch currency (`checkout_choose_again`); once paid the
  page shows a receipt (amount, transaction linked to the chain's explorer, time) and then
  returns to the merchant.
"""

from __future__ import annotations

import hashlib
import logging
import math
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import segno
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core import ratelimit
from core.errors import RateLimited, ValidationFailed
from core.money import format_amount, format_exact
from payorders.chains.base import CHAIN_ASSETS, ChainUnavailable
from payorders.errors import PayOrderInvalidState
from payorders.models import PayOrder, PayOrderPayment, PayOrderQuote
from payorders.selectors import (
    currency_exponent,
    payment_details,
    payorder_get_public,
    payorder_livemode,
    quote_get,
    required_confirmations,
    xpub_key_list,
)
from payorders.services.payments import payorder_scan
from payorders.services.quotes import (
    SOURCE_CURRENCIES,
    payorder_public_choose_again,
    payorder_public_quote,
    payorder_public_select_quote,
)

logger = logging.getLogger("coffer.payorders.checkout")

Status = PayOrder.Status

# The page's phases, derived from the order's status and the clock.
CHOOSE = "choose"
AWAITING_PAYMENT = "awaiting_payment"
CONFIRMING = "confirming"
COMPLETED = "completed"
EXPIRED = "expired"
FAILED = "failed"
REFUNDED = "refunded"
FINAL_PHASES = (COMPLETED, FAILED, REFUNDED)

CURRENCY_NAMES = {"BTC": "Bitcoin", "ETH": "Ether", "USDC": "USD Coin"}
CHAIN_NAMES = {"bitcoin": "Bitcoin", "ethereum": "Ethereum"}

DEFAULT_RATE_LIMITS = {
    "page": "60/min",  # opening the page
    "status": "120/min",  # the page polls every 2 s: about four open tabs per address
    "post": "20/min",  # pricing and choosing a currency
    "qr": "60/min",
}


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------


def checkout_order(*, public_id) -> PayOrder:
    """The order behind a checkout link; PayOrderNotFound (404) for anything else."""
    return payorder_get_public(public_id=public_id)


def checkout_phase(order: PayOrder, *, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if order.status in (Status.PENDING, Status.AWAITING_PAYMENT):
        if now >= order.expires_at:
            # The expiry task closes it a little later (after a grace for blocks in flight); a
            # payment seen in that grace still moves the order on and the page follows it.
            return EXPIRED
        return CHOOSE if order.status == Status.PENDING else AWAITING_PAYMENT
    return {
        Status.AWAITING_CONFIRMATION: CONFIRMING,
        Status.EXECUTING_ORDER: CONFIRMING,
        Status.COMPLETED: COMPLETED,
        Status.EXPIRED: EXPIRED,
        Status.FAILED: FAILED,
        Status.REFUNDED: REFUNDED,
    }[order.status]


def checkout_currencies(order: PayOrder) -> list[dict]:
    """The source currencies this order can be paid in: those whose chain the merchant has an
    active extended public key for (else no deposit address could be derived) and, for tokens,
    a configured contract."""
    chains = set(xpub_key_list(organization=order.organization).filter(is_active=True).values_list("chain", flat=True))
    options = []
    for code in SOURCE_CURRENCIES:
        spec = CHAIN_ASSETS[code]
        if spec.chain not in chains or not (spec.native or code in settings.EVM_TOKENS):
            continue
        options.append({"code": code, "name": CURRENCY_NAMES.get(code, code), "chain": spec.chain, "chain_name": CHAIN_NAMES[spec.chain]})
    return options


def safe_redirect_url(url: str) -> str | None:
    """The merchant's return URL if it is a plain http(s) URL (never `javascript:` and the like)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def rate_text(rate: Decimal, currency: str) -> str:
    """A quote's rate in the order's currency, as a payer reads it: at the currency's exponent when
    it is 1 or more ("3191.95"), else with its significant digits ("0.00003133")."""
    if rate >= 1:
        return format_amount(rate, currency_exponent(currency))
    return format_exact(rate.quantize(Decimal(1).scaleb(-12)))


def explorer_url(*, chain: str, tx_hash: str, livemode: bool) -> str | None:
    """The transaction on the chain's block explorer (settings, per chain and mode), or None."""
    urls = settings.CHAIN_EXPLORER_TX_URLS if livemode else settings.CHAIN_EXPLORER_TEST_TX_URLS
    template = (urls or {}).get(chain)
    if not template or "{tx_hash}" not in template or not template.startswith("https://"):
        return None
    return template.replace("{tx_hash}", tx_hash)


def checkout_receipt(order: PayOrder, *, livemode: bool) -> list[dict]:
    """The payments that count for the order, for the payer's receipt."""
    rows = []
    for p in sorted(order.payments.all(), key=lambda p: (p.detected_at, p.pk)):
        if p.status == PayOrderPayment.Status.FAILED or p.late:
            continue
        rows.append({
            "amount": format_exact(p.amount),
            "currency": p.asset,
            "tx_hash": p.tx_hash,
            "explorer_url": explorer_url(chain=p.chain, tx_hash=p.tx_hash, livemode=livemode),
            "detected_at": p.detected_at.isoformat(),
            "confirmed_at": p.confirmed_at.isoformat() if p.confirmed_at else None,
            "confirmations": p.confirmations,
        })
    return rows


def checkout_state(order: PayOrder, *, now: datetime | None = None) -> dict:
    """Everything the page shows, as JSON (`/pay/<id>/status.json`, and the first render)."""
    now = now or timezone.now()
    phase = checkout_phase(order, now=now)
    livemode = payorder_livemode(order)
    details = payment_details(order)
    payment = None
    if details is not None:
        quote = order.quote
        payment = {
            "deposit_address": details["deposit_address"],
            "amount": format_exact(order.source_amount),
            "currency": details["source_currency"],
            "currency_name": CURRENCY_NAMES.get(details["source_currency"], details["source_currency"]),
            "chain": details["chain"],
            "chain_name": CHAIN_NAMES.get(details["chain"], details["chain"]),
            "payment_uri": details["payment_uri"],
            # the price in the order's currency and the rate it was converted at
            "price": f"{format_amount(order.amount, currency_exponent(order.currency))} {order.currency}",
            "rate": f"1 {details['source_currency']} = {rate_text(quote.rate, order.currency)} {order.currency}" if quote else None,
        }
    on_time = [p for p in order.payments.all() if p.status != PayOrderPayment.Status.FAILED and not p.late]
    remaining = None
    if order.source_amount is not None and order.underpaid:
        remaining = format_exact(max(order.source_amount - order.amount_received, Decimal(0)))
    state = {
        "id": str(order.public_id),
        "status": order.status,
        "phase": phase,
        "merchant": order.organization.name,
        "amount": format_amount(order.amount, currency_exponent(order.currency)),
        "currency": order.currency,
        "description": order.description,
        "expires_at": order.expires_at.isoformat(),
        "seconds_left": max(int((order.expires_at - now).total_seconds()), 0),
        "payment": payment,
        "amount_received": format_exact(order.amount_received) if order.amount_received else None,
        "amount_remaining": remaining,
        "confirmations": min((p.confirmations for p in on_time), default=0),
        "confirmations_required": required_confirmations(order.chain) if order.chain else None,
        "underpaid": order.underpaid,
        "overpaid": order.overpaid,
        "late_payment": order.late_payment,
        "redirect_url": safe_redirect_url(order.redirect_url) if phase == COMPLETED else None,
        "livemode": livemode,
        # the payer may go back and pick another coin until a payment is seen
        "can_switch_currency": phase == AWAITING_PAYMENT and not order.amount_received and not on_time,
        "receipt": checkout_receipt(order, livemode=livemode) if phase in (CONFIRMING, COMPLETED) else [],
        "completed_at": order.completed_at.isoformat() if order.completed_at else None,
    }
    if payment is not None:
        payment["amount_due"] = remaining or payment["amount"]
    state["headline"], state["detail"] = _status_text(state)
    return state


def _status_text(state: dict) -> tuple[str, str]:
    """The page's status line (one place for the words; the script only displays them)."""
    phase, merchant, payment = state["phase"], state["merchant"], state["payment"]
    unit = payment["currency"] if payment else ""
    if phase == CHOOSE:
        return "Choose how to pay", "Pick the cryptocurrency you want to pay with."
    if phase == AWAITING_PAYMENT:
        if state["underpaid"]:
            return "Partly paid", (
                f"{state['amount_received']} {unit} received. Send the remaining {state['amount_remaining']} {unit} "
                "to the same address before the timer runs out."
            )
        return "Waiting for your payment", "Send exactly the amount below to the address below. This page updates by itself."
    if phase == CONFIRMING:
        chain = payment["chain_name"] if payment else "the"
        n, m = state["confirmations"], state["confirmations_required"]
        progress = f"{min(n, m)} of {m} confirmations" if m else f"{n} confirmations"
        if n == 0:  # broadcast, not in a block yet
            return "Payment detected, waiting for confirmations", (
                f"Your payment has been broadcast and is waiting to be included in a block on the {chain} network ({progress})."
            )
        return "Payment received", f"Confirming on the {chain} network: {progress}."
    if phase == COMPLETED:
        extra = " You sent more than was due; the merchant can refund the excess." if state["overpaid"] else ""
        paid = f" of {state['amount_received']} {unit}" if state["amount_received"] else ""
        return "Payment complete", f"Thank you! {merchant} has received your payment{paid}.{extra}"
    if phase == EXPIRED:
        if state["amount_received"]:
            return "This payment request has expired", (
                f"The payment window closed before the full amount arrived. What you sent is kept safe; contact {merchant} to have it refunded."
            )
        return "This payment request has expired", f"No payment is expected any more. Ask {merchant} for a new payment link."
    if phase == REFUNDED:
        return "Payment refunded", f"{merchant} has refunded this payment."
    return "This payment request is closed", f"It was cancelled or the payment did not go through. Contact {merchant} if you have paid."


def payment_qr_svg(payment_uri: str) -> str:
    """The payment URI as a QR code, an inline <svg> element (segno; server-rendered, no script)."""
    qr = segno.make(payment_uri, error="m", micro=False)
    return qr.svg_inline(scale=4, border=4, dark="#111827", light="#ffffff", svgclass="qr-code", lineclass=None, omitsize=True, title="Payment QR code")


def payment_qr_document(payment_uri: str) -> bytes:
    """The same QR code as a standalone SVG document (for `/pay/<id>/qr.svg`)."""
    import io

    buffer = io.BytesIO()
    segno.make(payment_uri, error="m", micro=False).save(buffer, kind="svg", scale=8, border=4, dark="#111827", light="#ffffff", title="Payment QR code")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Writes (through payorders.services.quotes)
# --------------------------------------------------------------------------------------------


def _currency(order: PayOrder, value) -> str:
    code = value.strip().upper() if isinstance(value, str) else ""
    allowed = [c["code"] for c in checkout_currencies(order)]
    if code not in allowed:
        message = f"One of {', '.join(allowed)}." if allowed else "This merchant takes no crypto payments right now."
        raise ValidationFailed(f"currency: {message}", details={"fields": {"currency": [message]}})
    return code


def checkout_quotes(*, public_id) -> list[dict]:
    """Price the order in every currency the page offers (a quote per currency)."""
    order = checkout_order(public_id=public_id)
    codes = [c["code"] for c in checkout_currencies(order)]
    if not codes:
        return []
    quotes = payorder_public_quote(public_id=order.public_id, source_currencies=codes)
    return [
        {
            "quote_id": str(q.public_id),
            "currency": q.source_currency,
            "chain": q.chain,
            "amount": format_exact(q.amount),
            "rate": f"1 {q.source_currency} = {rate_text(q.rate, order.currency)} {order.currency}",
            "expires_at": q.expires_at.isoformat(),
        }
        for q in quotes
    ]


def checkout_look_for_payment(order: PayOrder) -> PayOrder:
    """While the order awaits payment: ask the chain for a broadcast, not yet mined payment to its
    address (at most once per CHECKOUT_PENDING_SCAN_SECONDS per order, whoever polls) and return
    the order as it stands afterwards."""
    if order.status != Status.AWAITING_PAYMENT or order.deposit_address_id is None:
        return order
    seconds = max(int(settings.CHECKOUT_PENDING_SCAN_SECONDS), 1)
    try:
        if not cache.add(f"checkout-pending-scan:{order.public_id}", 1, timeout=seconds):
            return order
    except Exception:  # no cache, no quick look: the watcher still finds it
        logger.warning("checkout pending scan: cache unavailable, skipped", exc_info=True)
        return order
    try:
        payorder_scan(order_id=order.pk, pending_only=True)
    except ChainUnavailable:
        logger.info("checkout pending scan: chain unavailable for pay order %s", order.public_id)
        return order
    return checkout_order(public_id=order.public_id)


def checkout_choose_again(*, public_id) -> PayOrder:
    """The payer goes back to choosing a currency (nothing paid yet); 409 INVALID_STATE once a
    payment has been seen."""
    return payorder_public_choose_again(public_id=checkout_order(public_id=public_id).public_id)


def _already_chosen(order: PayOrder, code: str) -> PayOrder | None:
    if order.status == Status.AWAITING_PAYMENT and order.source_currency == code:
        return order
    return None


def checkout_choose(*, public_id, currency, quote_id=None) -> PayOrder:
    """The payer chose `currency`: fix a quote for it and issue the payment details
    (-> AWAITING_PAYMENT). `quote_id` is the quote the page showed; an expired one is priced
    again (the page then shows the new amount, which is the one to pay)."""
    order = checkout_order(public_id=public_id)
    code = _currency(order, currency)
    if (same := _already_chosen(order, code)) is not None:
        return same
    quote: PayOrderQuote | None = None
    if quote_id not in (None, ""):
        quote = quote_get(order=order, quote_id=quote_id)
        if quote.source_currency != code:
            message = f"This quote is for {quote.source_currency}, not {code}."
            raise ValidationFailed(f"quote_id: {message}", details={"fields": {"quote_id": [message]}})
        if quote.expires_at <= timezone.now():
            quote = None
    if quote is None:
        fresh = payorder_public_quote(public_id=order.public_id, source_currencies=[code])
        if not fresh:  # pragma: no cover - without a wallet address every wanted currency is quoted
            raise ValidationFailed("currency: cannot be quoted now.", details={"fields": {"currency": ["cannot be quoted now"]}})
        quote = fresh[0]
    try:
        return payorder_public_select_quote(public_id=order.public_id, quote_id=quote.public_id)
    except PayOrderInvalidState:
        # Another request (a second click, another tab) issued details first.
        current = checkout_order(public_id=order.public_id)
        if (same := _already_chosen(current, code)) is not None:
            return same
        raise


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


def checkout_rate_limit(*, scope: str, ident: str) -> None:
    """Count one request of `scope` from `ident` (a client address); RateLimited (429, with
    Retry-After) once the window's allowance is used up."""
    rates = {**DEFAULT_RATE_LIMITS, **getattr(settings, "CHECKOUT_RATE_LIMITS", {})}
    rate = rates.get(scope)
    if not rate:
        return
    limit, window = ratelimit.parse_rate(rate)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    verdict = ratelimit.hit(f"checkout:{scope}:{digest}", limit=limit, window=window)  # fails open when the cache is down
    if not verdict.allowed:
        retry_after = max(math.ceil(verdict.retry_after), 1)
        raise RateLimited(
            "Too many requests; try again shortly.",
            details={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

