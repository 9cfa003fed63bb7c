"""The review queue as a work queue: summaries, filters by rule, age and amount band, the SLA,
and approve/reject on the case page with four-eyes (`review_approve` / `review_reject`, which
call the ledger's posting engine)."""

import datetime as dt
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, Case, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.http import Http404, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from compliance.backoffice import review_needs_second_approval, transaction_summaries
from compliance.models import ReviewCase, RiskRule
from wallets.review import review_approve, review_reject
from core.errors import CofferError


# --- The review queue --------------------------------------------------------------------------------


class SummariesChangeList(ChangeList):
    """Reads the page's amounts, currencies and counterparties in three queries
    (`compliance.backoffice.transaction_summaries`) and hangs them on the rows."""

    transaction_attr = "transaction"

    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list)
        if self.transaction_attr:
            transactions = [getattr(row, self.transaction_attr) for row in rows]
        else:
            transactions = rows
        summaries = transaction_summaries(transactions)
        for row, tx in zip(rows, transactions):
            row.movement_summary = summaries.get(tx.pk)


def _summary(obj):
    summary = getattr(obj, "movement_summary", None)
    if summary is None:
        tx = getattr(obj, "transaction", obj)
        summary = transaction_summaries([tx]).get(tx.pk)
        obj.movement_summary = summary
    return summary


def _amount_expression():
    """The case's amount: its transaction's first posting (ledger.models.Posting, index 0)."""
    from ledger.models import Posting

    return Subquery(Posting.objects.filter(transaction_id=OuterRef("transaction_id"), index=0).values("amount")[:1])


class RuleFilter(admin.SimpleListFilter):
    title = "rule that fired"
    parameter_name = "rule"

    def lookups(self, request, model_admin):
        return [(str(r.pk), str(r.name)) for r in RiskRule.objects.order_by("id")]

    def queryset(self, request, queryset):
        return queryset.filter(rule_id=self.value()) if self.value() else queryset


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [("lt1h", "Under 1 hour"), ("1h-24h", "1 to 24 hours"), ("gt24h", "Over 24 hours"), ("sla", "Past the SLA")]

    def queryset(self, request, queryset):
        now = timezone.now()
        value = self.value()
        if value == "lt1h":
            return queryset.filter(created_at__gt=now - dt.timedelta(hours=1))
        if value == "1h-24h":
            return queryset.filter(created_at__lte=now - dt.timedelta(hours=1), created_at__gt=now - dt.timedelta(hours=24))
        if value == "gt24h":
            return queryset.filter(created_at__lte=now - dt.timedelta(hours=24))
        if value == "sla":
            return queryset.filter(status=ReviewCase.Status.OPEN, created_at__lte=now - dt.timedelta(hours=_sla_hours()))
        return queryset


AMOUNT_BANDS = [("0-1000", Decimal(0), Decimal(1000)), ("1000-10000", Decimal(1000), Decimal(10_000)),
                ("10000-100000", Decimal(10_000), Decimal(100_000)), ("100000-", Decimal(100_000), None)]


class AmountBandFilter(admin.SimpleListFilter):
    title = "amount (major units)"
    parameter_name = "amount"

    def lookups(self, request, model_admin):
        return [(key, f"{low:,} to {high:,}" if high else f"{low:,} and more") for key, low, high in AMOUNT_BANDS]

    def queryset(self, request, queryset):
        band = next((b for b in AMOUNT_BANDS if b[0] == self.value()), None)
        if band is None:
            return queryset
        _, low, high = band
        queryset = queryset.annotate(held_amount=_amount_expression()).filter(held_amount__gte=low)
        return queryset.filter(held_amount__lt=high) if high is not None else queryset


def _sla_hours() -> float:
    return settings.REVIEW_SLA_HOURS  # declared once, in config/settings/base.py


