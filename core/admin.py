"""Back-office views of the plumbing tables: read-only (rows are written by services only), with
one action to re-queue dead (or waiting) outbox messages."""

from django.contrib import admin, messages

from core.models import IdempotencyRecord, OutboxMessage
from core.outbox import outbox_retry_now


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """The one read-only admin base: rows that only services write (ledger, audit, outbox, pay
    orders) are viewed here, never added, changed or deleted; actions call services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTabularInline(admin.TabularInline):
    """Rows shown under their parent, read-only: never added, changed or deleted here. Lists its
    `fields`, each read-only; `related` names what to `select_related` for them."""

    extra = 0
    can_delete = False
    related: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*self.related)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "scope", "endpoint", "key", "response_status", "created_at", "expires_at")
    list_filter = ("endpoint", "response_status")
    search_fields = ("key", "scope")
    date_hierarchy = "created_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "topic", "status", "attempts", "organization", "created_at", "next_attempt_at", "lease_owner", "done_at", "dead_at")
    list_filter = ("status", "topic")
    list_select_related = ("organization",)
    search_fields = ("topic", "key")
    actions = ["retry_now"]

    @admin.action(description="Retry the selected dead or waiting messages now", permissions=["retry"])
    def retry_now(self, request, queryset):
        count = outbox_retry_now(message_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} message(s) queued for the next sweep.", messages.SUCCESS)

    def has_retry_permission(self, request) -> bool:
        return request.user.is_superuser or request.user.has_perm("core.change_outboxmessage")
