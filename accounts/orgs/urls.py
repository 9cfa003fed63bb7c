"""Organization endpoints (API keys, customers by external id), under /api/v1/."""

from django.urls import path

from accounts.orgs import apis

urlpatterns: list = [
    path("api-keys", apis.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>/revoke", apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("customers", apis.CustomerListApi.as_view(), name="customers"),
    path("customers/<str:external_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
]
