"""The ledger in the compliance back office (SPEC 8).

Invariants:
* Assets are editable (never an exponent in use); wallets, transactions (with their postings
  and entries), entries and holds are read-only.
* Wallet suspend/activate are actions that call `ledger.services` (never FSMAdminMixin, which
  saves the model itself), so every change is audited with the staff actor.
* "Reverse" on transactions asks for a reason (and optionally an amount) on an intermediate
  page and calls `wallets.movements.reversals.staff_transaction_reverse` for each: the same service as the
  API, so a customer deposit is charged back through the money path, audited with the staff
  actor. Needs `ledger.change_transaction`.
* A wallet's page links to its statement (PDF, CSV): the same documents as the API's
  `GET /wallets/{id}/statement` (`ledger.statements`), for staff who may view the wallet.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from compliance.admin_lists import PlatformShardFilter, TransactionAmountMixin
from core.errors import CofferError
from ledger.models import ArchivedMonth, ArchivedTotal, Asset, AuthorizationHold, Entry, Hold, Posting, Transaction, Wallet
from core.admin import ReadOnlyModelAdmin, ReadOnlyTabularInline
from ledger.reconciliation import admin as reconciliation_admin  # noqa: F401  (registers its admin pages)
from wallets.movements.reversals import staff_transaction_reverse
from ledger.services import wallet_activate, wallet_suspend


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
class WalletAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "asset", "kind", "purpose", "shard", "customer", "organization", "label", "balance", "held", "status")
    list_filter = (PlatformShardFilter, "status", "kind", "purpose", "livemode", "asset")
    search_fields = ("id", "label", "customer__name", "customer__external_id", "customer__user__email", "organization__name")
    list_select_related = ("asset", "customer", "organization")
    actions = ("suspend_wallets", "activate_wallets")
    readonly_fields = ("statement",)

    @admin.display(description="Statement")
    def statement(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        url = reverse("admin:ledger_wallet_statement", args=[obj.pk])
        return format_html('<a href="{}?format=pdf">PDF</a> · <a href="{}?format=csv">CSV</a> (add from= and to=, ISO 8601, for a period)', url, url)

    def get_urls(self):
        return [
            path("<int:wallet_id>/statement/", self.admin_site.admin_view(self.statement_view), name="ledger_wallet_statement"),
            *super().get_urls(),
        ]

    def statement_view(self, request, wallet_id: int):
        from ledger.apis.statements import statement_response
        from ledger.selectors import wallets_with_owners
        from ledger.statements import format_parse, period_parse, statement_build

        wallet = wallets_with_owners("w.id = %s", [wallet_id]).get(wallet_id)
        if wallet is None:
            raise Http404("No such wallet.")
        if not self.has_view_permission(request, wallet):
            raise PermissionDenied
        try:
            period, fmt = period_parse(request.GET), format_parse(request.GET, default="pdf")
            if fmt == "json":
                raise CofferError("format: csv or pdf.")
            return statement_response([statement_build(wallet=wallet, period=period)], fmt=fmt,
                                      stem=f"statement-wallet-{wallet.pk}", title="Statement")
        except CofferError as exc:
            if exc.status >= 500:
                raise
            return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")

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


class EntryInline(ReadOnlyTabularInline):
    model = Entry
    fields = ("id", "wallet", "direction", "amount", "balance_after", "operation_index", "created_at")
    related = ("wallet__asset",)


class PostingInline(ReadOnlyTabularInline):
    model = Posting
    fields = ("index", "kind", "source_wallet", "source_purpose", "destination_wallet", "destination_purpose", "amount", "asset")
    related = ("source_wallet__asset", "destination_wallet__asset", "asset")


class ReversalForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)
    amount = forms.CharField(required=False, max_length=60, strip=True,
                             help_text="Part of the amount (the first operation's) to reverse; empty: all that remains.")
    include_fees = forms.BooleanField(required=False, initial=True, help_text="Reverse the fee legs with the rest.")


@admin.register(Transaction)
class TransactionAdmin(TransactionAmountMixin, ReadOnlyModelAdmin):
    list_display = ("id", "type", "status", "amount_display", "customer", "organization", "counterparty_display", "reference",
                    "reversed_amount", "reversal_of", "failure_code", "created_at")
    list_filter = ("status", "type", "livemode")
    search_fields = ("id", "reference", "description")
    list_select_related = ("organization", "customer", "reversal_of")
    inlines = [PostingInline, EntryInline]
    date_hierarchy = "created_at"
    actions = ("reverse_transactions",)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("ledger.change_transaction") if obj is None else False

    @admin.action(description="Reverse selected transactions (chargeback; asks for a reason)", permissions=["change"])
    def reverse_transactions(self, request, queryset):
        form = ReversalForm(request.POST if "apply" in request.POST else None, initial={"include_fees": True})
        if "apply" in request.POST and form.is_valid():
            done = 0
            for tx in queryset.order_by("id"):
                try:
                    staff_transaction_reverse(
                        user=request.user, transaction_id=tx.pk, reason=form.cleaned_data["reason"],
                        amount=form.cleaned_data["amount"] or None, include_fees=form.cleaned_data["include_fees"],
                    )
                    done += 1
                except CofferError as exc:
                    self.message_user(request, f"Transaction {tx.pk}: {exc.message}", level=messages.ERROR)
            if done:
                self.message_user(request, f"{done} transaction(s) reversed.", level=messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reverse transactions",
            "objects": queryset.order_by("id"),
            "form": form,
            "submit": "Reverse",
            "action": "reverse_transactions",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/ledger/transaction/reverse.html", context)


@admin.register(AuthorizationHold)
class AuthorizationHoldAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "organization", "status", "source_wallet", "destination_wallet", "amount", "captured_amount", "reference",
                    "expires_at", "closed_at")
    list_filter = ("status", "livemode")
    search_fields = ("=id", "reference")
    list_select_related = ("organization", "source_wallet__asset", "destination_wallet__asset")


@admin.register(Entry)
class EntryAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "transaction", "wallet", "direction", "amount", "balance_after", "created_at")
    list_filter = ("direction",)
    search_fields = ("=transaction__id", "=wallet__id")
    list_select_related = ("transaction", "wallet__asset")


class ArchivedTotalInline(ReadOnlyTabularInline):
    model = ArchivedTotal
    fields = ("wallet", "asset", "entry_count", "debit_sum", "credit_sum", "first_entry_id", "last_entry_id", "last_balance_after")
    related = ("wallet", "asset")


@admin.register(ArchivedMonth)
class ArchivedMonthAdmin(ReadOnlyModelAdmin):
    """Months of entries archived by `archive_entries` (ledger.archive): where the file is, its
    checksum, and the per-wallet totals check_ledger counts in their place."""

    list_display = ("month", "partition", "status", "row_count", "sha256", "path", "dumped_at", "archived_at")
    list_filter = ("status",)
    inlines = [ArchivedTotalInline]


@admin.register(Hold)
class HoldAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "wallet", "transaction", "amount", "status", "reason", "created_at")
    list_filter = ("status",)
    list_select_related = ("wallet__asset", "transaction")
