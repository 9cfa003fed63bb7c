"""Staff actions in the Django admin land in the audit chain (SPEC 8).

The admin writes a `LogEntry` for every addition, change and deletion, inside the same
transaction as the change itself; we append an audit event for each. Single entries are saved
with `save()` (post_save fires); Django >= 5.1 writes a multi-object deletion with
`bulk_create`, which sends no signal, so `LogEntryManager.log_actions` is wrapped to record those
too."""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry, LogEntryManager
from django.db.models.signals import post_save

_ACTIONS = {ADDITION: "admin.addition", CHANGE: "admin.change", DELETION: "admin.deletion"}
_connected = False


def _record_log_entry(entry: LogEntry) -> None:
    from compliance.services import audit_append

    content_type = entry.content_type
    target_type = f"{content_type.app_label}.{content_type.model}" if content_type else ""
    audit_append(
        actor=entry.user,
        action=_ACTIONS.get(entry.action_flag, "admin.action"),
        target_type=target_type,
        target_id=entry.object_id or "",
        data={
            "object_repr": entry.object_repr,
            "change_message": entry.get_change_message(),
            "admin_log_entry_id": entry.pk,
        },
    )


def _on_log_entry_saved(sender, instance: LogEntry, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        _record_log_entry(instance)


def connect() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    post_save.connect(_on_log_entry_saved, sender=LogEntry, dispatch_uid="compliance.audit_admin_log")

    original = LogEntryManager.log_actions

    def log_actions(self, user_id, queryset, action_flag, change_message="", *, single_object=False):
        result = original(self, user_id, queryset, action_flag, change_message, single_object=single_object)
        # One entry went through save() (post_save recorded it); several were bulk-created.
        if isinstance(result, list) and len(result) > 1:
            for entry in result:
                _record_log_entry(entry)
        return result

    log_actions.__wrapped__ = original  # type: ignore[attr-defined]
    LogEntryManager.log_actions = log_actions
