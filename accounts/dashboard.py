"""The server-rendered merchant dashboard (SPEC 9) and the site's landing page.

Invariants:
- Every dashboard page acts for ONE organization, the current one: a membership of the logged-in
  user (chosen on /dashboard/organizations/ when they have several, remembered in the session and
  re-checked on every request). Every read is filtered by that organization; another
  organization's pay order, key, endpoint or delivery is a 404, never a 403.
- Roles (Membership.Role): viewer reads; developer and owner also create pay orders and manage
  webhooks; only an owner manages API keys. A refused role is a 403 page.
- The dashboard writes nothing itself: it calls the services (payorder_create, api_key_create /
  revoke, webhook_endpoint_create / disable / enable, webhook_delivery_redeliver), which audit.
  State-changing requests are POSTs behind Django's CSRF protection.
- A secret (API key, webhook signing secret) appears in exactly one response, the one to the POST
  that created it, marked `Cache-Control: no-store`; no page shows it again.
- Money is Decimal end to end; amounts are rendered by `core.money.format_amount` (CSV included).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from decimal import Decimal
from functools import wraps

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from accounts.dashboard_forms import (
    ApiKeyCreateForm,
    DashboardLoginForm,
    DeliveryFilterForm,
    PayOrderCreateForm,
    PayOrderFilterForm,
    TransactionFilterForm,
    WebhookEndpointCreateForm,
    add_service_errors,
)
from accounts.models import ApiKey, Membership, WebhookDelivery, WebhookEndpoint
from accounts.tenancy import ALL_ROLES, OWNER_ONLY, WRITE_ROLES
from core.errors import InvalidState, NotFound, ValidationFailed
from core.money import format_amount

SESSION_ORGANIZATION = "dashboard_organization_id"
PAGE_SIZE = 25
CHART_DAYS = 30
CSV_BATCH = 500


# --- Landing, login ---------------------------------------------------------------------------------


def landing(request):
    return render(request, "landing.html")


class _PostedData:
    """What the API's auth throttles read from a request, for the form post."""

    def __init__(self, request):
        self.META, self.data = request.META, request.POST


def login_throttle_wait(request) -> int | None:
    """The API's `auth` throttles (per client address, per account) on a login form post;
    seconds to wait when one refuses, else None (and the attempt is counted)."""
    from accounts.throttles import AuthAccountThrottle, AuthAddressThrottle

    posted = _PostedData(request)
    waits = []
    for throttle in (AuthAddressThrottle(), AuthAccountThrottle()):
        if not throttle.allow_request(posted, None):
            waits.append(throttle.wait() or 1)
    return max(1, math.ceil(max(waits))) if waits else None


