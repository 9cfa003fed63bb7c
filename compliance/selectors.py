"""Reads of the audit chain, access-checked: staff, or members of the "auditor" or
"compliance officer" groups."""

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from compliance.models import AuditEvent

AUDIT_READER_GROUPS = ("auditor", "compliance officer")


def user_can_read_audit(*, user) -> bool:
    # Only a person can read the audit log: an organization's principal (API key) has no groups.
    if not isinstance(user, get_user_model()) or not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return user.groups.filter(name__in=AUDIT_READER_GROUPS).exists()


def audit_event_list(*, viewer) -> QuerySet[AuditEvent]:
    """All events, newest first, for a viewer allowed to read the audit log (else none)."""
    if not user_can_read_audit(user=viewer):
        return AuditEvent.objects.none()
    return AuditEvent.objects.order_by("-id")
