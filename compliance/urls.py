from django.urls import path

from compliance.apis import AuditEventListApi, AuditVerifyApi, FeeQuoteApi, LimitCheckApi, LimitListApi

urlpatterns = [
    path("audit-logs", AuditEventListApi.as_view(), name="audit-log-list"),
    path("audit-logs/verify", AuditVerifyApi.as_view(), name="audit-log-verify"),
    path("fees/quote", FeeQuoteApi.as_view(), name="fee-quote"),
    path("limits", LimitListApi.as_view(), name="limit-list"),
    path("limits/check", LimitCheckApi.as_view(), name="limit-check"),
]
