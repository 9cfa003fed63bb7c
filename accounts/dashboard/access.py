"""Who a dashboard page acts for, and the decorator every page uses.

Invariants:
- Every page acts for ONE organization: a membership of the logged-in user (chosen on
  /dashboard/organizations/ when they have several, kept in the session and re-checked on every
  request). Every read is filtered by it; another organization's object is a 404, never a 403.
- Roles (Membership.Role): viewer reads; developer and owner also create, cancel and refund pay
  orders and manage webhooks (the API's `organization_write_roles`, WRITE_ROLES); only an owner
  manages API keys. A refused role is a 403 page.
- A page that shows a secret is marked `Cache-Control: no-store` (`no_store`).
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers

from accounts.models import Membership
from accounts.orgs.tenancy import ALL_ROLES, WRITE_ROLES
from core.errors import NotFound

SESSION_ORGANIZATION = "dashboard_organization_id"
PAGE_SIZE = 25


def memberships_of(user):
    return Membership.objects.select_related("organization").filter(user=user).order_by("organization__name", "organization_id")


def current_membership(request) -> Membership | None:
    """The membership the request acts with: the one chosen in this session, or the user's only one."""
    memberships = memberships_of(request.user)
    chosen = request.session.get(SESSION_ORGANIZATION)
    if chosen is not None:
        found = memberships.filter(organization_id=chosen).first()
        if found is not None:
            return found
        request.session.pop(SESSION_ORGANIZATION, None)  # membership ended since
    only = list(memberships[:2])
    return only[0] if len(only) == 1 else None


def not_found_page(request):
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
                return not_found_page(request)

        return wrapped

    return decorator


def page_of(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def can_write(request) -> bool:
    return request.membership.role in WRITE_ROLES


def no_store(response):
    add_never_cache_headers(response)  # Cache-Control: no-store: the secret is in this page only
    return response
