"""Pay-order pages: the filtered list, the detail with its timeline, and creation (developers and
owners), which calls `payorder_create` exactly as the API does."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.dashboard.access import can_write, dashboard_view, page_of
from accounts.dashboard.forms import PayOrderCreateForm, PayOrderFilterForm, add_service_errors
from accounts.orgs.tenancy import WRITE_ROLES
from core.errors import ValidationFailed
from core.money import format_amount
from ledger.selectors import assets_visible, platform_exponents
from payorders.selectors import checkout_url, fmt_source, payment_details, payorder_get, source_exponent
from payorders.selectors import payorder_list as select_payorders
from payorders.selectors import xpub_keys_constrained
from payorders.services.lifecycle import payorder_create as create


@dashboard_view()
def payorder_list(request):
    form = PayOrderFilterForm(request.GET or None)
    orders = select_payorders(organization=request.organization).order_by("-id")
    if form.is_bound and form.is_valid():
        orders = form.apply(orders)
    elif form.is_bound:
        orders = orders.none()
    page = page_of(request, orders)
    exponents = platform_exponents()  # a pay order is priced in a platform asset
    rows = [{"order": o, "amount": format_amount(o.amount, exponents.get(o.currency, 2))} for o in page.object_list]
    context = {"form": form, "page": page, "rows": rows, "can_write": can_write(request), "nav": "payorders"}
    context["constrained_keys"] = list(xpub_keys_constrained(organization=request.organization))
    return render(request, "dashboard/payorder_list.html", context)


def _payorder_currencies() -> list[str]:
    return list(assets_visible(organization=None).exclude(kind="custom").order_by("code").values_list("code", flat=True))


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def payorder_create(request):
    form = PayOrderCreateForm(request.POST or None, currencies=_payorder_currencies())
    if request.method == "POST" and form.is_valid():
        try:
            order = create(organization=request.organization, actor=request.user, **form.service_kwargs())
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Pay order created. Send the payer to its checkout URL.")
            return redirect("dashboard:payorder-detail", public_id=order.public_id)
    return render(request, "dashboard/payorder_form.html", {"form": form, "nav": "payorders"}, status=400 if form.errors else 200)


@dashboard_view()
def payorder_detail(request, public_id):
    order = payorder_get(organization=request.organization, public_id=public_id)

    def source(amount):
        return fmt_source(order, amount)

    context = {
        "order": order,
        "amount": format_amount(order.amount, platform_exponents().get(order.currency, 2)),
        "checkout_url": checkout_url(order),
        "details": payment_details(order),
        "received": source(order.amount_received),
        "refund_due": source(order.refund_due) if order.refund_due else None,
        "timeline": list(order.status_changes.select_related("actor").order_by("at", "id")),
        "payments": [{"p": p, "amount": source(p.amount)} for p in order.payments.order_by("id")],
        "refunds": [{"r": r, "amount": format_amount(r.amount, source_exponent(r.currency))} for r in order.refunds.order_by("id")],
        "nav": "payorders",
    }
    return render(request, "dashboard/payorder_detail.html", context)