class DashboardLoginView(auth_views.LoginView):
    """The same limits as POST /auth/token (THROTTLE_AUTH per address and per account) before
    the password is even looked at; the per-account lockout comes on top."""

    template_name = "dashboard/login.html"
    authentication_form = DashboardLoginForm
    redirect_authenticated_user = True
    next_page = reverse_lazy("dashboard:overview")

    def post(self, request, *args, **kwargs):
        wait = login_throttle_wait(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        messages.error(request, f"Too many login attempts; try again in {wait} seconds.")
        response = self.render_to_response(self.get_context_data(form=self.get_form_class()(request)), status=429)
        response["Retry-After"] = str(wait)
        return response


class DashboardLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("dashboard:login")


# --- The current organization -----------------------------------------------------------------------


def _memberships(user):
    return Membership.objects.select_related("organization").filter(user=user).order_by("organization__name", "organization_id")


def current_membership(request) -> Membership | None:
    """The membership the request acts with: the one chosen in this session, or the user's only one."""
    memberships = _memberships(request.user)
    chosen = request.session.get(SESSION_ORGANIZATION)
    if chosen is not None:
        found = memberships.filter(organization_id=chosen).first()
        if found is not None:
            return found
        request.session.pop(SESSION_ORGANIZATION, None)  # membership ended since
    only = list(memberships[:2])
    return only[0] if len(only) == 1 else None


def _not_found(request):
    return render(request, "dashboard/not_found.html", status=404)


def dashboard_view(*, roles=ALL_ROLES):
    """Login required; sets `request.membership` and `request.organization`; a role outside `roles`
    is a 403 page; NotFound (from a service or selector) and Http404 are the 404 page."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            membership = current_membership(request)
            if membership is None:
                return redirect("dashboard:organizations")
            request.membership, request.organization = membership, membership.organization
            if membership.role not in roles:
                return render(request, "dashboard/forbidden.html", status=403)
            try:
                return view(request, *args, **kwargs)
            except (NotFound, Http404):
                return _not_found(request)

        return wrapped

    return decorator


@login_required
@require_http_methods(["GET", "POST"])
def organizations(request):
    memberships = list(_memberships(request.user))
    if request.method == "POST":
        chosen = next((m for m in memberships if str(m.organization_id) == request.POST.get("organization", "")), None)
        if chosen is None:
            return _not_found(request)
        request.session[SESSION_ORGANIZATION] = chosen.organization_id
        return redirect("dashboard:overview")
    return render(request, "dashboard/organizations.html", {"memberships": memberships, "current": current_membership(request)})


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _can_write(request) -> bool:
    return request.membership.role in WRITE_ROLES


# --- Overview: balances and volume ------------------------------------------------------------------


def _compact(value: Decimal) -> str:
    """An axis label of a few characters (each bar's title carries the exact amount)."""
    for threshold, scale, suffix in ((10**9, 10**9, "B"), (10**6, 10**6, "M"), (10**4, 10**3, "k")):
        if value >= threshold:
            return f"{(value / scale).quantize(Decimal('0.1')).normalize():f}{suffix}"
    if value >= 100:
        return f"{value.quantize(Decimal(1)):f}"
    if value >= 1:
        return f"{value.quantize(Decimal('0.01')).normalize():f}"
    return f"{value.quantize(Decimal('0.0001')).normalize():f}"


def bar_chart(*, days: list[dt.date], values: dict[dt.date, Decimal], exact: dict[dt.date, str], unit: str,
              width: int = 720, counts: bool = False) -> dict:
    """Geometry of a server-rendered SVG bar chart (one bar per day), all in Decimal. `width` is
    the viewBox width (a narrower chart keeps its text the same size on the page); `counts`
    keeps axis labels whole numbers."""
    width, height = Decimal(width), Decimal(220)
    left, right, top, bottom = Decimal(76), Decimal(20), Decimal(12), Decimal(28)
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(days)
    bar_w = (slot * Decimal("0.72")).quantize(Decimal("0.1"))
    peak = max(values.values(), default=Decimal(0))
    one = Decimal("0.1")
    bars = []
    for i, day in enumerate(days):
        value = values.get(day, Decimal(0))
        h = (value / peak * plot_h).quantize(one) if peak > 0 else Decimal(0)
        if value > 0 and h < 1:
            h = Decimal(1)  # a non-zero day stays visible
        x = (left + slot * i + (slot - bar_w) / 2).quantize(one)
        bars.append({
            "x": x, "y": (top + plot_h - h).quantize(one), "w": bar_w, "h": h,
            "day": day, "title": f"{day.isoformat()}: {exact.get(day, '0')} {unit}".strip(),
            "label": day.strftime("%b %d") if (len(days) - 1 - i) % 7 == 0 else "",
            "label_x": (left + slot * i + slot / 2).quantize(one),
        })
    return {
        "width": width, "height": height, "left": left, "top": top, "bottom_y": top + plot_h,
        "ylabel_x": left - 6, "center_x": (left + plot_w / 2).quantize(one),
        "mid_y": (top + plot_h / 2).quantize(one), "right_x": width - right, "label_y": height - 8,
        "bars": bars, "peak": _compact(peak) if peak else "",
        "half": _compact(peak / 2) if peak and (not counts or peak % 2 == 0) else "",
        "unit": unit, "empty": peak == 0,
    }


def _chart_days(now: dt.datetime) -> list[dt.date]:
    today = now.astimezone(dt.timezone.utc).date()
    return [today - dt.timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]


def volume_charts(*, organization, currency: str | None) -> dict:
    """Per day over the last 30 days: money credited to the organization's wallets (its system
    wallets and its customers') in one currency, and pay orders completed."""
    from ledger.selectors import Viewer, wallets_owned
    from ledger.models import Entry
    from payorders.models import PayOrder

    days = _chart_days(timezone.now())
    start = dt.datetime.combine(days[0], dt.time.min, tzinfo=dt.timezone.utc)
    credits = Entry.objects.filter(
        wallet_id__in=wallets_owned(viewer=Viewer(organization=organization)).values("pk"),
        direction=Entry.Direction.CREDIT,
        created_at__gte=start,
    )
    assets = list(
        credits.values("wallet__asset__code", "wallet__asset__exponent").annotate(n=Count("id")).order_by("-n", "wallet__asset__code")
    )
    codes = [a["wallet__asset__code"] for a in assets]
    chosen = next((a for a in assets if a["wallet__asset__code"] == currency), assets[0] if assets else None)
    volume = None
    if chosen is not None:
        exponent = chosen["wallet__asset__exponent"]
        rows = (
            credits.filter(wallet__asset__code=chosen["wallet__asset__code"])
            .annotate(day=TruncDate("created_at", tzinfo=dt.timezone.utc))
            .values("day")
            .annotate(total=Sum("amount"))
        )
        values = {r["day"]: r["total"] for r in rows}
        volume = bar_chart(
            days=days, values=values, exact={d: format_amount(v, exponent) for d, v in values.items()}, unit=chosen["wallet__asset__code"]
        )
    completed = (
        PayOrder.objects.filter(organization=organization, completed_at__gte=start)
        .annotate(day=TruncDate("completed_at", tzinfo=dt.timezone.utc))
        .values("day")
        .annotate(n=Count("id"))
    )
    counts = {r["day"]: Decimal(r["n"]) for r in completed}
    orders = bar_chart(days=days, values=counts, exact={d: str(n) for d, n in counts.items()}, unit="completed", width=480, counts=True)
    return {
        "currencies": codes,
        "currency": chosen["wallet__asset__code"] if chosen else None,
        "volume": volume,
        "orders": orders,
        "orders_total": sum(counts.values(), Decimal(0)),
        "first_day": days[0],
        "last_day": days[-1],
    }


@dashboard_view()
def overview(request):
    from ledger.selectors import wallet_list
    from ledger.models import Wallet

    organization = request.organization
    open_wallets = wallet_list(organization=organization).exclude(status=Wallet.Status.CLOSED)
    system = list(open_wallets.filter(organization=organization).select_related("organization").order_by("asset__code", "purpose", "label", "id"))
    wallets = [
        {
            "wallet": w,
            "name": w.label or (w.get_purpose_display() if w.purpose else f"{w.asset.code} wallet"),
            "balance": w.asset.format(w.balance),
            "available": w.asset.format(w.available_balance),
            "held": w.asset.format(w.held),
        }
        for w in system
    ]
    customer_totals = [
        {
            "code": row["asset__code"],
            "count": row["count"],
            "balance": format_amount(row["balance"] or Decimal(0), row["asset__exponent"]),
            "available": format_amount((row["balance"] or Decimal(0)) - (row["held"] or Decimal(0)), row["asset__exponent"]),
        }
        for row in open_wallets.filter(customer__organization=organization)
        .values("asset__code", "asset__exponent")
        .annotate(count=Count("id"), balance=Sum("balance"), held=Sum("held"))
        .order_by("asset__code")
    ]
    charts = volume_charts(organization=organization, currency=request.GET.get("currency"))
    return render(request, "dashboard/overview.html", {"wallets": wallets, "customer_totals": customer_totals, "charts": charts, "nav": "overview"})


# --- Pay orders ---------------------------------------------------------------------------------------


def _platform_exponents() -> dict[str, int]:
    """Exponent of each platform asset by code (a pay order's price is always one of them)."""
    from ledger.models import Asset

    return dict(Asset.objects.filter(organization__isnull=True).values_list("code", "exponent"))


def _price(order, exponents: dict[str, int]) -> str:
    return format_amount(order.amount, exponents.get(order.currency, 2))


@dashboard_view()
def payorder_list(request):
    from payorders.selectors import payorder_list as select_payorders

    form = PayOrderFilterForm(request.GET or None)
    orders = select_payorders(organization=request.organization).order_by("-id")
    if form.is_bound and form.is_valid():
        orders = form.apply(orders)
    elif form.is_bound:
        orders = orders.none()
    page = _page(request, orders)
    exponents = _platform_exponents()
    rows = [{"order": o, "amount": _price(o, exponents)} for o in page.object_list]
    return render(request, "dashboard/payorder_list.html", {"form": form, "page": page, "rows": rows, "can_write": _can_write(request), "nav": "payorders"})


def _payorder_currencies() -> list[str]:
    from ledger.selectors import assets_visible

    return list(assets_visible(organization=None).exclude(kind="custom").order_by("code").values_list("code", flat=True))


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def payorder_create(request):
    from payorders.services import payorder_create as create

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
    from payorders.selectors import checkout_url, fmt_source, payment_details, payorder_get, source_exponent

    order = payorder_get(organization=request.organization, public_id=public_id)

    def source(amount):
        return fmt_source(order, amount)

    context = {
        "order": order,
        "amount": _price(order, _platform_exponents()),
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


# --- API keys (owners only) -----------------------------------------------------------------------------


def _no_store(response):
    add_never_cache_headers(response)  # Cache-Control: no-store: the secret is in this page only
    return response


@dashboard_view(roles=OWNER_ONLY)
def apikey_list(request):
    keys = ApiKey.objects.filter(organization=request.organization).select_related("created_by").order_by("-created_at", "-id")
    return render(request, "dashboard/apikey_list.html", {"page": _page(request, keys), "form": ApiKeyCreateForm(), "nav": "apikeys"})


@dashboard_view(roles=OWNER_ONLY)
@require_http_methods(["GET", "POST"])
def apikey_create(request):
    from accounts.org_services import api_key_create

    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        api_key, secret = api_key_create(organization=request.organization, name=form.cleaned_data["name"].strip(), actor=request.user)
        return _no_store(render(request, "dashboard/apikey_created.html", {"api_key": api_key, "secret": secret, "nav": "apikeys"}))
    return render(request, "dashboard/apikey_form.html", {"form": form, "nav": "apikeys"}, status=400 if form.errors else 200)


@dashboard_view(roles=OWNER_ONLY)
@require_http_methods(["GET", "POST"])
def apikey_revoke(request, key_id: str):
    from accounts.org_services import api_key_revoke

    api_key = ApiKey.objects.filter(organization=request.organization, key_id=key_id).first()
    if api_key is None:
        raise Http404
    if request.method == "POST":
        try:
            api_key_revoke(organization=request.organization, key_id=key_id, actor=request.user)
        except InvalidState as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"API key {key_id} revoked. Requests signed with it now fail.")
        return redirect("dashboard:apikeys")
    return render(request, "dashboard/apikey_revoke.html", {"api_key": api_key, "nav": "apikeys"})


# --- Webhooks ---------------------------------------------------------------------------------------------


def _endpoints(organization):
    return WebhookEndpoint.objects.filter(organization=organization, deleted_at__isnull=True)


@dashboard_view()
def webhook_list(request):
    endpoints = _endpoints(request.organization).annotate(
        failed=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.FAILED)),
        pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING)),
    ).order_by("-created_at", "-id")
    return render(request, "dashboard/webhook_list.html", {"page": _page(request, endpoints), "can_write": _can_write(request), "nav": "webhooks"})


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def webhook_create(request):
    from accounts.org_services import webhook_endpoint_create

    form = WebhookEndpointCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhook_endpoint_create(
                organization=request.organization, url=form.cleaned_data["url"], events=form.cleaned_data["events"],
                description=form.cleaned_data["description"], actor=request.user,
            )
        except ValidationFailed as exc:
            add_service_errors(form, exc)
            if not form.errors:
                form.add_error("url", exc.message)
        else:
            return _no_store(render(request, "dashboard/webhook_created.html", {"endpoint": endpoint, "secret": secret, "nav": "webhooks"}))
    return render(request, "dashboard/webhook_form.html", {"form": form, "nav": "webhooks"}, status=400 if form.errors else 200)


