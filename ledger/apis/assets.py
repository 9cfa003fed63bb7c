"""`/assets`: platform assets and an organization's custom ones (SPEC 6).

Invariants:
* `GET` lists the platform's assets plus the caller organization's own (a user sees platform
  assets only); another organization's custom asset never appears.
* `POST` is for organizations only and goes through `ledger.services.organization_asset_create`
  (audited; a taken code is 400); an asset's exponent never changes once created.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from accounts.orgs.tenancy import IsOrganization, request_organization
from core.openapi import ErrorOutput, ORG_HEADER, error_example, paginated
from ledger.apis.common import AUTH_ERRORS, IsOrganizationOrUser
from ledger.models import Asset
from ledger.selectors import assets_visible
from ledger.serializers import AssetCreateInput, AssetOutput, validated
from ledger.services import organization_asset_create

ASSET_EXAMPLE = {"id": 8, "code": "POINTS", "name": "Loyalty points", "exponent": 0, "kind": "custom", "custom": True,
                 "created_at": "2026-05-31T12:00:00Z"}
USD_EXAMPLE = {"id": 1, "code": "USD", "name": "US Dollar", "exponent": 2, "kind": "fiat", "custom": False,
               "created_at": "2026-01-01T00:00:00Z"}


class AssetListCreateApi(generics.GenericAPIView):
    serializer_class = AssetOutput
    queryset = Asset.objects.none()
    filter_backends: list = []

    def get_permissions(self):
        return [IsOrganization()] if self.request.method == "POST" else [IsOrganizationOrUser()]

    @extend_schema(
        operation_id="assets_list", tags=["ledger: assets"], parameters=[ORG_HEADER],
        summary="The platform's assets, plus your organization's custom ones",
        responses={200: AssetOutput(many=True), **AUTH_ERRORS},
        examples=[OpenApiExample("Assets", value=paginated(USD_EXAMPLE, ASSET_EXAMPLE), response_only=True)],
    )
    def get(self, request):
        assets = assets_visible(organization=request_organization(request)).order_by("code", "id")
        page = self.paginate_queryset(assets)
        return self.get_paginated_response(AssetOutput(page, many=True).data)

    @extend_schema(
        operation_id="assets_create", tags=["ledger: assets"], parameters=[ORG_HEADER],
        summary="Define a custom asset (points, tickets...), visible only to your organization",
        request=AssetCreateInput,
        responses={
            201: AssetOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a bad field, or the code is taken (by a platform asset or one of yours)"),
            **AUTH_ERRORS,
        },
        examples=[
            OpenApiExample("Loyalty points", value={"code": "POINTS", "name": "Loyalty points", "exponent": 0}, request_only=True),
            OpenApiExample("Created", value=ASSET_EXAMPLE, response_only=True, status_codes=["201"]),
            OpenApiExample("Code taken", value=error_example("VALIDATION_ERROR", "code: an asset POINTS already exists.",
                                                      {"fields": {"code": ["An asset with this code already exists."]}}),
                           response_only=True, status_codes=["400"]),
        ],
    )
    def post(self, request):
        data = validated(AssetCreateInput(data=request.data))
        asset = organization_asset_create(organization=request.organization, principal=request.user, **data)
        return Response(AssetOutput(asset).data, status=status.HTTP_201_CREATED)

