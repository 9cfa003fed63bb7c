"""The merchant dashboard under /dashboard/ (one views module per page group)."""

from django.urls import path

from accounts.dashboard.views import auth, keys, overview, payorders, statements, transactions, webhooks

app_name = "dashboard"

urlpatterns = [
    path("login/", auth.DashboardLoginView.as_view(), name="login"),
    path("logout/", auth.DashboardLogoutView.as_view(), name="logout"),
    path("organizations/", auth.organizations, name="organizations"),
    path("", overview.overview, name="overview"),
    path("pay-orders/", payorders.payorder_list, name="payorders"),
    path("pay-orders/new/", payorders.payorder_create, name="payorder-create"),
    path("pay-orders/<uuid:public_id>/", payorders.payorder_detail, name="payorder-detail"),
    path("pay-orders/<uuid:public_id>/cancel/", payorders.payorder_cancel, name="payorder-cancel"),
    path("pay-orders/<uuid:public_id>/refund/", payorders.payorder_refund, name="payorder-refund"),
    path("api-keys/", keys.apikey_list, name="apikeys"),
    path("api-keys/new/", keys.apikey_create, name="apikey-create"),
    path("api-keys/<str:key_id>/revoke/", keys.apikey_revoke, name="apikey-revoke"),
    path("webhooks/", webhooks.webhook_list, name="webhooks"),
    path("webhooks/new/", webhooks.webhook_create, name="webhook-create"),
    path("webhooks/<int:endpoint_id>/disable/", webhooks.webhook_disable, name="webhook-disable"),
    path("webhooks/<int:endpoint_id>/enable/", webhooks.webhook_enable, name="webhook-enable"),
    path("webhooks/deliveries/", webhooks.delivery_list, name="deliveries"),
    path("webhooks/deliveries/<uuid:delivery_id>/", webhooks.delivery_detail, name="delivery-detail"),
    path("webhooks/deliveries/<uuid:delivery_id>/redeliver/", webhooks.delivery_redeliver, name="delivery-redeliver"),
    path("transactions/", transactions.transaction_list, name="transactions"),
    path("wallets/<int:wallet_id>/statement/", statements.wallet_statement, name="wallet-statement"),
]
