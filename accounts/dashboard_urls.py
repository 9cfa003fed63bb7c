"""The merchant dashboard under /dashboard/ (views in accounts.dashboard)."""

from django.urls import path

from accounts import dashboard

app_name = "dashboard"

urlpatterns = [
    path("login/", dashboard.DashboardLoginView.as_view(), name="login"),
    path("logout/", dashboard.DashboardLogoutView.as_view(), name="logout"),
    path("organizations/", dashboard.organizations, name="organizations"),
    path("", dashboard.overview, name="overview"),
    path("pay-orders/", dashboard.payorder_list, name="payorders"),
    path("pay-orders/new/", dashboard.payorder_create, name="payorder-create"),
    path("pay-orders/<uuid:public_id>/", dashboard.payorder_detail, name="payorder-detail"),
    path("api-keys/", dashboard.apikey_list, name="apikeys"),
    path("api-keys/new/", dashboard.apikey_create, name="apikey-create"),
    path("api-keys/<str:key_id>/revoke/", dashboard.apikey_revoke, name="apikey-revoke"),
    path("webhooks/", dashboard.webhook_list, name="webhooks"),
    path("webhooks/new/", dashboard.webhook_create, name="webhook-create"),
    path("webhooks/<int:endpoint_id>/disable/", dashboard.webhook_disable, name="webhook-disable"),
    path("webhooks/<int:endpoint_id>/enable/", dashboard.webhook_enable, name="webhook-enable"),
    path("webhooks/deliveries/", dashboard.delivery_list, name="deliveries"),
    path("webhooks/deliveries/<uuid:delivery_id>/", dashboard.delivery_detail, name="delivery-detail"),
    path("webhooks/deliveries/<uuid:delivery_id>/redeliver/", dashboard.delivery_redeliver, name="delivery-redeliver"),
    path("transactions/", dashboard.transaction_list, name="transactions"),
]
