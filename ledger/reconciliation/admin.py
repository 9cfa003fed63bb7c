"""Reconciliations in the back office: read the results, resolve unmatched lines.

Invariants:
* Reconciliations and their lines are read-only here; the only changes are the two line actions,
  which call `ledger.reconciliation.services` (audited with the staff actor) and need
  `ledger.change_reconciliation`:
  - "Match by hand": ONE unmatched statement line, paired with a ledger transaction picked from
    the reconciliation's unmatched ledger lines (or any transaction id on the wallet), reason
    required;
  - "Book an adjustment": each selected unmatched line gets an `adjustment` transaction (issue
    for money in, redeem for money out) through the money path, reason required.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core.errors import CofferError
from ledger.reconciliation.models import Reconciliation, ReconciliationLine
from ledger.reconciliation.services import reconciliation_line_match
from wallets.movements.adjustments import reconciliation_line_adjust

Line = ReconciliationLine


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LineInline(admin.TabularInline):
    model = Line
    fk_name = "reconciliation"
    extra = 0
    can_delete = False
    fields = ("line_link", "kind", "status", "method", "line_number", "date", "amount", "reference", "transaction",
              "transaction_amount", "adjustment_transaction", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Line")
    def line_link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:ledger_reconciliationline_change", args=[obj.pk]), obj.pk)


@admin.register(Reconciliation)
class ReconciliationAdmin(_ReadOnly):
    list_display = ("id", "wallet", "organization", "status", "source_format", "period_start", "period_end", "balance_difference",
                    "adjustments_total", "created_at")
    list_filter = ("status", "source_format")
    search_fields = ("=id", "=wallet__id", "source_digest", "statement_id")
    list_select_related = ("wallet__asset", "organization")
    inlines = [LineInline]

    def has_change_permission(self, request, obj=None):
        return False


class MatchForm(forms.Form):
    transaction = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                         help_text="An unmatched ledger transaction of this reconciliation.")
    transaction_id = forms.IntegerField(required=False, min_value=1, help_text="Or any transaction id with entries on the wallet.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)

    def __init__(self, *args, choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["transaction"].choices = [("", "---------"), *choices]

    def clean(self):
        data = super().clean()
        picked = data.get("transaction") or data.get("transaction_id")
        if not picked:
            raise forms.ValidationError("Pick a transaction or enter its id.")
        data["picked"] = picked
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)


@admin.register(Line)
class ReconciliationLineAdmin(_ReadOnly):
    list_display = ("id", "reconciliation", "kind", "status", "method", "line_number", "date", "amount", "reference",
                    "transaction", "transaction_amount", "adjustment_transaction", "resolved_by")
    list_filter = ("status", "kind", "method")
    search_fields = ("=reconciliation__id", "reference", "description", "=transaction__id")
    list_select_related = ("reconciliation", "transaction", "adjustment_transaction", "resolved_by")
    actions = ("match_by_hand", "book_adjustment")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("ledger.change_reconciliation") if obj is None else False

    def _page(self, request, lines, form, *, action: str, title: str, explanation: str, submit: str):
        return TemplateResponse(request, "admin/ledger/reconciliationline/resolve.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title, "lines": lines, "form": form,
            "action": action, "action_checkbox_name": ACTION_CHECKBOX_NAME, "explanation": explanation, "submit": submit,
        })

    @admin.action(description="Match by hand (one statement line; asks for the transaction and a reason)", permissions=["change"])
    def match_by_hand(self, request, queryset):
        lines = list(queryset.order_by("id"))
        if len(lines) != 1 or lines[0].kind != Line.Kind.EXTERNAL or lines[0].status != Line.Status.UNMATCHED:
            self.message_user(request, "Select exactly one unmatched statement line.", level=messages.ERROR)
            return None
        line = lines[0]
        candidates = Line.objects.filter(reconciliation_id=line.reconciliation_id, kind=Line.Kind.LEDGER, status=Line.Status.UNMATCHED)
        choices = [(c.transaction_id, f"#{c.transaction_id}: {c.transaction_amount.normalize():f} on {c.transaction_at:%Y-%m-%d} {c.reference}")
                   for c in candidates.order_by("transaction_at")]
        form = MatchForm(request.POST if "apply" in request.POST else None, choices=choices)
        if "apply" in request.POST and form.is_valid():
            try:
                reconciliation_line_match(line_id=line.pk, transaction_id=form.cleaned_data["picked"], actor=request.user,
                                          reason=form.cleaned_data["reason"])
                self.message_user(request, f"Line {line.pk} matched with transaction {form.cleaned_data['picked']}.", level=messages.SUCCESS)
            except CofferError as exc:
                self.message_user(request, f"Line {line.pk}: {exc.message}", level=messages.ERROR)
            return None
        return self._page(request, lines, form, action="match_by_hand", title="Match a statement line by hand", submit="Match",
                          explanation="Pair this statement line with a ledger transaction on the reconciled wallet. The reason is recorded.")

    @admin.action(description="Book an adjustment (asks for a reason)", permissions=["change"])
    def book_adjustment(self, request, queryset):
        lines = list(queryset.order_by("id"))
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done = 0
            for line in lines:
                try:
                    reconciliation_line_adjust(line_id=line.pk, actor=request.user, reason=form.cleaned_data["reason"])
                    done += 1
                except CofferError as exc:
                    self.message_user(request, f"Line {line.pk}: {exc.message}", level=messages.ERROR)
            if done:
                self.message_user(request, f"{done} adjustment(s) booked.", level=messages.SUCCESS)
            return None
        return self._page(request, lines, form, action="book_adjustment", title="Book adjustments", submit="Book",
                          explanation=("Each line gets an adjustment transaction through the money path: money in on the statement "
                                       "(or out in the ledger only) is issued to the wallet, money out redeemed from it. A reason is "
                                       "required and recorded on the transaction and in the audit chain."))
