"""Organization API: API keys and customers by external id.

Thin views: validate, call one service, serialize. Every queryset goes through
`accounts.orgs.tenancy.OrganizationScopedMixin`, so another organization's object is a 404."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from accounts.models import ApiKey, Customer
from accounts.orgs import services as org_services
from accounts.orgs.openapi import CONFLICT, ERRORS, NOT_FOUND
from core.openapi import ORG_HEADER, paginated
from accounts.orgs.serializers import (
    ApiKeyCreatedOutput,
    ApiKeyCreateInput,
    ApiKeyOutput,
    CustomerDetailOutput,
    CustomerOutput,
    CustomerUpsertInput,
)
from accounts.orgs.tenancy import OWNER_ONLY, OrganizationScopedMixin
from core.errors import ValidationFailed

KEY_EXAMPLE = {
    "key_id": "key_4f9c2a7d1e3b5c6a8d0e2f41",
    "name": "production backend",
    "scopes": ["read", "payorders:write"],
    "livemode": True,
    "secret_prefix": "sk_Qm3x",
    "created_at": "2026-01-15T10:00:00Z",
    "last_used_at": "2026-01-15T10:05:00Z",
    "revoked_at": None,
}
CUSTOMER_EXAMPLE = {
    "external_id": "user-8812",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "kyc_level": "basic",
    "livemode": True,
    "metadata": {"tier": "gold"},
    "created_at": "2026-01-15T10:00:00Z",
    "updated_at": "2026-01-15T10:00:00Z",
}


# --- API keys ------------------------------------------------------------------------------------


class ApiKeyListCreateApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = ApiKey.objects.all()
    serializer_class = ApiKeyOutput
    organization_roles = OWNER_ONLY
    organization_write_roles = OWNER_ONLY
    filter_backends: list = []

    @extend_schema(
        operation_id="api_keys_list", tags=["organization: API keys"], parameters=[ORG_HEADER],
        responses={200: ApiKeyOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Keys", value=paginated(KEY_EXAMPLE), response_only=True)],
        summary="List the organization's API keys with their scopes (secrets are never shown again)",
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiKeyOutput(page, many=True).data)

    @extend_schema(
        operation_id="api_keys_create", tags=["organization: API keys"], parameters=[ORG_HEADER],
        request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput, **ERRORS},
        examples=[
            OpenApiExample("Create", value={"name": "production backend", "scopes": ["read", "payorders:write"]}, request_only=True),
            OpenApiExample("Read-only (the default)", value={"name": "reporting"}, request_only=True),
            OpenApiExample("Created", value={**KEY_EXAMPLE, "last_used_at": None, "secret": "sk_Qm3xV6bq0n1Jm2yXy0cJr8lJ5n9m7h3wq4e5r6t7y8u"}, response_only=True, status_codes=["201"]),
        ],
        summary="Create an API key; the secret is in this response only",
        description="Scopes default to `read`. An owner may grant any scope; a key with `keys:manage` grants at most its own (403 otherwise).",
    )
    def post(self, request):
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = org_services.api_key_create(
            organization=self.organization, name=data.validated_data["name"], scopes=data.validated_data["scopes"],
            livemode=data.validated_data["livemode"], actor=request.user,
        )
        return Response({**ApiKeyOutput(api_key).data, "secret": secret}, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = ApiKey.objects.all()
    serializer_class = ApiKeyOutput
    organization_roles = OWNER_ONLY
    organization_write_roles = OWNER_ONLY
    lookup_field = "key_id"

    @extend_schema(
        operation_id="api_keys_revoke", tags=["organization: API keys"], parameters=[ORG_HEADER], request=None,
        responses={200: ApiKeyOutput, **ERRORS, **NOT_FOUND, **CONFLICT},
        examples=[OpenApiExample("Revoked", value={**KEY_EXAMPLE, "revoked_at": "2026-01-16T09:00:00Z"}, response_only=True)],
        summary="Revoke an API key (at once, for every scheme and every token issued for it)",
    )
    def post(self, request, key_id: str):
        api_key = org_services.api_key_revoke(organization=self.organization, key_id=self.get_object().key_id, actor=request.user)
        return Response(ApiKeyOutput(api_key).data)


# --- Customers -------------------------------------------------------------------------------------


class CustomerFilter(django_filters.FilterSet):
    kyc_level = django_filters.ChoiceFilter(choices=Customer.KycLevel.choices)
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the external id, name or email.")

    class Meta:
        model = Customer
        fields = ["kyc_level"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(external_id__icontains=value) | Q(name__icontains=value) | Q(email__icontains=value))


class CustomerListApi(OrganizationScopedMixin, generics.ListAPIView):
    queryset = Customer.objects.all()
    livemode_field = "livemode"
    serializer_class = CustomerOutput
    filterset_class = CustomerFilter

    @extend_schema(
        operation_id="customers_list", tags=["organization: customers"], parameters=[ORG_HEADER],
        responses={200: CustomerOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Customers", value=paginated(CUSTOMER_EXAMPLE), response_only=True)],
        summary="List the organization's customers",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _check_external_id(external_id: str) -> str:
    if not external_id or len(external_id) > 200 or not external_id.isprintable():
        raise ValidationFailed("external_id must be 1-200 printable characters.", details={"external_id": ["1-200 printable characters."]})
    return external_id


class CustomerDetailApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = Customer.objects.all()
    livemode_field = "livemode"
    serializer_class = CustomerDetailOutput
    lookup_field = "external_id"

    @extend_schema(
        operation_id="customers_retrieve", tags=["organization: customers"], parameters=[ORG_HEADER],
        responses={200: CustomerDetailOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Customer", value={**CUSTOMER_EXAMPLE, "wallets": [
            {"id": 31, "currency": "USD", "label": "", "status": "active", "balance": "120.50",
             "available_balance": "100.50", "created_at": "2026-01-15T10:01:00Z"}]}, response_only=True)],
        summary="A customer by your external id, with its wallets and KYC level",
    )
    def get(self, request, external_id: str):
        return Response(CustomerDetailOutput(self.get_object()).data)

    @extend_schema(
        operation_id="customers_upsert", tags=["organization: customers"], parameters=[ORG_HEADER],
        request=CustomerUpsertInput,
        responses={200: CustomerDetailOutput, 201: CustomerDetailOutput, **ERRORS},
        examples=[
            OpenApiExample("Upsert", value={"name": "Ada Lovelace", "email": "ada@example.com", "kyc_level": "basic", "metadata": {"tier": "gold"}}, request_only=True),
            OpenApiExample("Created or updated", value={**CUSTOMER_EXAMPLE, "wallets": []}, response_only=True, status_codes=["200", "201"]),
        ],
        summary="Create or update a customer by your external id (201 created, 200 updated)",
    )
    def put(self, request, external_id: str):
        data = CustomerUpsertInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer, created = org_services.customer_upsert(
            organization=self.organization, external_id=_check_external_id(external_id), data=data.validated_data, actor=request.user
        )
        return Response(CustomerDetailOutput(customer).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
