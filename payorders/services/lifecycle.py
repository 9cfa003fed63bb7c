"""Creating, cancelling and expiring pay orders.

Invariants:
- An order is created PENDING with a price (`amount` of a platform `currency`, exact to the
  currency's exponent), a settlement currency and a window (`expires_at`); nothing else is
  fixed until payment details are issued (services.quotes).
- Cancel and expire are allowed only from PENDING / AWAITING_PAYMENT; an order that has received
  money cannot be cancelled (it expires, and what arrived is `refund_due`). An order that closes
  having received nothing releases its deposit address for reuse (services.addresses).
- Expiry happens only after the window plus PAYORDER_EXPIRY_GRACE_SECONDS and a last look at the
  address; an order whose chain cannot be read is left for the next run.
- Each service locks the order row first and opens its own (nested-safe) transaction.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from accounts.webhooks import webhook_publish
from core.livemode import mode_q, principal_livemode
from core.money import parse_amount
from payorders.chains.base import ChainUnavailable
from core.errors import field_error
from payorders.errors import PayOrderInvalidState
from payorders.locks import payorders_for_update
from payorders.models import PayOrder
from ledger.selectors import platform_asset
from payorders.selectors import fmt_source, payorder_get
from payorders.services.addresses import deposit_address_release
from payorders.services.history import Actor, event_payload, json_safe, payorder_transition, status_change_record
from payorders.services.payments import expiry_grace, payorder_scan

logger = logging.getLogger("coffer.payorders")

DEFAULT_EXPIRES_IN = 30 * 60
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_METADATA_BYTES = 8 * 1024


def _platform_asset(code: object, field_name: str):
    if not isinstance(code, str) or not code.strip():
        raise field_error(field_name, "A currency code is required.")
    asset = platform_asset(code.strip().upper())
    if asset is None:
        raise field_error(field_name, f"Unknown currency {code!s}.")
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
    acting = Actor(actor)
    if type not in PayOrder.Type.values:
        raise field_error("type", "One of SALE, DEPOSIT.")
    asset = _platform_asset(currency, "currency")
    parsed = parse_amount(amount, exponent=asset.exponent, field="amount")
    settle_asset = _platform_asset(settlement_currency, "settlement_currency") if settlement_currency else asset
    if expires_in is None:
        expires_in = DEFAULT_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise field_error("expires_in", f"Seconds, an integer from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN}.")
    metadata = metadata if metadata is not None else {}
    if not isinstance(metadata, dict):
        raise field_error("metadata", "A JSON object.")
    metadata = json_safe(metadata)
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise field_error("metadata", f"At most {MAX_METADATA_BYTES} bytes of JSON.")
    customer = None
    if customer_external_id:
        customer = Customer.objects.filter(mode_q(principal_livemode(actor)), organization=organization, external_id=customer_external_id).first()
        if customer is None:
            raise field_error("customer_external_id", "No customer with this external id (create it with PUT /customers/{external_id}).")
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
        livemode=principal_livemode(actor),  # a test key's order (or any on the sandbox) is test mode
    )
    status_change_record(acting, order, from_status="", to_status=order.status, cause="created")
    webhook_publish(organization=organization, event_type="payorder.created", payload=event_payload(order))
    acting.audit(
        "payorder.create", order,
        {"amount": parsed, "currency": asset.code, "type": type, "settlement_currency": settle_asset.code, "livemode": order.livemode},
    )
    return order


@transaction.atomic
def payorder_cancel(*, organization, public_id, actor=None, reason: str = "") -> PayOrder:
    order = payorders_for_update().get(pk=payorder_get(organization=organization, public_id=public_id).pk)
    if order.amount_received > 0:
        raise PayOrderInvalidState(
            "Money has already reached this order's address; it cannot be cancelled (let it expire and refund it).",
            details={"id": str(order.public_id), "status": order.status},
        )
    order.failure_reason = ("cancelled: " + reason)[:200] if reason else "cancelled"
    payorder_transition(Actor(actor), order, "cancel", cause=order.failure_reason)
    deposit_address_release(order)
    return order


def payorder_expire(*, order_id: int, now=None) -> bool:
    """Expire one order if its window (plus grace) has passed; True when this call expired it."""
    now = now or timezone.now()
    with transaction.atomic():
        order = payorders_for_update().select_related("organization").filter(pk=order_id).first()
        if order is None or order.status not in PayOrder.OPEN_STATUSES or now <= order.expires_at + expiry_grace():
            return False
        cause = "payment window passed"
        if order.amount_received > 0:
            order.refund_due = order.amount_received
            cause += f"; {fmt_source(order, order.amount_received, trim=True)} {order.source_currency} received (underpaid) is refundable"
        payorder_transition(Actor("system:expire_orders"), order, "expire", cause=cause)
        deposit_address_release(order)
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
