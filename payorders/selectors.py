"""Reads of pay orders, access-checked: an organization sees only its own orders (another
organization's order is a 404, never a 403); the public checkout reads by the non-guessable
public id and sees only what a payer needs."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db.models import Exists, Max, OuterRef, QuerySet

from core.livemode import deployment_livemode, mode_q, object_livemode
from core.money import format_amount
from ledger.models import Asset
from ledger.selectors import platform_asset
from payorders.chains import chain_provider_name, confirmations_required
from payorders.chains.base import CHAIN_ASSETS
from payorders.errors import PayOrderNotFound, QuoteNotFound, RefundNotFound
from payorders.models import DepositAddress, PayOrder, PayOrderPayment, PayOrderQuote, Refund, XpubKey
from payorders.uris import payment_uri


def _uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def payorder_list(*, organization, livemode: bool | None = None) -> QuerySet[PayOrder]:
    """The organization's orders of mode `livemode` (core.livemode: a test key's caller sees only
    test-mode orders, a live key's only live ones); all of them for None (the dashboard, services
    behind an API that already checked the mode)."""
    orders = PayOrder.objects.filter(organization=organization).select_related("customer", "deposit_address")
    return orders if livemode is None else orders.filter(mode_q(livemode))


def payorder_get(*, organization, public_id, livemode: bool | None = None) -> PayOrder:
    pid = _uuid(public_id)
    order = None if pid is None else payorder_list(organization=organization, livemode=livemode).filter(public_id=pid).first()
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


def address_funded(address_ref) -> Exists:
    """Whether a deposit address (a pk or OuterRef) has ever had a payment recorded."""
    return Exists(PayOrderPayment.objects.filter(pay_order__deposit_address=address_ref))


def xpub_key_unused_run(key: XpubKey) -> int:
    """Never-funded addresses after the key's last funded one (what a wallet's gap counts)."""
    last_funded = DepositAddress.objects.filter(address_funded(OuterRef("pk")), xpub_key=key).aggregate(last=Max("index"))["last"]
    return key.next_index - (-1 if last_funded is None else last_funded) - 1


def xpub_keys_constrained(*, organization) -> QuerySet[XpubKey]:
    """The organization's active keys whose address allocation is held back by the gap limit."""
    return XpubKey.objects.filter(organization=organization, is_active=True, constrained_since__isnull=False).order_by("chain")


def checkout_url(order: PayOrder) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + f"/pay/{order.public_id}"


def source_exponent(currency: str) -> int:
    return CHAIN_ASSETS[currency].decimals


def currency_exponent(code: str) -> int:
    """Minor-unit digits of an order's currency: a chain asset's decimals, else the platform
    asset's exponent (2 for an unknown code)."""
    if code in CHAIN_ASSETS:
        return CHAIN_ASSETS[code].decimals
    asset = platform_asset(code)
    return asset.exponent if asset else 2


def fmt_source(order: PayOrder, amount: Decimal | None, *, trim: bool = False) -> str | None:
    """An amount of the order's source currency at its exponent; `trim` for text a person reads
    (a timeline cause): no trailing zeros past two decimals (core.money.format_amount)."""
    if amount is None or not order.source_currency:
        return None
    return format_amount(amount, source_exponent(order.source_currency), trim=trim)


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
        "payment_uri": payment_uri(asset=order.source_currency, address=address, amount=order.source_amount, livemode=payorder_livemode(order)),
        "expires_at": order.expires_at,
        "quote_id": str(order.quote.public_id) if order.quote_id else None,
        "livemode": payorder_livemode(order),
    }


def payorder_livemode(order: PayOrder) -> bool:
    """The order's `livemode` as the API and pages show it (false on the sandbox or for a test
    key's order)."""
    return object_livemode(order)


def ledger_settles(order: PayOrder) -> bool:
    """Whether the order's worth reaches the ledger: always on a sandbox deployment (its ledger is
    a test ledger), and on a live one only for live orders. A test key's order on a live
    deployment is paid on the sandbox chain and must never credit real balances."""
    return not deployment_livemode() or order.livemode


def required_confirmations(chain: str, *, livemode: bool = True) -> int:
    """The threshold the chain provider in use applies (the sandbox, which pays test-mode orders
    unless TEST_CHAIN_PROVIDER says otherwise, has its own)."""
    if chain_provider_name(livemode=livemode) == "sandbox":
        return confirmations_required("sandbox")
    return confirmations_required(chain)


# --- What the merchant gets, and what can still be done (the dashboard) ------------------------------

UNFINISHED_STATUSES = (
    PayOrder.Status.PENDING, PayOrder.Status.AWAITING_PAYMENT, PayOrder.Status.AWAITING_CONFIRMATION, PayOrder.Status.EXECUTING_ORDER,
)


def payorder_net(order: PayOrder, *, assets: dict[str, Asset] | None = None) -> dict | None:
    """The order's gross, fee and net in its settlement currency (Decimals): as settled, or, before
    settlement, as the fee rule would charge today (`settled` False); None before a quote fixed the
    settlement amount. The same fee rule as `services.settlement.settle_locked`. `assets`: the
    platform assets by code, when the caller has them (a list page: one query, not one a row)."""
    from compliance.fees import fee_compute
    from compliance.models import MovementType

    if order.settlement_amount is None:
        return None
    asset = assets.get(order.settlement_currency) if assets is not None else platform_asset(order.settlement_currency)
    gross = order.settlement_amount
    if order.settlement_fee is not None:
        fee, settled = order.settlement_fee, True
    else:
        fee, settled = min(fee_compute(movement_type=MovementType.SETTLEMENT, amount=gross, asset=asset).fee_amount, gross), False
    return {
        "currency": order.settlement_currency, "exponent": asset.exponent if asset else 2,
        "gross": gross, "fee": fee, "net": gross - fee, "settled": settled,
    }


def payorder_cancellable(order: PayOrder) -> bool:
    """What `services.lifecycle.payorder_cancel` allows (it decides again under the row lock)."""
    return order.status in PayOrder.OPEN_STATUSES and order.amount_received <= 0


def payorder_refundable(order: PayOrder) -> dict[str, Decimal]:
    """The refunds `services.refunds.payorder_refund` would make now, by kind, with their amount in
    the source currency: full (a COMPLETED order that is not a customer's deposit, or money left
    on an EXPIRED/FAILED one) and excess (an overpaid order). The service decides again under the
    order's row lock; this only decides which buttons to show."""
    from payorders.services.deposits import routes_to_customer

    if order.deposit_address_id is None or order.amount_received <= 0:
        return {}
    done = {r.kind: r.amount for r in order.refunds.all()}
    out: dict[str, Decimal] = {}
    Status = PayOrder.Status
    if Refund.Kind.FULL not in done and order.status in (Status.COMPLETED, Status.EXPIRED, Status.FAILED):
        amount = order.amount_received - sum(done.values(), Decimal(0))
        if amount > 0 and not (order.status == Status.COMPLETED and routes_to_customer(order)):
            out[Refund.Kind.FULL] = amount
    if (
        Refund.Kind.EXCESS not in done and order.refund_due > 0
        and order.status in (Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER, Status.COMPLETED)
    ):
        out[Refund.Kind.EXCESS] = order.refund_due
    return out
