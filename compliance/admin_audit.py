"""Staff actions in the Django admin land in the audit chain (SPEC 8), by explicit calls.

Every ModelAdmin registered on Coffer's admin site (`config.admin.CofferAdminSite`, Django's own
User and Group admins included) gets `AuditedAdmin` mixed in: the admin's own logging methods
(`log_addition`, `log_change`, `log_deletions`), which write a `LogEntry` inside the same
transaction as the change, append one audit event per entry too. No signal and no patched
manager: a multi-object deletion (written by Django with `bulk_create`) is audited like a single
one, because it is the admin method, not the row, that we extend."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

_ACTIONS = {ADDITION: "admin.addition", CHANGE: "admin.change", DELETION: "admin.deletion"}


def audit_admin_log_entry(entry: LogEntry) -> None:
    from compliance.services import audit_append

    content_type = entry.content_type
    audit_append(
        actor=entry.user,
        action=_ACTIONS.get(entry.action_flag, "admin.action"),
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=entry.object_id or "",
        data={
            "object_repr": entry.object_repr,
            "change_message": entry.get_change_message(),
            "admin_log_entry_id": entry.pk,
        },
    )


class AuditedAdmin:
    """Mixed into every registered ModelAdmin (see the module docstring)."""

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        audit_admin_log_entry(entry)
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        audit_admin_log_entry(entry)
        return entry

    def log_deletions(self, request, queryset):
        entries = super().log_deletions(request, queryset)
        for entry in entries if isinstance(entries, list) else [entries]:
            audit_admin_log_entry(entry)
        return entries