def _endpoint_action(request, endpoint_id: int, service, done: str):
    try:
        endpoint = service(organization=request.organization, endpoint_id=endpoint_id, actor=request.user)
    except ValidationFailed as exc:  # enabling re-checks the URL
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Endpoint {endpoint.url} {done}.")
    return redirect("dashboard:webhooks")


@dashboard_view(roles=WRITE_ROLES)
@require_POST
def webhook_disable(request, endpoint_id: int):
    from accounts.org_services import webhook_endpoint_disable

    return _endpoint_action(request, endpoint_id, webhook_endpoint_disable, "disabled: it receives no events until enabled again")


@dashboard_view(roles=WRITE_ROLES)
@require_POST
def webhook_enable(request, endpoint_id: int):
    from accounts.org_services import webhook_endpoint_enable

    return _endpoint_action(request, endpoint_id, webhook_endpoint_enable, "enabled")


@dashboard_view()
def delivery_list(request):
    form = DeliveryFilterForm(request.GET or None)
    deliveries = WebhookDelivery.objects.filter(organization=request.organization).select_related("endpoint").order_by("-created_at")
    if form.is_bound and form.is_valid():
        deliveries = form.apply(deliveries)
    elif form.is_bound:
        deliveries = deliveries.none()
    return render(request, "dashboard/delivery_list.html", {"form": form, "page": _page(request, deliveries), "can_write": _can_write(request), "nav": "webhooks"})


