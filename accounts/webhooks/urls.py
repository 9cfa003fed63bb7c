"""Webhook endpoints and deliveries of organizations, under /api/v1/."""

from django.urls import path

from accounts.webhooks import apis

urlpatterns: list = [
    path("webhook-endpoints", apis.WebhookEndpointListCreateApi.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:pk>", apis.WebhookEndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path("webhook-endpoints/<int:pk>/disable", apis.WebhookEndpointDisableApi.as_view(), name="webhook-endpoint-disable"),
    path("webhook-endpoints/<int:pk>/enable", apis.WebhookEndpointEnableApi.as_view(), name="webhook-endpoint-enable"),
    path("webhook-event-types", apis.WebhookEventTypeListApi.as_view(), name="webhook-event-types"),
    path("webhook-deliveries", apis.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path("webhook-deliveries/<uuid:pk>", apis.WebhookDeliveryDetailApi.as_view(), name="webhook-delivery-detail"),
    path("webhook-deliveries/<uuid:pk>/redeliver", apis.WebhookDeliveryRedeliverApi.as_view(), name="webhook-delivery-redeliver"),
]
