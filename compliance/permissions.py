from rest_framework.permissions import BasePermission

from compliance.selectors import user_can_read_audit


class CanReadAudit(BasePermission):
    """Staff, auditors and compliance officers. Anonymous callers get 401 (authentication runs
    first), other users 403: the audit log is a resource, not someone else's object."""

    message = "Only staff, auditors and compliance officers can read the audit log."

    def has_permission(self, request, view) -> bool:
        return user_can_read_audit(user=request.user)