@dashboard_view()
def delivery_detail(request, delivery_id):
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(organization=request.organization, pk=delivery_id).first()
    if delivery is None:
        raise Http404
    return render(
        request, "dashboard/delivery_detail.html",
        {"delivery": delivery, "attempts": list(delivery.attempts.order_by("attempted_at", "id")), "can_write": _can_write(request), "nav": "webhooks"},
    )


@dashboard_view(roles=WRITE_ROLES)
@require_POST
def delivery_redeliver(request, delivery_id):
    from accounts.org_services import webhook_delivery_redeliver

    try:
        delivery = webhook_delivery_redeliver(organization=request.organization, delivery_id=delivery_id, actor=request.user)
    except InvalidState as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Delivery {delivery.webhook_id} queued again.")
    back = request.POST.get("next", "")
    if back.startswith("/dashboard/") and not back.startswith("//"):
        return HttpResponseRedirect(back)
    return redirect("dashboard:deliveries")


# --- Transactions -----------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id", "created_at", "completed_at", "type", "status", "amount", "currency", "fee",
    "source_wallet_id", "source_wallet_name", "destination_wallet_id", "destination_wallet_name",
    "reference", "description",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading quote
    (OWASP CSV injection). Amounts are positive decimal strings, so they never change."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _positive(text) -> bool:
    try:
        return Decimal(str(text)) > 0
    except ArithmeticError:
        return False


