from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.filters import AuditEventFilter
from compliance.permissions import CanReadAudit
from compliance.selectors import audit_event_list
from compliance.serializers import AuditEventOutput, AuditVerifyOutput
from compliance.services import audit_verify

_EVENT_EXAMPLE = {
    "id": 42,
    "created_at": "2026-05-31T12:00:00.000000Z",
    "actor_id": 7,
    "actor_label": "jane@example.com",
    "action": "user.login",
    "target_type": "accounts.user",
    "target_id": "7",
    "data": {"client_ip": "203.0.113.9"},
    "prev_hash": "9f1c…",
    "hash": "4b2e…",
}


@extend_schema(tags=["audit"])
class AuditEventListApi(ListAPIView):
    permission_classes = [CanReadAudit]
    serializer_class = AuditEventOutput
    filterset_class = AuditEventFilter

    def get_queryset(self):
        return audit_event_list(viewer=self.request.user)

    @extend_schema(
        summary="List audit events (staff, auditors, compliance officers)",
        examples=[OpenApiExample("An event", value=_EVENT_EXAMPLE, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["audit"])
class AuditVerifyApi(APIView):
    permission_classes = [CanReadAudit]

    @extend_schema(
        summary="Verify the audit chain",
        description="Recomputes every event's hash and link in id order.",
        responses=AuditVerifyOutput,
        examples=[
            OpenApiExample("Intact", value={"valid": True, "checked": 1200, "head_hash": "4b2e…", "first_invalid_id": None}),
            OpenApiExample("Broken", value={"valid": False, "checked": 17, "head_hash": "4b2e…", "first_invalid_id": 17}),
        ],
    )
    def get(self, request):
        return Response(AuditVerifyOutput(audit_verify()).data)
