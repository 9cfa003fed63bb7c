"""The audit log in the back office: read-only (no add, change or delete, for anyone), with a
"Verify chain" button (a view) and the same check as an admin action."""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse

from compliance.models import AuditEvent
from compliance.services import audit_verify


def _report(modeladmin, request) -> None:
    result = audit_verify()
    if result["valid"]:
        modeladmin.message_user(
            request, f"Audit chain valid: {result['checked']} events checked; head {result['head_hash'] or '(empty)'}.", messages.SUCCESS
        )
    else:
        modeladmin.message_user(
            request,
            f"Audit chain BROKEN at event {result['first_invalid_id']} ({result['checked']} events checked).",
            messages.ERROR,
        )


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "action", "actor_label", "target_type", "target_id", "short_hash"]
    list_filter = ["action", "target_type"]
    search_fields = ["action", "actor_label", "target_type", "target_id", "hash"]
    date_hierarchy = "created_at"
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["verify_chain"]
    change_list_template = "admin/compliance/auditevent/change_list.html"
    show_full_result_count = False

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEvent) -> str:
        return obj.hash[:12]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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
