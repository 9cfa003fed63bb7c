"""API-key pages (owners only): list with scopes, create (scopes chosen, read-only by default; the
secret shown once, no-store), revoke. Writes go through accounts.orgs.services, which audits."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.dashboard.access import dashboard_view, no_store, page_of
from accounts.dashboard.forms import ApiKeyCreateForm
from accounts.models import ApiKey
from accounts.orgs.services import api_key_create, api_key_revoke
from accounts.orgs.tenancy import OWNER_ONLY
from core.errors import InvalidState


@dashboard_view(roles=OWNER_ONLY)
def apikey_list(request):
    keys = ApiKey.objects.filter(organization=request.organization).select_related("created_by").order_by("-created_at", "-id")
    return render(request, "dashboard/apikey_list.html", {"page": page_of(request, keys), "form": ApiKeyCreateForm(), "nav": "apikeys"})


@dashboard_view(roles=OWNER_ONLY)
@require_http_methods(["GET", "POST"])
def apikey_create(request):
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        api_key, secret = api_key_create(
            organization=request.organization, name=form.cleaned_data["name"].strip(), scopes=form.chosen_scopes(), actor=request.user,
            livemode=not form.cleaned_data["test_key"],
        )
        return no_store(render(request, "dashboard/apikey_created.html", {"api_key": api_key, "secret": secret, "nav": "apikeys"}))
    return render(request, "dashboard/apikey_form.html", {"form": form, "nav": "apikeys"}, status=400 if form.errors else 200)


@dashboard_view(roles=OWNER_ONLY)
@require_http_methods(["GET", "POST"])
def apikey_revoke(request, key_id: str):
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
