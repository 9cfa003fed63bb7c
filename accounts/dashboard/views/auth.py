"""Logging in and out of the dashboard, and choosing the organization to act for.

Invariants:
- A login post passes the API's `auth` throttles (per client address and per account) before
  the password is looked at, then the same login service as `POST /auth/token`
  (accounts.identity.login: lockout, audit).
- The chosen organization must be one of the user's memberships; anything else is a 404.
"""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from accounts.dashboard.access import SESSION_ORGANIZATION, current_membership, memberships_of, not_found_page
from accounts.dashboard.forms import DashboardLoginForm
from accounts.identity.throttles import AuthAccountThrottle, AuthAddressThrottle


class _PostedData:
    """What the API's auth throttles read from a request, for the form post."""

    def __init__(self, request):
        self.META, self.headers, self.data = request.META, request.headers, request.POST


def login_throttle_wait(request) -> int | None:
    """The API's `auth` throttles (per client address, per account) on a login form post;
    seconds to wait when one refuses, else None (and the attempt is counted)."""
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


@login_required
@require_http_methods(["GET", "POST"])
def organizations(request):
    memberships = list(memberships_of(request.user))
    if request.method == "POST":
        chosen = next((m for m in memberships if str(m.organization_id) == request.POST.get("organization", "")), None)
        if chosen is None:
            return not_found_page(request)
        request.session[SESSION_ORGANIZATION] = chosen.organization_id
        return redirect("dashboard:overview")
    return render(request, "dashboard/organizations.html", {"memberships": memberships, "current": current_membership(request)})
