from django.urls import path

from payorders import apis, sandbox_apis

urlpatterns: list = [
    path("sandbox/chain/transactions", sandbox_apis.SandboxTransactionCreateApi.as_view(), name="sandbox-chain-transactions"),
    path("sandbox/chain/mine", sandbox_apis.SandboxMineApi.as_view(), name="sandbox-chain-mine"),
    path("pay-orders", apis.PayOrderListCreateApi.as_view(), name="pay-orders"),
    path("pay-orders/<str:public_id>", apis.PayOrderDetailApi.as_view(), name="pay-order-detail"),
    path("pay-orders/<str:public_id>/cancel", apis.PayOrderCancelApi.as_view(), name="pay-order-cancel"),
    path("pay-orders/<str:public_id>/quote", apis.PayOrderQuoteApi.as_view(), name="pay-order-quote"),
    path("pay-orders/<str:public_id>/payment-details", apis.PayOrderPaymentDetailsApi.as_view(), name="pay-order-payment-details"),
    path("pay-orders/<str:public_id>/process", apis.PayOrderProcessApi.as_view(), name="pay-order-process"),
    path("pay-orders/<str:public_id>/refund", apis.PayOrderRefundApi.as_view(), name="pay-order-refund"),
    path(
        "pay-orders/<str:public_id>/refunds/<str:refund_id>/transaction",
        apis.RefundTransactionApi.as_view(),
        name="pay-order-refund-transaction",
    ),
    path("xpub-keys", apis.XpubKeyListCreateApi.as_view(), name="xpub-keys"),
]
