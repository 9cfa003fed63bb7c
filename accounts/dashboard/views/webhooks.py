"""Webhook pages: endpoints (list, create with the secret shown once, disable, enable) and
deliveries (list, detail with attempts, redeliver). Writes need a developer or owner and go
through accounts.webhooks.services. A delivery and its attempts are read from its month's
partition only (PostgreSQL; the id in the URL carries the month)."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.dashboard.access import can_write, dashboard_view, no_store, page_of
from accounts.dashboard.forms import DeliveryFilterForm, WebhookEndpointCreateForm, add_service_errors
from accounts.models import WebhookDelivery, WebhookEndpoint
from accounts.orgs.tenancy import WRITE_ROLES
from accounts.webhooks.services import (
    webhook_delivery_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
)
from core.errors import InvalidState, ValidationFailed


def _endpoints(organization):
    return WebhookEndpoint.objects.filter(organization=organization, deleted_at__isnull=True)


@dashboard_view()
def webhook_list(request):
    endpoints = _endpoints(request.organization).annotate(
        failed=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.FAILED)),
        pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING)),
    ).order_by("-created_at", "-id")
    return render(request, "dashboard/webhook_list.html", {"page": page_of(request, endpoints), "can_write": can_write(request), "nav": "webhooks"})


@dashboard_view(roles=WRITE_ROLES)
@require_http_methods(["GET", "POST"])
def webhook_create(request):
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
            return no_store(render(request, "dashboard/webhook_created.html", {"endpoint": endpoint, "secret": secret, "nav": "webhooks"}))
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
    return _endpoint_action(request, endpoint_id, webhook_endpoint_disable, "disabled: it receives no events until enabled again")


@dashboard_view(roles=WRITE_ROLES)
@require_POST
def webhook_enable(request, endpoint_id: int):
    return _endpoint_action(request, endpoint_id, webhook_endpoint_enable, "enabled")


@dashboard_view()
def delivery_list(request):
    form = DeliveryFilterForm(request.GET or None)
    deliveries = WebhookDelivery.objects.filter(organization=request.organization).select_related("endpoint").order_by("-created_at")
    if form.is_bound and form.is_valid():
        deliveries = form.apply(deliveries)
    elif form.is_bound:
        deliveries = deliveries.none()
    return render(request, "dashboard/delivery_list.html", {"form": form, "page": page_of(request, deliveries), "can_write": can_write(request), "nav": "webhooks"})


@dashboard_view()
def delivery_detail(request, delivery_id):
    # its month's partition only: the id carries the delivery's created_at (accounts.models.webhooks)
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(organization=request.organization).of_id(delivery_id).first()
    if delivery is None:
        raise Http404
    attempts = list(delivery.attempts_in_partition().order_by("attempted_at", "id"))
    return render(
        request, "dashboard/delivery_detail.html",
        {"delivery": delivery, "attempts": attempts, "can_write": can_write(request), "nav": "webhooks"},
    )


@dashboard_view(roles=WRITE_ROLES)
@require_POST
def delivery_redeliver(request, delivery_id):
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
