"""Admin for organizations' API access: read-mostly; secrets never shown; actions call services."""

from django.contrib import admin, messages

from accounts import org_services
from accounts.models import ApiKey, WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["key_id", "organization", "name", "secret_prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["organization"]
    search_fields = ["key_id", "name", "organization__name"]
    readonly_fields = ["organization", "key_id", "name", "secret_prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    exclude = ["secret_hash", "secret_encrypted"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # created through the API or `create_organization`, where the secret is shown once

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            org_services.api_key_revoke(organization=api_key.organization, key_id=api_key.key_id, actor=request.user)
        messages.success(request, "Revoked.")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["attempted_at", "url", "status_code", "duration_ms", "response_excerpt", "error", "succeeded"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["id", "organization", "url", "is_enabled", "created_at", "deleted_at"]
    list_filter = ["is_enabled"]
    list_select_related = ["organization"]
    search_fields = ["url", "organization__name"]
    readonly_fields = ["organization", "url", "events", "description", "is_enabled", "created_by", "created_at", "updated_at", "disabled_at", "deleted_at"]
    exclude = ["secret_encrypted"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "organization", "event_type", "status", "attempt_count", "next_attempt_at", "last_status_code", "created_at"]
    list_filter = ["status", "event_type"]
    list_select_related = ["organization"]
    search_fields = ["event_id", "event_type"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request, queryset):
        for delivery in queryset.exclude(status=WebhookDelivery.Status.PENDING):
            org_services.webhook_delivery_redeliver(organization=delivery.organization, delivery_id=delivery.pk, actor=request.user)
        messages.success(request, "Queued for redelivery.")
