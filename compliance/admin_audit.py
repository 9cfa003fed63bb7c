"""Staff actions in the Django admin land in the audit chain (SPEC 8), by explicit calls.

Every ModelAdmin registered on Coffer's admin site (`config.admin.CofferAdminSite`, Django's own
User and Group admins included) gets `AuditedAdmin` mixed in: the admin's own logging methods
(`log_addition`, `log_change`, `log_deletions`), which write a `LogEntry` inside the same
transaction as the change, append one audit event per entry too. No signal and no patched
manager: a multi-object deletion (written by Django with `bulk_create`) is audited like a single
one, because it is the admin method, not the row, that we extend.

Admin actions (settle now, scan address, outbox retry, wallet suspend, review decisions...) are
audited the same way: `get_actions` wraps every action so that running it appends an
`admin.action` event with its actor, the model, the action's name and the selected ids. An
action that answers with an intermediate page (a 200 response: a form asking for a reason) has
not acted yet and is audited when that form is submitted. The event is written after the action
returns, also when it raised (with the error), so a half-done action is on record too."""

from __future__ import annotations

from functools import wraps

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.http import HttpResponse

_ACTIONS = {ADDITION: "admin.addition", CHANGE: "admin.change", DELETION: "admin.deletion"}


def audit_admin_log_entry(entry: LogEntry) -> None:
    from compliance.audit import audit_append

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


def audit_admin_action(*, request, model, name: str, object_ids: list, error: str | None = None) -> None:
    from compliance.audit import audit_append

    data = {"action": name, "object_ids": [str(pk) for pk in object_ids[:1000]], "count": len(object_ids)}
    if error:
        data["error"] = error[:500]
    audit_append(
        actor=request.user,
        action="admin.action",
        target_type=model._meta.label_lower,
        target_id=str(object_ids[0]) if len(object_ids) == 1 else "",
        data=data,
    )


def _audited_action(func, name: str):
    @wraps(func)
    def run(modeladmin, request, queryset):
        object_ids = list(queryset.values_list("pk", flat=True))
        try:
            response = func(modeladmin, request, queryset)
        except Exception as exc:
            audit_admin_action(request=request, model=modeladmin.model, name=name, object_ids=object_ids, error=f"{type(exc).__name__}: {exc}")
            raise
        if isinstance(response, HttpResponse) and response.status_code == 200:
            return response  # an intermediate page: nothing done yet
        audit_admin_action(request=request, model=modeladmin.model, name=name, object_ids=object_ids)
        return response

    run.audited = True
    return run


class AuditedAdmin:
    """Mixed into every registered ModelAdmin (see the module docstring)."""

    def get_actions(self, request):
        actions = super().get_actions(request)
        for name, (func, action_name, description) in list(actions.items()):
            if not getattr(func, "audited", False):
                actions[name] = (_audited_action(func, action_name), action_name, description)
        return actions

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