def _age_text(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60:02d}" if hours < 48 else f"{hours // 24} d {hours % 24} h"


@admin.register(ReviewCase)
class ReviewCaseAdmin(admin.ModelAdmin):
    """The review queue, a work queue: open cases first (oldest first), then decided ones (newest
    first); amount, customer and KYC level, counterparty, rule and age (SLA colour) on each row;
    approve or reject on the case page with a reason (four-eyes above the configured amount)."""

    list_display = ["id", "status", "age", "amount", "customer_kyc", "counterparty", "rule_name", "reason", "four_eyes", "decided_by"]
    list_display_links = ["id", "status"]
    list_filter = ["status", RuleFilter, AgeFilter, AmountBandFilter]
    search_fields = ["reason", "decision_reason", "transaction__id", "customer__name", "customer__external_id"]
    list_select_related = ["transaction", "customer", "decided_by", "rule", "first_approved_by"]
    readonly_fields = ["amount", "customer_kyc", "counterparty", "age", "four_eyes", *[f.name for f in ReviewCase._meta.fields]]
    actions = ["approve_cases", "reject_cases"]
    change_form_template = "admin/compliance/reviewcase/change_form.html"
    change_list_template = "admin/compliance/reviewcase/change_list.html"

    def get_changelist(self, request, **kwargs):
        return SummariesChangeList

    def get_ordering(self, request):
        is_open = Q(status=ReviewCase.Status.OPEN)
        return [
            Case(When(is_open, then=Value(0)), default=Value(1), output_field=IntegerField()).asc(),
            Case(When(is_open, then=F("id")), default=F("id") * -1, output_field=BigIntegerField()).asc(),
        ]

    @admin.display(description="amount")
    def amount(self, obj: ReviewCase) -> str:
        summary = _summary(obj)
        return summary.amount_display if summary else ""

    @admin.display(description="customer (KYC)")
    def customer_kyc(self, obj: ReviewCase) -> str:
        if obj.customer is None:
            return "-"
        return format_html('{} <span class="kyc kyc-{}">{}</span>', str(obj.customer), obj.customer.kyc_level, obj.customer.get_kyc_level_display())

    @admin.display(description="counterparty")
    def counterparty(self, obj: ReviewCase) -> str:
        summary = _summary(obj)
        return summary.counterparty if summary else ""

    @admin.display(description="rule", ordering="rule__name")
    def rule_name(self, obj: ReviewCase) -> str:
        return obj.rule.name if obj.rule_id else (obj.rule_kind or "-")

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: ReviewCase) -> str:
        end = obj.decided_at if obj.status != ReviewCase.Status.OPEN and obj.decided_at else timezone.now()
        delta = end - obj.created_at
        sla = dt.timedelta(hours=_sla_hours())
        if obj.status != ReviewCase.Status.OPEN:
            level = "done"
        elif delta >= sla:
            level = "late"
        elif delta >= sla / 2:
            level = "due"
        else:
            level = "ok"
        return format_html('<span class="sla sla-{}" title="SLA {} h">{}</span>', level, f"{_sla_hours():g}", _age_text(delta))

    @admin.display(description="four-eyes")
    def four_eyes(self, obj: ReviewCase) -> str:
        if obj.first_approved_by_id:
            return f"1st approval: {obj.first_approved_by}" if obj.status == ReviewCase.Status.OPEN else f"with {obj.first_approved_by}"
        return "needed" if obj.status == ReviewCase.Status.OPEN and review_needs_second_approval(obj, _summary(obj)) else "-"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path("<int:case_id>/decide/", self.admin_site.admin_view(self.decide_view), name="compliance_reviewcase_decide"),
        ] + super().get_urls()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                case=obj,
                can_decide=obj.status == ReviewCase.Status.OPEN and self.has_change_permission(request, obj),
                needs_second=review_needs_second_approval(obj) if obj.status == ReviewCase.Status.OPEN else False,
                decision_form=getattr(request, "_decision_form", None) or ReviewDecisionForm(),
                # Every field is read-only: the decision buttons are the only way to change a case.
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False, show_delete=False,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def decide_view(self, request, case_id: int):
        """The case page's Approve / Reject buttons: one case, a reason, the review services."""
        case = ReviewCase.objects.filter(pk=case_id).first()
        if case is None:
            raise Http404
        if request.method != "POST" or not self.has_change_permission(request, case):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision not in ("approve", "reject"):
            return HttpResponseBadRequest("decision: approve or reject")
        form = ReviewDecisionForm(request.POST)
        page = reverse("admin:compliance_reviewcase_change", args=[case.pk])
        if not form.is_valid():
            request._decision_form = form
            self.message_user(request, "A reason is required to approve or reject a case.", messages.ERROR)
            request.method = "GET"  # render the case page with the form's errors; the POST was ours, not the change form's
            return self.change_view(request, str(case.pk))
        service = review_approve if decision == "approve" else review_reject
        try:
            decided = service(case=case, actor=request.user, reason=form.cleaned_data["reason"])
        except CofferError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(page)
        if decided.status == ReviewCase.Status.OPEN:
            self.message_user(request, f"First approval recorded for case {case.pk}: another staff member must approve it (four-eyes).", messages.WARNING)
        elif decision == "approve" and decided.transaction.status != "completed":
            self.message_user(request, f"Case {case.pk} approved, but the ledger refused the posting ({decided.transaction.failure_code}).", messages.ERROR)
        else:
            self.message_user(request, f"Case {case.pk} {decided.status}.", messages.SUCCESS)
        return HttpResponseRedirect(page)

    def _decide(self, request, queryset, *, approve: bool):
        verb = "approve" if approve else "reject"
        form = ReviewDecisionForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            service = review_approve if approve else review_reject
            done, waiting, failed = 0, 0, []
            for case in queryset.order_by("id"):
                try:
                    decided = service(case=case, actor=request.user, reason=form.cleaned_data["reason"])
                except CofferError as exc:
                    failed.append(f"case {case.pk}: {exc.message}")
                    continue
                if decided.status == ReviewCase.Status.OPEN:
                    waiting += 1
                    continue
                done += 1
                if approve and decided.transaction.status != "completed":
                    failed.append(f"case {case.pk}: approved, but the ledger refused the posting ({decided.transaction.failure_code})")
            if done:
                self.message_user(request, f"{done} case(s) {verb}d.", messages.SUCCESS)
            if waiting:
                self.message_user(request, f"{waiting} case(s) have their first approval: another staff member must approve them (four-eyes).", messages.WARNING)
            for line in failed:
                self.message_user(request, line, messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{verb.capitalize()} review cases",
            "verb": verb,
            "action": f"{verb}_cases",
            "objects": queryset.select_related("transaction", "customer"),
            "form": form,
            "submit": verb.capitalize(),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/compliance/reviewcase/decide.html", context)

    @admin.action(description="Approve selected cases (post the transactions)", permissions=["change"])
    def approve_cases(self, request, queryset):
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected cases (release the holds)", permissions=["change"])
    def reject_cases(self, request, queryset):
        return self._decide(request, queryset, approve=False)


class ReviewDecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)
