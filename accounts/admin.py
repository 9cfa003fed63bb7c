"""Back office for people, organizations, customers, API keys and webhooks.

Invariants:
- Every change made here is logged by the admin and recorded in the audit chain
  (compliance.signals); nothing here deletes a user, customer, key, endpoint or delivery.
- API keys and webhooks are read-mostly: secrets are never shown, and the actions (revoke,
  redeliver) call the services, which audit."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm
from django.forms.models import BaseInlineFormSet

from accounts.models import ApiKey, Customer, Membership, Organization, User, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from accounts.models.webhooks import delivery_created_at
from accounts.orgs import services as org_services
from accounts.webhooks import services as webhook_services
from ledger.models import Asset


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ["id"]
    list_display = ["id", "email", "first_name", "last_name", "is_active", "is_staff", "locked_until", "date_joined"]
    list_filter = ["is_active", "is_staff", "is_superuser", "groups"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["last_login", "date_joined", "failed_login_count"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Login protection", {"fields": ("failed_login_count", "locked_until")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Users appear in the audit chain and own customers; deactivate instead.
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class OrganizationAdminForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = "__all__"

    def clean_settlement_currency(self) -> str:
        code = (self.cleaned_data.get("settlement_currency") or "").strip().upper()
        if "settlement_currency" in self.changed_data and not Asset.objects.filter(code=code, organization__isnull=True).exclude(kind=Asset.Kind.CUSTOM).exists():
            raise forms.ValidationError(f"{code or 'This'} is not a platform currency.")
        return code


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationAdminForm
    list_display = ["id", "name", "slug", "settlement_currency", "limits_enabled", "risk_rules_enabled", "created_at"]
    list_filter = ["limits_enabled", "risk_rules_enabled"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "__str__", "user", "organization", "external_id", "kyc_level", "risk_status", "created_at"]
    list_filter = ["kyc_level", "risk_status", "livemode"]
    search_fields = ["name", "email", "external_id", "user__email", "organization__name"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user", "organization"]
    readonly_fields = ["created_at", "updated_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False



@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["key_id", "organization", "name", "scopes", "secret_prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["organization"]
    search_fields = ["key_id", "name", "organization__name"]
    readonly_fields = ["organization", "key_id", "name", "scopes", "secret_prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
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


class _AttemptsOfOneMonth(BaseInlineFormSet):
    """The delivery's attempts, read from its month's partition only (PostgreSQL)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.created_at is not None:
            self.queryset = self.queryset.filter(delivery_created_at=self.instance.created_at)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    formset = _AttemptsOfOneMonth
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

    def get_object(self, request, object_id, from_field=None):
        # the page of one delivery: its month's partition when its id carries it (UUIDv7); an id
        # of before the partitioning is looked up in every month (accepted on a staff page)
        created_at = delivery_created_at(object_id) if from_field is None else None
        if created_at is None:
            return super().get_object(request, object_id, from_field)
        return self.get_queryset(request).filter(pk=object_id, created_at=created_at).first()

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request, queryset):
        for delivery in queryset.exclude(status=WebhookDelivery.Status.PENDING):
            webhook_services.webhook_delivery_redeliver(
                organization=delivery.organization, delivery_id=delivery.pk, created_at=delivery.created_at, actor=request.user
            )
        messages.success(request, "Queued for redelivery.")