class _Echo:
    def write(self, value):
        return value


def _transaction_rows(queryset, viewer):
    """The filtered transactions, newest first, in batches by id (keyset pagination)."""
    from ledger.serializers import TransactionPresenter, transactions_with_entries

    presenter = TransactionPresenter(viewer=viewer)
    last_id = None
    while True:
        batch_qs = queryset.order_by("-id")
        if last_id is not None:
            batch_qs = batch_qs.filter(id__lt=last_id)
        batch = list(transactions_with_entries(batch_qs)[:CSV_BATCH])
        if not batch:
            return
        yield from presenter.many(batch)
        last_id = batch[-1].pk


def transactions_csv(queryset, viewer, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def stream():
        yield writer.writerow(CSV_COLUMNS)
        for row in _transaction_rows(queryset, viewer):
            yield writer.writerow([csv_safe(row.get(col)) for col in CSV_COLUMNS])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    add_never_cache_headers(response)
    return response


@dashboard_view()
def transaction_list(request):
    from ledger.filters import TransactionFilter
    from ledger.selectors import Viewer, assets_visible, transactions_visible
    from ledger.serializers import TransactionPresenter, transactions_with_entries

    organization = request.organization
    viewer = Viewer(organization=organization)
    currencies = list(assets_visible(organization=organization).order_by("code").values_list("code", flat=True).distinct())
    params = request.GET.copy()
    export = params.pop("format", [""])[-1] == "csv"
    form = TransactionFilterForm(params or None, currencies=currencies)
    transactions = transactions_visible(viewer=viewer)
    if form.is_bound and not form.is_valid():
        transactions = transactions.none()
    elif form.is_bound:
        filterset = TransactionFilter(data=form.filter_data(), queryset=transactions)
        # The form checked each value already; should the API's filter still refuse one, show nothing.
        transactions = filterset.qs if filterset.is_valid() else transactions.none()
    if export:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return transactions_csv(transactions, viewer, f"coffer-transactions-{organization.slug}-{stamp}.csv")
    page = _page(request, transactions_with_entries(transactions.order_by("-id")))
    rows = TransactionPresenter(viewer=viewer).many(page.object_list)
    for row in rows:
        row["has_fee"] = _positive(row.get("fee"))
    csv_query = params.copy()
    csv_query.pop("page", None)
    csv_query["format"] = "csv"
    return render(
        request, "dashboard/transaction_list.html",
        {"form": form, "page": page, "rows": rows, "csv_url": f"{reverse('dashboard:transactions')}?{csv_query.urlencode()}", "nav": "transactions"},
    )

