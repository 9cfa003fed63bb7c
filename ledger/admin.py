"""The ledger in the compliance back office (SPEC 8).

Invariants:
* Assets are editable (never an exponent in use); wallets, transactions (with their postings
  and entries), entries and holds are read-only.
* Wallet suspend/activate are actions that call `ledger.services` (never FSMAdminMixin, which
  saves the model itself), so every change is audited with the staff actor.
"""

from django.contrib import admin, messages

from compliance.admin_lists import PlatformShardFilter, TransactionAmountMixin
from core.errors import CofferError
from ledger.models import Asset, Entry, Hold, Posting, Transaction, Wallet
from ledger.services import wallet_activate, wallet_suspend


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "exponent", "kind", "organization")
    list_filter = ("kind",)
    search_fields = ("code", "name")
    list_select_related = ("organization",)

    def get_readonly_fields(self, request, obj=None):
        # The exponent of an asset in use must never change: stored amounts depend on it.
        return ("exponent", "organization") if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset", "kind", "purpose", "shard", "customer", "organization", "label", "balance", "held", "status")
    list_filter = (PlatformShardFilter, "status", "kind", "purpose", "asset")
    search_fields = ("id", "label", "customer__name", "customer__external_id", "customer__user__email", "organization__name")
    list_select_related = ("asset", "customer", "organization")
    actions = ("suspend_wallets", "activate_wallets")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("ledger.change_wallet") if obj is None else False

    def _run(self, request, queryset, service, verb: str) -> None:
        done = 0
        for wallet in queryset:
            try:
                service(wallet=wallet, actor=request.user, reason=f"admin action by {request.user}")
                done += 1
            except CofferError as exc:
                self.message_user(request, f"Wallet {wallet.pk}: {exc.message}", level=messages.WARNING)
        if done:
            self.message_user(request, f"{done} wallet(s) {verb}.", level=messages.SUCCESS)

    @admin.action(description="Suspend selected wallets", permissions=["change"])
    def suspend_wallets(self, request, queryset):
        self._run(request, queryset, wallet_suspend, "suspended")

    @admin.action(description="Activate selected wallets", permissions=["change"])
    def activate_wallets(self, request, queryset):
        self._run(request, queryset, wallet_activate, "activated")


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("id", "wallet", "direction", "amount", "balance_after", "operation_index", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet__asset")


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ("index", "kind", "source_wallet", "source_purpose", "destination_wallet", "destination_purpose", "amount", "asset")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_wallet__asset", "destination_wallet__asset", "asset")


@admin.register(Transaction)
class TransactionAdmin(TransactionAmountMixin, ReadOnlyAdmin):
    list_display = ("id", "type", "status", "amount_display", "customer", "organization", "counterparty_display", "reference", "failure_code", "created_at")
    list_filter = ("status", "type")
    search_fields = ("id", "reference", "description")
    list_select_related = ("organization", "customer")
    inlines = [PostingInline, EntryInline]
    date_hierarchy = "created_at"


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "wallet", "direction", "amount", "balance_after", "created_at")
    list_filter = ("direction",)
    search_fields = ("=transaction__id", "=wallet__id")
    list_select_related = ("transaction", "wallet__asset")


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "wallet", "transaction", "amount", "status", "reason", "created_at")
    list_filter = ("status",)
    list_select_related = ("wallet__asset", "transaction")
