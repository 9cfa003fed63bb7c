"""Who may call the ledger API, and the OpenAPI parts its modules share.

Invariants:
* An organization credential (API key, signature, client-credentials token) or a member's JWT
  with `X-Organization` reads and writes as the organization (`accounts.orgs.tenancy`); a user's JWT
  without that header reads as the person, even when they are also a member.
* `viewer_of(request)` is the one translation of a request into a `ledger.selectors.Viewer`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import BasePermission

from accounts.orgs.authentication import OrganizationPrincipal
from accounts.models import User
from accounts.orgs.tenancy import ORGANIZATION_HEADER, IsOrganization, request_organization
from core.livemode import request_livemode
from core.openapi import ErrorOutput
from ledger.selectors import Viewer

class IsOrganizationOrUser(BasePermission):
    """Organization credentials and `X-Organization` member calls read as the organization
    (IsOrganization's rules, which set `request.organization`); a plain user's JWT reads as
    the person."""

    message = "Authenticate with a user token, an API key, or a member's token with X-Organization."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, OrganizationPrincipal):
            return IsOrganization().has_permission(request, view)
        if not isinstance(user, User) or not user.is_active:
            return False
        if request.META.get(ORGANIZATION_HEADER, "").strip():
            return IsOrganization().has_permission(request, view)
        request.organization = None
        return True


def viewer_of(request) -> Viewer:
    organization = request_organization(request)
    if organization is not None:
        return Viewer(organization=organization, livemode=request_livemode(request))
    return Viewer(user=request.user, livemode=request_livemode(request))


AUTH_ERRORS = {
    401: OpenApiResponse(ErrorOutput, description="AUTHENTICATION_FAILED"),
    403: OpenApiResponse(ErrorOutput, description="PERMISSION_DENIED (a member without a suitable role; a user on an organization endpoint)"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: no such object visible to you")}
