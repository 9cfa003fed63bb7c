"""Pay-order pages: the list (filters, pages; price, net and status per row), the detail page
(price, gross / fee / net, payment, timeline), creation, and the actions the API has: cancel and
refund. Writes need a developer or owner (WRITE_ROLES, the API's `organization_write_roles`) and
call the API's services: `payorder_create`, `payorder_cancel`, `payorder_refund`.

Invariants:
- The price currency of a new order defaults to the organization's settlement currency; a price
  in a crypto asset worth more than DASHBOARD_CRYPTO_PRICE_CONFIRM_ABOVE (in that currency) is
  created only after the page asked and the person confirmed that amount in that currency.
- A refund is shown (kind, amount, address) and confirmed before it runs; the confirmation runs
  once per form token through the API's idempotency layer (`core.idempotency`, endpoint
  "payorders.refund", the organization's scope): a double submit refunds once and the second
  response is the first one replayed.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.dashboard.access import can_write, dashboard_view, page_of
from accounts.dashboard.forms import (
    PayOrderCancelForm,
    PayOrderCreateForm,
    PayOrderFilterForm,
    PayOrderRefundForm,
    add_service_errors,
)
from accounts.orgs.tenancy import WRITE_ROLES
from core.errors import CofferError, IdempotencyKeyInProgress, ValidationFailed
from core.idempotency import REPLAYED_HEADER, idempotent_execute
from core.money import format_amount, parse_amount
from core.prices import PriceUnavailable, get_price_provider
from ledger.models import Asset
from ledger.selectors import assets_visible, platform_exponents
from payorders.addresses import normalize_address
from payorders.errors import PayOrderInvalidState
from payorders.selectors import (
    checkout_url,
    payment_details,
    payorder_cancellable,
    payorder_get,
    payorder_net,
    payorder_refundable,
    source_exponent,
    xpub_keys_constrained,
)
from payorders.selectors import payorder_list as select_payorders
from payorders.services.lifecycle import payorder_cancel as cancel
from payorders.services.lifecycle import payorder_create as create
from payorders.services.refunds import payorder_refund as refund

REFUND_ENDPOINT = "payorders.refund"  # the API's (payorders.apis.PayOrderRefundApi): one key space


@dashboard_view()
def payorder_list(request):
    form = PayOrderFilterForm(request.GET or None)
    orders = select_payorders(organization=request.organization).order_by("-id")
    if form.is_bound and form.is_valid():
        orders = form.apply(orders)
    elif form.is_bound:
        orders = orders.none()
    page = page_of(request, orders)
    assets = {a.code: a for a in Asset.objects.filter(organization__isnull=True)}
    rows = [
        {"order": o, "exponent": assets[o.currency].exponent if o.currency in assets else 2, "net": payorder_net(o, assets=assets)}
        for o in page.object_list
    ]
    context = {"form": form, "page": page, "rows": rows, "can_write": can_write(request), "nav": "payorders"}
    context["constrained_keys"] = list(xpub_keys_constrained(organization=request.organization))
    return render(request, "dashboard/payorder_list.html", context)


def _payorder_currencies() -> list[tuple[str, str]]:
    """(code, kind) of the currencies an order can be priced in."""
    return list(assets_visible(organization=None).exclude(kind="custom").order_by("code").values_list("code", "kind"))


def _crypto_price_worth(*, amount: Decimal, currency: str, organization) -> Decimal | None:
    """What a price in a crypto asset is worth in the organization's settlement currency (mid
    rate), or None when no price is available (the page then asks anyway)."""
    try:
        rate = get_price_provider().quote(currency, organization.settlement_currency)
    except (PriceUnavailable, ValidationFailed):
        return None
    return amount * rate.mid


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def payorder_create(request):
    currencies = _payorder_currencies()
    crypto = {code for code, kind in currencies if kind == Asset.Kind.CRYPTO}
    settlement = request.organization.settlement_currency
    form = PayOrderCreateForm(request.POST or None, currencies=[c for c, _ in currencies], settlement_currency=settlement)
    confirm = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["currency"] in crypto and not form.price_confirmed():
            exponents = platform_exponents()
            try:
                price = parse_amount(data["amount"].strip(), exponent=exponents.get(data["currency"], 2))
            except ValidationFailed:
                price = None  # payorder_create refuses it below, with the field's message
            worth = None if price is None else _crypto_price_worth(amount=price, currency=data["currency"], organization=request.organization)
            threshold = settings.DASHBOARD_CRYPTO_PRICE_CONFIRM_ABOVE
            if price is not None and (worth is None or worth > threshold):
                exponent = exponents.get(settlement, 2)
                confirm = {
                    "token": form.crypto_price_token(), "amount": data["amount"].strip(), "currency": data["currency"],
                    "worth": None if worth is None else format_amount(worth.quantize(Decimal(1).scaleb(-exponent)), exponent),
                    "settlement": settlement, "threshold": threshold,
                }
        if confirm is None:
            try:
                order = create(organization=request.organization, actor=request.user, **form.service_kwargs())
            except ValidationFailed as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Pay order created. Send the payer to its checkout URL.")
                return redirect("dashboard:payorder-detail", public_id=order.public_id)
    status = 400 if form.errors else 200
    return render(request, "dashboard/payorder_form.html", {"form": form, "confirm": confirm, "nav": "payorders"}, status=status)


@dashboard_view()
def payorder_detail(request, public_id):
    order = payorder_get(organization=request.organization, public_id=public_id)
    source_exp = source_exponent(order.source_currency) if order.source_currency else None
    refundable = payorder_refundable(order)
    context = {
        "order": order,
        "exponent": platform_exponents().get(order.currency, 2),
        "source_exponent": source_exp,
        "net": payorder_net(order),
        "checkout_url": checkout_url(order),
        "details": payment_details(order),
        "timeline": list(order.status_changes.select_related("actor").order_by("at", "id")),
        "payments": list(order.payments.order_by("id")),
        "refunds": list(order.refunds.order_by("id")),
        "can_write": can_write(request),
        "can_cancel": payorder_cancellable(order),
        "can_refund": bool(refundable),
        "nav": "payorders",
    }
    return render(request, "dashboard/payorder_detail.html", context)


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def payorder_cancel(request, public_id):
    order = payorder_get(organization=request.organization, public_id=public_id)
    form = PayOrderCancelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cancel(organization=request.organization, public_id=order.public_id, actor=request.user, reason=form.cleaned_data["reason"].strip())
        except CofferError as exc:  # 409: money arrived meanwhile, or no longer open
            messages.error(request, exc.message)
        else:
            messages.success(request, "Pay order cancelled: its checkout no longer takes payments.")
        return redirect("dashboard:payorder-detail", public_id=order.public_id)
    status = 400 if form.errors else 200
    return render(request, "dashboard/payorder_cancel.html", {"order": order, "form": form, "exponent": platform_exponents().get(order.currency, 2),
                                                               "cancellable": payorder_cancellable(order), "nav": "payorders"}, status=status)


def _error_of(response) -> tuple[str, int]:
    """The message of an error outcome of `idempotent_execute`: a DRF response the first time, the
    stored JSON body when replayed."""
    data = getattr(response, "data", None)
    if data is None:
        try:
            data = json.loads(response.content or b"{}")
        except ValueError:
            data = {}
    error = data.get("error") if isinstance(data, dict) else None
    return (error or {}).get("message") or "The refund was refused.", response.status_code


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def payorder_refund(request, public_id):
    """Step 1 (GET, or POST without a token): kind, address, reason. Step 2 (POST `review`): the
    refund shown whole with a fresh token. Step 3 (POST with the token): the refund, once."""
    order = payorder_get(organization=request.organization, public_id=public_id)
    detail_url = reverse("dashboard:payorder-detail", kwargs={"public_id": order.public_id})
    exponent = source_exponent(order.source_currency) if order.source_currency else 2
    refundable = payorder_refundable(order)
    amounts = {kind: format_amount(amount, exponent) for kind, amount in refundable.items()}
    shown = {kind: format_amount(amount, exponent, trim=True) for kind, amount in refundable.items()}
    token = (request.POST.get("token") or "").strip() if request.method == "POST" else ""
    if not refundable and not token:
        messages.error(request, "There is nothing to refund on this pay order now.")
        return redirect(detail_url)
    form = PayOrderRefundForm(request.POST or None, amounts=shown, currency=order.source_currency)
    context = {"order": order, "form": form, "amounts": amounts, "nav": "payorders"}
    if request.method == "GET":
        return render(request, "dashboard/payorder_refund.html", context)
    if token:
        return _refund_confirmed(request, order=order, token=token, amounts=amounts, shown=shown, context=context, detail_url=detail_url)
    if not form.is_valid():
        return render(request, "dashboard/payorder_refund.html", context, status=400)
    try:
        address = normalize_address(chain=order.chain, address=form.cleaned_data["destination_address"], field="destination_address")
    except ValidationFailed as exc:
        add_service_errors(form, exc)
        return render(request, "dashboard/payorder_refund.html", context, status=400)
    kind = form.cleaned_data["kind"]
    context["review"] = {
        "kind": kind, "kind_label": PayOrderRefundForm.KIND_LABELS[kind], "amount": amounts[kind], "shown": shown[kind],
        "address": address, "reason": form.cleaned_data["reason"], "token": uuid.uuid4().hex,
    }
    return render(request, "dashboard/payorder_refund.html", context)


def _refund_confirmed(request, *, order, token, amounts, shown, context, detail_url):
    data = {k: (request.POST.get(k) or "").strip() for k in ("kind", "destination_address", "reason", "amount")}

    def handler():
        # Checked inside the idempotent block: a replay must not depend on what is left to refund.
        if amounts.get(data["kind"]) != data["amount"]:
            raise PayOrderInvalidState(
                "What is left to refund has changed since you reviewed it: review the refund again.",
                details={"id": str(order.public_id), "kind": data["kind"]},
            )
        refund(
            organization=request.organization, public_id=order.public_id, actor=request.user,
            destination_address=data["destination_address"], kind=data["kind"], reason=data["reason"],
        )
        return HttpResponseRedirect(detail_url)

    try:
        response = idempotent_execute(request=request, endpoint=REFUND_ENDPOINT, handler=handler, key=token, data=data)
    except IdempotencyKeyInProgress:
        messages.info(request, "This refund is being made already (the form was sent twice); it happens once.")
        return redirect(detail_url)
    except CofferError as exc:  # a malformed token (400), or one already used for another refund (422)
        return _refund_refused(request, order=order, shown=shown, context=context, message=exc.message, status=exc.status)
    if response.status_code < 400:
        back = HttpResponseRedirect(detail_url)
        if response.get(REPLAYED_HEADER) == "true":
            messages.info(request, "This refund was made already (the form was sent twice); it happened once.")
            back[REPLAYED_HEADER] = "true"
        else:
            messages.success(request, f"Refund of {shown.get(data['kind'])} {order.source_currency} to {data['destination_address']} created.")
        return back
    message, status = _error_of(response)
    return _refund_refused(request, order=order, shown=shown, context=context, message=message, status=status)


def _refund_refused(request, *, order, shown, context, message: str, status: int):
    """The first step again, with why the refund was refused."""
    again = request.POST.copy()
    again.pop("token", None)  # the refused token stays refused: a new attempt gets a new one
    form = PayOrderRefundForm(again, amounts=shown, currency=order.source_currency)
    form.is_valid()
    form.add_error(None, message)
    context["form"] = form
    return render(request, "dashboard/payorder_refund.html", context, status=status)
