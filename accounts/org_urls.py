"""Organization endpoints (API keys, customers, webhooks), under /api/v1/."""

from django.urls import path

from accounts import org_apis

urlpatterns: list = [
    path("api-keys", org_apis.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>/revoke", org_apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("customers", org_apis.CustomerListApi.as_view(), name="customers"),
    path("customers/<str:external_id>", org_apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("webhook-endpoints", org_apis.WebhookEndpointListCreateApi.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:pk>", org_apis.WebhookEndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path("webhook-endpoints/<int:pk>/disable", org_apis.WebhookEndpointDisableApi.as_view(), name="webhook-endpoint-disable"),
    path("webhook-endpoints/<int:pk>/enable", org_apis.WebhookEndpointEnableApi.as_view(), name="webhook-endpoint-enable"),
    path("webhook-deliveries", org_apis.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path("webhook-deliveries/<uuid:pk>", org_apis.WebhookDeliveryDetailApi.as_view(), name="webhook-delivery-detail"),
    path("webhook-deliveries/<uuid:pk>/redeliver", org_apis.WebhookDeliveryRedeliverApi.as_view(), name="webhook-delivery-redeliver"),
]
