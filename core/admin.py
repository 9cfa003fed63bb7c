"""Back-office views of the plumbing tables: read-only (rows are written by services only), with
one action to re-queue failed outbox messages."""

from django.contrib import admin, messages
from django.utils import timezone

from core.models import IdempotencyRecord, OutboxMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "scope", "endpoint", "key", "response_status", "created_at", "expires_at")
    list_filter = ("endpoint", "response_status")
    search_fields = ("key", "scope")
    date_hierarchy = "created_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "topic", "state", "attempts", "organization", "created_at", "next_attempt_at", "dispatched_at")
    list_filter = ("topic",)
    list_select_related = ("organization",)
    search_fields = ("topic", "key")
    actions = ["retry_now"]

    @admin.action(description="Retry selected failed or pending messages now")
    def retry_now(self, request, queryset):
        # Only undispatched rows; the sweeper (or dispatch task) does the actual work.
        count = queryset.filter(dispatched_at__isnull=True).update(failed_at=None, next_attempt_at=timezone.now())
        self.message_user(request, f"{count} message(s) queued for the next sweep.", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.is_superuser  # lets superusers run the action
