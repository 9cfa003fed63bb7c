"""Organization API: API keys, customers by external id, webhook endpoints and deliveries.

Thin views: validate, call one service, serialize. Every queryset goes through
`accounts.tenancy.OrganizationScopedMixin`, so another organization's object is a 404."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from accounts import org_services
from accounts.models import ApiKey, Customer, WebhookDelivery, WebhookEndpoint
from accounts.org_serializers import (
    ApiKeyCreatedOutput,
    ApiKeyCreateInput,
    ApiKeyOutput,
    CustomerDetailOutput,
    CustomerOutput,
    CustomerUpsertInput,
    OrgErrorOutput,
    WebhookDeliveryDetailOutput,
    WebhookDeliveryOutput,
    WebhookEndpointCreatedOutput,
    WebhookEndpointCreateInput,
    WebhookEndpointOutput,
)
from accounts.tenancy import OWNER_ONLY, OrganizationScopedMixin
from core.errors import ValidationFailed

ERRORS = {
    400: OpenApiResponse(OrgErrorOutput, description="VALIDATION_ERROR"),
    401: OpenApiResponse(OrgErrorOutput, description="AUTHENTICATION_FAILED"),
    403: OpenApiResponse(OrgErrorOutput, description="PERMISSION_DENIED (a user who is not an allowed member)"),
}
NOT_FOUND = {404: OpenApiResponse(OrgErrorOutput, description="NOT_FOUND: no such object in your organization")}
CONFLICT = {409: OpenApiResponse(OrgErrorOutput, description="INVALID_STATE")}
ORG_HEADER = OpenApiParameter(
    "X-Organization", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="For a member user's JWT: the organization (id or slug) to act for. Not needed with an API key.",
)

KEY_EXAMPLE = {
    "key_id": "key_4f9c2a7d1e3b5c6a8d0e2f41",
    "name": "production backend",
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
    "metadata": {"tier": "gold"},
    "created_at": "2026-01-15T10:00:00Z",
    "updated_at": "2026-01-15T10:00:00Z",
}
ENDPOINT_EXAMPLE = {
    "id": 12,
    "url": "https://example.com/coffer/webhooks",
    "events": ["transaction.completed", "transaction.failed"],
    "description": "ledger events",
    "is_enabled": True,
    "created_at": "2026-01-15T10:00:00Z",
    "updated_at": "2026-01-15T10:00:00Z",
    "disabled_at": None,
}
DELIVERY_EXAMPLE = {
    "id": "5d8f7f0e-3a8c-4d2b-9b51-1f7a3e0c9d21",
    "webhook_id": "msg_5d8f7f0e3a8c4d2b9b511f7a3e0c9d21",
    "endpoint_id": 12,
    "event_id": "evt_0b6c1d2e3f4a5b6c7d8e9f0a1b2c3d4e",
    "event_type": "transaction.completed",
    "status": "delivered",
    "attempt_count": 2,
    "next_attempt_at": None,
    "last_attempt_at": "2026-01-15T10:00:06Z",
    "last_status_code": 200,
    "last_error": "",
    "delivered_at": "2026-01-15T10:00:06Z",
    "created_at": "2026-01-15T10:00:00Z",
    "payload": {
        "id": "evt_0b6c1d2e3f4a5b6c7d8e9f0a1b2c3d4e",
        "type": "transaction.completed",
        "created_at": "2026-01-15T10:00:00Z",
        "data": {"id": 981, "reference": "order-77", "status": "completed"},
    },
}


def _paginated(example: dict) -> dict:
    return {"results": [example], "count": 1, "limit": 20, "offset": 0}


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
        examples=[OpenApiExample("Keys", value=_paginated(KEY_EXAMPLE), response_only=True)],
        summary="List the organization's API keys (secrets are never shown again)",
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiKeyOutput(page, many=True).data)

    @extend_schema(
        operation_id="api_keys_create", tags=["organization: API keys"], parameters=[ORG_HEADER],
        request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput, **ERRORS},
        examples=[
            OpenApiExample("Create", value={"name": "production backend"}, request_only=True),
            OpenApiExample("Created", value={**KEY_EXAMPLE, "last_used_at": None, "secret": "sk_Qm3xV6bq0n1Jm2yXy0cJr8lJ5n9m7h3wq4e5r6t7y8u"}, response_only=True, status_codes=["201"]),
        ],
        summary="Create an API key; the secret is in this response only",
    )
    def post(self, request):
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = org_services.api_key_create(organization=self.organization, name=data.validated_data["name"], actor=request.user)
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
    serializer_class = CustomerOutput
    filterset_class = CustomerFilter

    @extend_schema(
        operation_id="customers_list", tags=["organization: customers"], parameters=[ORG_HEADER],
        responses={200: CustomerOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Customers", value=_paginated(CUSTOMER_EXAMPLE), response_only=True)],
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


# --- Webhook endpoints -----------------------------------------------------------------------------


class WebhookEndpointListCreateApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    serializer_class = WebhookEndpointOutput
    filter_backends: list = []

    @extend_schema(
        operation_id="webhook_endpoints_list", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookEndpointOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Endpoints", value=_paginated(ENDPOINT_EXAMPLE), response_only=True)],
        summary="List webhook endpoints",
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookEndpointOutput(page, many=True).data)

    @extend_schema(
        operation_id="webhook_endpoints_create", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        request=WebhookEndpointCreateInput, responses={201: WebhookEndpointCreatedOutput, **ERRORS},
        examples=[
            OpenApiExample("Create", value={"url": "https://example.com/coffer/webhooks", "events": ["transaction.completed", "transaction.failed"], "description": "ledger events"}, request_only=True),
            OpenApiExample("All events", value={"url": "https://example.com/coffer/webhooks", "events": ["*"]}, request_only=True),
            OpenApiExample("Created", value={**ENDPOINT_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3yqNQzcD8ZoE"}, response_only=True, status_codes=["201"]),
        ],
        summary="Add a webhook endpoint; its signing secret is in this response only",
        description="The URL must be https when the server requires it, and its host must resolve to public addresses only "
                    "(checked now and before every delivery). Deliveries are signed per Standard Webhooks.",
    )
    def post(self, request):
        data = WebhookEndpointCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = org_services.webhook_endpoint_create(organization=self.organization, actor=request.user, **data.validated_data)
        return Response({**WebhookEndpointOutput(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    serializer_class = WebhookEndpointOutput

    @extend_schema(
        operation_id="webhook_endpoints_retrieve", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookEndpointOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Endpoint", value=ENDPOINT_EXAMPLE, response_only=True)],
        summary="A webhook endpoint",
    )
    def get(self, request, pk: int):
        return Response(WebhookEndpointOutput(self.get_object()).data)

    @extend_schema(
        operation_id="webhook_endpoints_delete", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={204: None, **ERRORS, **NOT_FOUND}, summary="Delete a webhook endpoint (pending deliveries to it stop)",
    )
    def delete(self, request, pk: int):
        org_services.webhook_endpoint_delete(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointDisableApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    serializer_class = WebhookEndpointOutput

    @extend_schema(
        operation_id="webhook_endpoints_disable", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={200: WebhookEndpointOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Disabled", value={**ENDPOINT_EXAMPLE, "is_enabled": False, "disabled_at": "2026-01-16T09:00:00Z"}, response_only=True)],
        summary="Stop sending events to this endpoint",
    )
    def post(self, request, pk: int):
        endpoint = org_services.webhook_endpoint_disable(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
        return Response(WebhookEndpointOutput(endpoint).data)


class WebhookEndpointEnableApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    serializer_class = WebhookEndpointOutput

    @extend_schema(
        operation_id="webhook_endpoints_enable", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={200: WebhookEndpointOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Enabled", value=ENDPOINT_EXAMPLE, response_only=True)],
        summary="Send events to this endpoint again (its URL is checked again)",
    )
    def post(self, request, pk: int):
        endpoint = org_services.webhook_endpoint_enable(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
        return Response(WebhookEndpointOutput(endpoint).data)


# --- Webhook deliveries ----------------------------------------------------------------------------


class WebhookDeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=WebhookDelivery.Status.choices)
    event_type = django_filters.CharFilter()
    event = django_filters.CharFilter(field_name="event_type", help_text="Alias of event_type.")
    endpoint_id = django_filters.NumberFilter()

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event_type", "endpoint_id"]


class WebhookDeliveryListApi(OrganizationScopedMixin, generics.ListAPIView):
    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliveryOutput
    filterset_class = WebhookDeliveryFilter

    @extend_schema(
        operation_id="webhook_deliveries_list", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookDeliveryOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Deliveries", value=_paginated(DELIVERY_EXAMPLE), response_only=True)],
        summary="Webhook deliveries, newest first",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class WebhookDeliveryDetailApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookDelivery.objects.prefetch_related("attempts")
    serializer_class = WebhookDeliveryDetailOutput

    @extend_schema(
        operation_id="webhook_deliveries_retrieve", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookDeliveryDetailOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Delivery", value={**DELIVERY_EXAMPLE, "attempts": [
            {"attempted_at": "2026-01-15T10:00:01Z", "url": "https://example.com/coffer/webhooks", "status_code": 500,
             "duration_ms": 83, "response_excerpt": "oops", "error": "HTTP 500", "succeeded": False},
            {"attempted_at": "2026-01-15T10:00:06Z", "url": "https://example.com/coffer/webhooks", "status_code": 200,
             "duration_ms": 41, "response_excerpt": "ok", "error": "", "succeeded": True}]}, response_only=True)],
        summary="A delivery with every attempt (status, duration, response excerpt)",
    )
    def get(self, request, pk):
        return Response(WebhookDeliveryDetailOutput(self.get_object()).data)


class WebhookDeliveryRedeliverApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliveryOutput

    @extend_schema(
        operation_id="webhook_deliveries_redeliver", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={202: WebhookDeliveryOutput, **ERRORS, **NOT_FOUND, **CONFLICT},
        examples=[OpenApiExample("Queued", value={**DELIVERY_EXAMPLE, "status": "pending", "attempt_count": 0, "next_attempt_at": "2026-01-16T09:00:00Z"}, response_only=True, status_codes=["202"])],
        summary="Send a delivered or failed event again (same webhook-id)",
    )
    def post(self, request, pk):
        delivery = org_services.webhook_delivery_redeliver(organization=self.organization, delivery_id=self.get_object().pk, actor=request.user)
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
