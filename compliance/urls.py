from django.urls import path

from compliance.apis import AuditEventListApi, AuditVerifyApi

urlpatterns = [
    path("audit-logs", AuditEventListApi.as_view(), name="audit-log-list"),
    path("audit-logs/verify", AuditVerifyApi.as_view(), name="audit-log-verify"),
]
