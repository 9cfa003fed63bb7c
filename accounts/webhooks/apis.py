"""Organization API for webhooks: endpoints (create, read, disable, enable, delete) and
deliveries (list, detail with attempts, redeliver).

Thin views: validate, call one service of accounts.webhooks.services, serialize. Every queryset
goes through `OrganizationScopedMixin`, so another organization's object is a 404; a signing
secret appears only in the response that created it. A delivery in a URL is read from its
month's partition only (PostgreSQL): its id carries its `created_at` (accounts.models.webhooks);
an id of before the partitioning is looked up in every month."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from django.db.models import Prefetch

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from accounts.models.webhooks import delivery_created_at
from accounts.orgs.openapi import CONFLICT, ERRORS, NOT_FOUND
from core.openapi import ORG_HEADER, paginated
from accounts.orgs.tenancy import IsOrganization, OrganizationScopedMixin
from accounts.webhooks import services as webhook_services
from accounts.webhooks.events import EVENTS_BY_NAME, webhook_event_types
from accounts.webhooks.serializers import (
    WebhookDeliveryDetailOutput,
    WebhookDeliveryOutput,
    WebhookEndpointCreatedOutput,
    WebhookEndpointCreateInput,
    WebhookEndpointOutput,
    WebhookEventTypeOutput,
)
from core.pagination import LimitOffsetPagination

ENDPOINT_EXAMPLE = {
    "id": 12,
    "url": "https://example.com/coffer/webhooks",
    "events": ["transaction.completed", "transaction.failed"],
    "description": "ledger events",
    "livemode": True,
    "is_enabled": True,
    "created_at": "2026-01-15T10:00:00Z",
    "updated_at": "2026-01-15T10:00:00Z",
    "disabled_at": None,
    "disabled_reason": "",
    "disabled_detail": "",
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


# --- Webhook endpoints -----------------------------------------------------------------------------


class WebhookEndpointListCreateApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    livemode_field = "livemode"
    serializer_class = WebhookEndpointOutput
    filter_backends: list = []

    @extend_schema(
        operation_id="webhook_endpoints_list", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookEndpointOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Endpoints", value=paginated(ENDPOINT_EXAMPLE), response_only=True)],
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
        endpoint, secret = webhook_services.webhook_endpoint_create(organization=self.organization, actor=request.user, **data.validated_data)
        return Response({**WebhookEndpointOutput(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    livemode_field = "livemode"
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
        webhook_services.webhook_endpoint_delete(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointDisableApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    livemode_field = "livemode"
    serializer_class = WebhookEndpointOutput

    @extend_schema(
        operation_id="webhook_endpoints_disable", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={200: WebhookEndpointOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Disabled", value={**ENDPOINT_EXAMPLE, "is_enabled": False, "disabled_at": "2026-01-16T09:00:00Z",
                                                     "disabled_reason": "organization", "disabled_detail": "Disabled by the organization."}, response_only=True)],
        summary="Stop sending events to this endpoint (its pending deliveries are cancelled)",
    )
    def post(self, request, pk: int):
        endpoint = webhook_services.webhook_endpoint_disable(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
        return Response(WebhookEndpointOutput(endpoint).data)


class WebhookEndpointEnableApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    livemode_field = "livemode"
    serializer_class = WebhookEndpointOutput

    @extend_schema(
        operation_id="webhook_endpoints_enable", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={200: WebhookEndpointOutput, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Enabled", value=ENDPOINT_EXAMPLE, response_only=True)],
        summary="Send events to this endpoint again (its URL is checked again)",
        description="Also after Coffer disabled it because it answered 410 Gone (`disabled_reason` \"gone\"). Deliveries "
                    "cancelled by the disabling are not resent by this: redeliver them.",
    )
    def post(self, request, pk: int):
        endpoint = webhook_services.webhook_endpoint_enable(organization=self.organization, endpoint_id=self.get_object().pk, actor=request.user)
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
    livemode_field = "endpoint__livemode"
    serializer_class = WebhookDeliveryOutput
    filterset_class = WebhookDeliveryFilter

    @extend_schema(
        operation_id="webhook_deliveries_list", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookDeliveryOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Deliveries", value=paginated(DELIVERY_EXAMPLE), response_only=True)],
        summary="Webhook deliveries, newest first",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class _DeliveryInUrl:
    """The delivery of the URL's `pk`, in its month's partition (`WebhookDelivery.objects.of_id`)."""

    def get_base_queryset(self):
        return WebhookDelivery.objects.of_id(self.kwargs["pk"])


class WebhookDeliveryDetailApi(_DeliveryInUrl, OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookDelivery.objects.all()
    livemode_field = "endpoint__livemode"
    serializer_class = WebhookDeliveryDetailOutput

    def get_base_queryset(self):
        created_at = delivery_created_at(self.kwargs["pk"])
        attempts = WebhookAttempt.objects.all() if created_at is None else WebhookAttempt.objects.filter(delivery_created_at=created_at)
        return super().get_base_queryset().prefetch_related(Prefetch("attempts", queryset=attempts))

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


class WebhookDeliveryRedeliverApi(_DeliveryInUrl, OrganizationScopedMixin, generics.GenericAPIView):
    queryset = WebhookDelivery.objects.all()
    livemode_field = "endpoint__livemode"
    serializer_class = WebhookDeliveryOutput

    @extend_schema(
        operation_id="webhook_deliveries_redeliver", tags=["organization: webhooks"], parameters=[ORG_HEADER], request=None,
        responses={202: WebhookDeliveryOutput, **ERRORS, **NOT_FOUND, **CONFLICT},
        examples=[OpenApiExample("Queued", value={**DELIVERY_EXAMPLE, "status": "pending", "attempt_count": 0, "next_attempt_at": "2026-01-16T09:00:00Z"}, response_only=True, status_codes=["202"])],
        summary="Send a delivered or failed event again (same webhook-id)",
    )
    def post(self, request, pk):
        found = self.get_object()
        delivery = webhook_services.webhook_delivery_redeliver(
            organization=self.organization, delivery_id=found.pk, created_at=found.created_at, actor=request.user
        )
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


# --- Event types -------------------------------------------------------------------------------------


class WebhookEventTypeListApi(generics.GenericAPIView):
    """Reference data: the declared event types (`accounts.webhooks.events`), the same list the
    endpoint subscription is validated against."""

    permission_classes = [IsOrganization]
    pagination_class = LimitOffsetPagination
    serializer_class = WebhookEventTypeOutput
    filter_backends: list = []

    @extend_schema(
        operation_id="webhook_event_types_list", tags=["organization: webhooks"], parameters=[ORG_HEADER],
        responses={200: WebhookEventTypeOutput(many=True), **ERRORS},
        examples=[OpenApiExample("Event types", value=paginated(EVENTS_BY_NAME["customer.created"].as_dict()), response_only=True)],
        summary="Every webhook event type, with its description and the JSON Schema of its data",
        description="Every event is delivered as {\"id\": \"evt_...\", \"type\", \"created_at\", \"data\"}, signed per Standard "
                    "Webhooks; `schema` describes `data` (objects may gain properties). These are exactly the names a webhook "
                    "endpoint may subscribe to (or `<namespace>.*`, or `*`).",
    )
    def get(self, request):
        page = self.paginate_queryset(webhook_event_types())
        return self.get_paginated_response(WebhookEventTypeOutput(page, many=True).data)
