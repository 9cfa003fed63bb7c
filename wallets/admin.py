"""Read-mostly admin for payouts, exchange quotes and schedules: rows change only through the
services (`payout_send` / `payout_settle`, `exchange_execute`, `wallets.schedules`); the one action
asks the provider about a sent payout now (`payout_settle`: the provider is called with no
transaction open). Beneficiaries are shown masked only (wallets.beneficiaries)."""

from django.contrib import admin, messages

from core.admin import ReadOnlyModelAdmin
from wallets.beneficiaries import beneficiaries_matching
from wallets.models import ExchangeQuote, Payout, Schedule, ScheduleOccurrence
from wallets.movements.payouts import payout_settle

_SEALED = ["beneficiary_name_encrypted", "destination_encrypted", "beneficiary_hash", "account_hash"]


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    """The beneficiary is shown masked only; the search finds a payout by its exact IBAN/account or
    beneficiary name through their keyed hashes (wallets.beneficiaries), never by decrypting."""

    list_display = ["id", "status", "amount", "currency", "customer", "beneficiary_name_masked", "destination_type", "fee", "transaction_id", "created_at", "settled_at"]
    list_filter = ["status", "destination_type", "currency", "provider"]
    search_fields = ["reference", "provider_reference", "transaction__id"]
    search_help_text = "Reference, provider reference, transaction id, or an exact IBAN / account / beneficiary name."
    list_select_related = ["customer", "transaction"]
    exclude = _SEALED
    readonly_fields = [f.name for f in Payout._meta.fields if f.name not in _SEALED]
    actions = ["check_now"]

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            results = results | beneficiaries_matching(queryset, name=term) | beneficiaries_matching(queryset, iban_or_account=term)
        return results, may_have_duplicates

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Ask the provider now (sent payouts)")
    def check_now(self, request, queryset):
        moved = 0
        for payout in queryset.filter(status=Payout.Status.SENT):
            result = payout_settle(payout_id=payout.pk)
            moved += int(result is not None and result.status != Payout.Status.SENT)
        self.message_user(request, f"{moved} payout(s) settled.", messages.INFO)


@admin.register(ExchangeQuote)
class ExchangeQuoteAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "customer", "source_amount", "source_currency", "destination_amount", "destination_currency", "rate", "status", "expires_at"]
    list_filter = ["status", "source_currency", "destination_currency"]
    list_select_related = ["customer"]
    readonly_fields = [f.name for f in ExchangeQuote._meta.fields]


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyModelAdmin):
    """A scheduled withdrawal's beneficiary is shown masked only, and found by its exact IBAN /
    account or name through the keyed hashes, as a payout's (wallets.beneficiaries)."""

    list_display = ["id", "status", "user", "organization", "source_wallet", "destination_wallet", "beneficiary_name_masked", "amount", "asset",
                    "rule", "next_run_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["=id", "=source_wallet__id", "user__email"]
    search_help_text = "Schedule id, source wallet id, user e-mail, or an exact IBAN / account / beneficiary name."
    list_select_related = ["user", "organization", "source_wallet__asset", "destination_wallet__asset", "asset"]
    exclude = _SEALED

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            results = results | beneficiaries_matching(queryset, name=term) | beneficiaries_matching(queryset, iban_or_account=term)
        return results, may_have_duplicates


@admin.register(ScheduleOccurrence)
class ScheduleOccurrenceAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "schedule", "scheduled_for", "status", "attempts", "failure_code", "transaction", "next_attempt_at"]
    list_filter = ["status", "failure_code"]
    search_fields = ["=schedule__id", "idempotency_key"]
    list_select_related = ["schedule", "transaction"]
