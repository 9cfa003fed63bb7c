"""The organization half of `/wallets` (list, open, detail, statement: called by
`wallets.apis`, which serves users), and the lifecycle endpoints `suspend`, `activate`, `close`.

Invariants:
* An organization reaches only its system wallets and its customers' wallets; a user only their
  own customer wallets; staff with `ledger.change_wallet` may suspend or activate any wallet.
  Anything else is 404.
* Every change goes through a `ledger.services` wallet service (FSM, audit, webhook in one
  transaction); nothing here writes a model.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from accounts.models import User
from accounts.orgs.tenancy import ORGANIZATION_HEADER, IsOrganization, request_organization
from core.livemode import request_livemode
from core.pagination import LimitOffsetPagination
from core.errors import ValidationFailed
from core.openapi import ErrorOutput, ORG_HEADER, error_example
from ledger.apis.common import AUTH_ERRORS, NOT_FOUND, IsOrganizationOrUser
from ledger.filters import entries_in_range
from ledger.models import Wallet
from ledger.selectors import Viewer, org_wallet_get, org_wallets_for, wallet_entries
from ledger.serializers import LedgerEntryOutput, OrgWalletCreateInput, OrgWalletOutput, TransactionPresenter, WalletActionInput, validated
from ledger.services import organization_wallet_open, organization_wallet_transition, staff_wallet_transition

__all__ = ["IsOrganizationOrUser", "ORG_HEADER"]  # used by wallets.apis, with the views below

def org_wallets_list(request, view) -> Response:
    """GET /wallets for an organization: its system wallets and its customers' wallets;
    `?customer_external_id=`, `?currency=`, `?status=` narrow it."""
    wallets = org_wallets_for(request.organization, request_livemode(request))
    params = request.query_params
    if params.get("customer_external_id"):
        wallets = wallets.filter(customer__external_id=params["customer_external_id"])
    if params.get("currency"):
        wallets = wallets.filter(asset__code=params["currency"].strip().upper())
    if params.get("status"):
        if params["status"] not in Wallet.Status.values:
            raise ValidationFailed("status: not a wallet status.", details={"fields": {"status": [f"One of {', '.join(Wallet.Status.values)}."]}})
        wallets = wallets.filter(status=params["status"])
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(wallets, request, view=view)
    return paginator.get_paginated_response(OrgWalletOutput(page, many=True).data)


def org_wallet_create(request) -> Response:
    data = validated(OrgWalletCreateInput(data=request.data))
    wallet = organization_wallet_open(organization=request.organization, principal=request.user, **data)
    return Response(OrgWalletOutput(wallet).data, status=status.HTTP_201_CREATED)


def org_wallet_retrieve(request, wallet_id: int) -> Response:
    return Response(OrgWalletOutput(org_wallet_get(request.organization, wallet_id, request_livemode(request))).data)


def org_wallet_entries(request, view, wallet_id: int) -> Response:
    wallet = org_wallet_get(request.organization, wallet_id, request_livemode(request))
    entries = entries_in_range(wallet_entries(wallet=wallet).select_related("wallet__customer"), request.query_params)
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(entries, request, view=view)
    presenter = TransactionPresenter(viewer=Viewer(organization=request.organization, livemode=request_livemode(request)))
    return paginator.get_paginated_response(LedgerEntryOutput([presenter.entry(e) for e in page], many=True).data)


def wallet_close_response(request, wallet_id: int) -> Response:
    """POST /wallets/{id}/close and DELETE /wallets/{id}, for users and organizations alike."""
    data = validated(WalletActionInput(data=request.data or {}))
    organization = request_organization(request)
    wallet = organization_wallet_transition(
        organization=organization, user=None if organization is not None else request.user, principal=request.user,
        wallet_id=wallet_id, action="close", reason=data["reason"],
    )
    return Response(OrgWalletOutput(wallet).data)


ORG_WALLET_EXAMPLE = {
    "id": 31, "currency": "POINTS", "label": "", "system": False, "customer_external_id": "user-8812", "balance": "120",
    "available_balance": "120", "held_balance": "0", "status": "active", "owner_name": "Ada Lovelace",
    "created_at": "2026-05-31T12:00:00Z", "updated_at": "2026-05-31T12:05:00Z",
}
WALLET_STATE_ERRORS = {
    **AUTH_ERRORS, **NOT_FOUND,
    409: OpenApiResponse(ErrorOutput, description="INVALID_STATE (e.g. activating an active wallet, anything on a closed one) or WALLET_NOT_EMPTY"),
}


class IsOrganizationOrWalletStaff(BasePermission):
    """Organizations (IsOrganization's rules) or, with a user token and no X-Organization header,
    staff holding `ledger.change_wallet` (the compliance officer role), on any wallet (SPEC 6:
    suspend/activate are for organizations or staff)."""

    message = "Use organization credentials, or a staff token with the wallet permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, User) and user.is_active and user.is_staff and not request.META.get(ORGANIZATION_HEADER):
            request.organization = None
            return user.has_perm("ledger.change_wallet")
        return IsOrganization().has_permission(request, view)


class _WalletTransitionApi(generics.GenericAPIView):
    serializer_class = OrgWalletOutput
    queryset = Wallet.objects.none()
    permission_classes = [IsOrganizationOrWalletStaff]
    filter_backends: list = []
    action = ""

    def post(self, request, wallet_id: int):
        data = validated(WalletActionInput(data=request.data or {}))
        if request.organization is None:  # staff (IsOrganizationOrWalletStaff)
            wallet = staff_wallet_transition(user=request.user, wallet_id=wallet_id, action=self.action, reason=data["reason"])
        else:
            wallet = organization_wallet_transition(
                organization=request.organization, user=None, principal=request.user, wallet_id=wallet_id, action=self.action,
                reason=data["reason"],
            )
        return Response(OrgWalletOutput(wallet).data)


class WalletSuspendApi(_WalletTransitionApi):
    action = "suspend"

    @extend_schema(
        operation_id="wallets_suspend", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Suspend a wallet (organizations or staff): it keeps its balance but takes part in no transaction (WALLET_INACTIVE)",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "chargeback investigation"}, request_only=True),
            OpenApiExample("Suspended", value={**ORG_WALLET_EXAMPLE, "status": "suspended"}, response_only=True),
            OpenApiExample("Not active", value=error_example("INVALID_STATE", "A suspended wallet cannot be suspended.", {"wallet_id": 31, "status": "suspended"}),
                           response_only=True, status_codes=["409"]),
        ],
    )
    def post(self, request, wallet_id: int):
        return super().post(request, wallet_id)


class WalletActivateApi(_WalletTransitionApi):
    action = "activate"

    @extend_schema(
        operation_id="wallets_activate", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Re-activate a suspended wallet (organizations or staff)",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "investigation closed"}, request_only=True),
            OpenApiExample("Active again", value=ORG_WALLET_EXAMPLE, response_only=True),
        ],
    )
    def post(self, request, wallet_id: int):
        return super().post(request, wallet_id)


class WalletCloseApi(generics.GenericAPIView):
    serializer_class = OrgWalletOutput
    queryset = Wallet.objects.none()
    permission_classes = [IsOrganizationOrUser]
    filter_backends: list = []

    @extend_schema(
        operation_id="wallets_close", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Close a wallet (final; only at zero balance and no holds). DELETE /wallets/{id} does the same; rows are never deleted",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "customer left"}, request_only=True),
            OpenApiExample("Closed", value={**ORG_WALLET_EXAMPLE, "balance": "0", "available_balance": "0", "status": "closed"}, response_only=True),
            OpenApiExample("Not empty", value=error_example("WALLET_NOT_EMPTY", "Wallet 31 still holds 120 POINTS.", {"wallet_id": 31, "balance": "120", "held": "0"}),
                           response_only=True, status_codes=["409"]),
        ],
    )
    def post(self, request, wallet_id: int):
        return wallet_close_response(request, wallet_id)
