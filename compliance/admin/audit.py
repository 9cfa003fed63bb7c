"""The audit log in the back office: read-only, "Verify chain", each row's actor (a user, an API
key or the system), filterable."""


from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse

from accounts.models import ApiKey
from compliance.models import AuditEvent
from compliance.audit import audit_verify
from core.admin import ReadOnlyModelAdmin


def _report(modeladmin, request) -> None:
    result = audit_verify()
    if result["valid"]:
        modeladmin.message_user(
            request, f"Audit chain valid: {result['checked']} events checked; head {result['head_hash'] or '(empty)'}.", messages.SUCCESS
        )
    else:
        modeladmin.message_user(
            request,
            f"Audit chain BROKEN at event {result['first_invalid_id']} ({result['checked']} events checked): {result['reason']}.",
            messages.ERROR,
        )


def audit_actor_display(event: AuditEvent) -> str:
    """Who acted: a user's email, an organization's API key, or the system (a task, the
    sequencer, a webhook...). API-key callers are recorded with actor NULL and the key id in
    the data (`accounts.org_services.principal_audit_data`)."""
    if event.actor_id:
        return event.actor_label or f"user {event.actor_id}"
    api_key = (event.data or {}).get("api_key_id") if isinstance(event.data, dict) else None
    if api_key:
        return f"API key {api_key}"
    return event.actor_label or "system"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return [("staff", "Staff"), ("user", "Other users"), ("api_key", "API keys"), ("system", "System")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "staff":
            return queryset.filter(actor__is_staff=True)
        if value == "user":
            return queryset.filter(actor__isnull=False, actor__is_staff=False)
        if value == "api_key":
            return queryset.filter(actor__isnull=True, data__has_key="api_key_id")
        if value == "system":
            return queryset.filter(actor__isnull=True).exclude(data__has_key="api_key_id")
        return queryset


class ApiKeyFilter(admin.SimpleListFilter):
    title = "API key"
    parameter_name = "api_key"

    def lookups(self, request, model_admin):
        keys = ApiKey.objects.select_related("organization").order_by("-id")[:100]
        return [(k.key_id, f"{k.organization.name}: {k.name or k.key_id}") for k in keys]

    def queryset(self, request, queryset):
        return queryset.filter(data__api_key_id=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "sequence", "created_at", "action", "actor_display", "target_type", "target_id", "short_hash"]
    list_filter = [ActorKindFilter, ApiKeyFilter, "action", "target_type"]
    search_fields = ["action", "actor_label", "target_type", "target_id", "hash"]
    date_hierarchy = "created_at"
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["verify_chain"]
    change_list_template = "admin/compliance/auditevent/change_list.html"
    show_full_result_count = False

    @admin.display(description="actor", ordering="actor_label")
    def actor_display(self, obj: AuditEvent) -> str:
        return audit_actor_display(obj)

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEvent) -> str:
        return obj.hash[:12] if obj.hash else "(not linked yet)"

    @admin.action(description="Verify the whole audit chain", permissions=["view"])
    def verify_chain(self, request, queryset):
        _report(self, request)

    def get_urls(self):
        urls = [
            path("verify/", self.admin_site.admin_view(self.verify_view), name="compliance_auditevent_verify"),
        ]
        return urls + super().get_urls()

    def verify_view(self, request):
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        _report(self, request)
        return HttpResponseRedirect(reverse("admin:compliance_auditevent_changelist"))
