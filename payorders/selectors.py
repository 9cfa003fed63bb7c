"""Reads of pay orders, access-checked: an organization sees only its own orders (another
organization's order is a 404, never a 403); the public checkout reads by the non-guessable
public id and sees only what a payer needs."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from core.money import format_amount
from payorders.chains import confirmations_required, get_chain_provider, sandbox_enabled
from payorders.chains.base import CHAIN_ASSETS, ChainUnavailable
from payorders.errors import PayOrderNotFound, QuoteNotFound, RefundNotFound
from payorders.models import PayOrder, PayOrderQuote, Refund, XpubKey
from payorders.uris import payment_uri


def _uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def payorder_list(*, organization) -> QuerySet[PayOrder]:
    return PayOrder.objects.filter(organization=organization).select_related("customer", "deposit_address")


def payorder_get(*, organization, public_id) -> PayOrder:
    pid = _uuid(public_id)
    order = None if pid is None else payorder_list(organization=organization).filter(public_id=pid).first()
    if order is None:
        raise PayOrderNotFound(details={"id": str(public_id)})
    return order


def payorder_get_public(*, public_id) -> PayOrder:
    pid = _uuid(public_id)
    order = None if pid is None else PayOrder.objects.select_related("organization", "deposit_address").filter(public_id=pid).first()
    if order is None:
        raise PayOrderNotFound(details={"id": str(public_id)})
    return order


def quote_get(*, order: PayOrder, quote_id) -> PayOrderQuote:
    qid = _uuid(quote_id)
    quote = None if qid is None else PayOrderQuote.objects.filter(pay_order=order, public_id=qid).first()
    if quote is None:
        raise QuoteNotFound(details={"quote_id": str(quote_id)})
    return quote


def refund_get(*, order: PayOrder, refund_id) -> Refund:
    rid = _uuid(refund_id)
    refund = None if rid is None else Refund.objects.filter(pay_order=order, public_id=rid).first()
    if refund is None:
        raise RefundNotFound(details={"refund_id": str(refund_id)})
    return refund


def xpub_key_list(*, organization) -> QuerySet[XpubKey]:
    return XpubKey.objects.filter(organization=organization).order_by("chain", "-is_active", "-id")


def checkout_url(order: PayOrder) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + f"/pay/{order.public_id}"


def source_exponent(currency: str) -> int:
    return CHAIN_ASSETS[currency].decimals


def fmt_source(order: PayOrder, amount: Decimal | None) -> str | None:
    if amount is None or not order.source_currency:
        return None
    return format_amount(amount, source_exponent(order.source_currency))


def payment_details(order: PayOrder) -> dict | None:
    """What the payer needs to pay the order (None before `payment-details`)."""
    if order.deposit_address_id is None:
        return None
    address = order.deposit_address.address
    return {
        "deposit_address": address,
        "amount": fmt_source(order, order.source_amount),
        "source_currency": order.source_currency,
        "chain": order.chain,
        "payment_uri": payment_uri(asset=order.source_currency, address=address, amount=order.source_amount),
        "expires_at": order.expires_at,
        "quote_id": str(order.quote.public_id) if order.quote_id else None,
    }


def required_confirmations(chain: str) -> int:
    """The threshold the chain provider in use applies (the sandbox has its own)."""
    if sandbox_enabled():
        return confirmations_required("sandbox")
    return confirmations_required(chain)


def payorder_public_status(*, public_id) -> dict:
    """The small JSON the hosted checkout page polls: no merchant data beyond what the payer sees."""
    order = payorder_get_public(public_id=public_id)
    now = timezone.now()
    payments = [p for p in order.payments.all() if p.status != "failed"]
    confirmations = min((p.confirmations for p in payments if not p.late), default=0)
    try:
        needed = required_confirmations(order.chain) if order.chain else None
    except ChainUnavailable:  # pragma: no cover - settings always name the chains we quote
        needed = None
    exponent = None
    from ledger.models import Asset

    asset = Asset.objects.filter(code=order.currency, organization__isnull=True).first()
    exponent = asset.exponent if asset else 2
    return {
        "id": str(order.public_id),
        "status": order.status,
        "type": order.type,
        "organization_name": order.organization.name,
        "amount": format_amount(order.amount, exponent),
        "currency": order.currency,
        "description": order.description,
        "expires_at": order.expires_at,
        "seconds_left": max(int((order.expires_at - now).total_seconds()), 0),
        "redirect_url": order.redirect_url or None,
        "payment": payment_details(order),
        "amount_received": fmt_source(order, order.amount_received),
        "confirmations": confirmations if payments else 0,
        "confirmations_required": needed,
        "underpaid": order.underpaid,
        "overpaid": order.overpaid,
        "late_payment": order.late_payment,
        "completed_at": order.completed_at,
    }
