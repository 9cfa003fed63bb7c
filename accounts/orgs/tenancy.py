"""Tenancy: everything an organization reads or writes is filtered by that organization here,
in one place, so a view cannot forget the filter; another organization's object is a 404.

Who "the organization" is:
- a request authenticated by an organization credential (API key, signature, client-credentials
  token): the key's organization (`request.organization`, set by accounts.orgs.authentication);
- a user (JWT) who is a member of organizations: the one named by the `X-Organization` header
  (id or slug), or their only organization when they have one. The member's role must be in the
  view's `organization_roles` for safe methods and `organization_write_roles` for the others.

Views reuse it as:

    class WalletListApi(OrganizationScopedMixin, ListAPIView):
        queryset = Wallet.objects.all()
        organization_field = "organization"   # or "customer__organization"
        livemode_field = "livemode"           # moded objects (core.livemode): the caller's mode only

The mode filter is here too: a view over moded objects names `livemode_field` (the lookup path to
the row's `livemode`), and a test key then sees only test-mode rows, a live key only live ones
(`core.livemode.mode_q`; the other mode's object is a 404 like another organization's).
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Membership, Organization, User
from accounts.orgs.authentication import OrganizationPrincipal
from core.livemode import mode_q, request_livemode

ALL_ROLES = (Membership.Role.OWNER, Membership.Role.DEVELOPER, Membership.Role.VIEWER)
WRITE_ROLES = (Membership.Role.OWNER, Membership.Role.DEVELOPER)
OWNER_ONLY = (Membership.Role.OWNER,)
ORGANIZATION_HEADER = "HTTP_X_ORGANIZATION"


def _member_organization(request, user: User, roles) -> Organization | None:
    memberships = Membership.objects.select_related("organization").filter(user=user)
    wanted = request.META.get(ORGANIZATION_HEADER, "").strip()
    if wanted:
        memberships = memberships.filter(organization__pk=int(wanted)) if wanted.isascii() and wanted.isdigit() else memberships.filter(organization__slug=wanted)
    found = list(memberships[:2])
    if len(found) != 1 or found[0].role not in roles:
        return None
    return found[0].organization


def request_organization(request) -> Organization | None:
    """The organization the request acts for, once IsOrganization has allowed it."""
    user = getattr(request, "user", None)
    if isinstance(user, OrganizationPrincipal):
        return user.organization
    return getattr(request, "organization", None)


class IsOrganization(BasePermission):
    """Allows organization credentials, and member users with a suitable role (see module doc).
    Sets `request.organization`."""

    message = "This endpoint is for organizations: use an API key, or a member's token with the X-Organization header."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, OrganizationPrincipal):
            request.organization = user.organization
            return True
        if not isinstance(user, User) or not user.is_active:
            return False
        if request.method in SAFE_METHODS:
            roles = getattr(view, "organization_roles", ALL_ROLES)
        else:
            roles = getattr(view, "organization_write_roles", WRITE_ROLES)
        organization = _member_organization(request, user, roles)
        if organization is None:
            return False
        request.organization = organization
        return True


class IsUser(BasePermission):
    """For user-only endpoints: a person's token, never an organization credential."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, User) and request.user.is_active


def scope_to_organization(queryset, organization: Organization, organization_field: str = "organization",
                          *, livemode: bool | None = None, livemode_field: str | None = None):
    queryset = queryset.filter(**{organization_field: organization})
    if livemode_field is not None and livemode is not None:
        queryset = queryset.filter(mode_q(livemode, livemode_field))
    return queryset


class OrganizationScopedMixin:
    """For generic views: the permission, and `get_queryset()` always narrowed to the caller's
    organization (`organization_field` is the lookup path from the model to its organization).
    Subclasses override `get_base_queryset()`, never `get_queryset()`."""

    permission_classes = [IsOrganization]
    organization_field = "organization"
    livemode_field: str | None = None  # the lookup path to a moded row's `livemode` (module docstring)
    organization_roles = ALL_ROLES
    organization_write_roles = WRITE_ROLES

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: override get_base_queryset(), not get_queryset(), so the organization filter stays")

    def get_base_queryset(self):
        return super().get_queryset()

    def get_queryset(self):
        return scope_to_organization(
            self.get_base_queryset(), self.organization, self.organization_field,
            livemode=request_livemode(self.request), livemode_field=self.livemode_field,
        )

    @property
    def organization(self) -> Organization:
        organization = request_organization(self.request)
        if organization is None:  # only reachable if a subclass dropped IsOrganization
            raise RuntimeError("OrganizationScopedMixin needs the IsOrganization permission")
        return organization
