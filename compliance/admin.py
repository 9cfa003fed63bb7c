"""The compliance back office (SPEC 8): the audit log (read-only, "Verify chain", every row's
actor: a user, an API key or the system, filterable), fee/limit rules, risk rules edited as one
form per kind with a 7-day preview, sanctions lists (OFAC SDN, OpenSanctions, CSV; screening hits,
the whitelist), the review queue as a work queue with approve/reject on the case page and
four-eyes, and customers' KYC levels changed with a reason and kept as a history.

Writers are services: review decisions go through `review_approve` / `review_reject` (which call
the ledger's posting engine), KYC changes through `customer_kyc_set`, sanctions through
`compliance.sanctions`; rule edits are ordinary admin saves, audited by `AuditedAdmin`."""

import datetime as dt
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction as db_transaction
from django.db.models import BigIntegerField, Case, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.http import Http404, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import ApiKey, Customer
from compliance.backoffice import customer_kyc_set, review_needs_second_approval, transaction_summaries
from compliance.models import (
    AuditEvent,
    FeeRule,
    KycChange,
    LimitRule,
    ReviewCase,
    RiskRule,
    SanctionsClearance,
    SanctionsEntry,
    ScreeningHit,
)
from compliance.risk import review_approve, review_reject, risk_kinds
from compliance.rule_forms import params_form_for, risk_rule_preview
from compliance.sanctions import sanctions_import, screening_hit_decide
from compliance.services import audit_verify
from compliance.tasks import sanctions_rescreen_task
from core.errors import CofferError


def _report(modeladmin, request) -> None:
    result = audit_verify()
    if result["valid"]:
        modeladmin.message_user(
            request, f"Audit chain valid: {result['checked']} events checked; head {result['head_hash'] or '(empty)'}.", messages.SUCCESS
        )
    else:
        modeladmin.message_user(
            request,
            f"Audit chain BROKEN at event {result['first_invalid_id']} ({result['checked']} events checked): {result['reason']}.",
            messages.ERROR,
        )


def audit_actor_display(event: AuditEvent) -> str:
    """Who acted: a user's email, an organization's API key, or the system (a task, the
    sequencer, a webhook...). API-key callers are recorded with actor NULL and the key id in
    the data (`accounts.org_services.principal_audit_data`)."""
    if event.actor_id:
        return event.actor_label or f"user {event.actor_id}"
    api_key = (event.data or {}).get("api_key_id") if isinstance(event.data, dict) else None
    if api_key:
        return f"API key {api_key}"
    return event.actor_label or "system"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return [("staff", "Staff"), ("user", "Other users"), ("api_key", "API keys"), ("system", "System")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "staff":
            return queryset.filter(actor__is_staff=True)
        if value == "user":
            return queryset.filter(actor__isnull=False, actor__is_staff=False)
        if value == "api_key":
            return queryset.filter(actor__isnull=True, data__has_key="api_key_id")
        if value == "system":
            return queryset.filter(actor__isnull=True).exclude(data__has_key="api_key_id")
        return queryset


class ApiKeyFilter(admin.SimpleListFilter):
    title = "API key"
    parameter_name = "api_key"

    def lookups(self, request, model_admin):
        keys = ApiKey.objects.select_related("organization").order_by("-id")[:100]
        return [(k.key_id, f"{k.organization.name}: {k.name or k.key_id}") for k in keys]

    def queryset(self, request, queryset):
        return queryset.filter(data__api_key_id=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "sequence", "created_at", "action", "actor_display", "target_type", "target_id", "short_hash"]
    list_filter = [ActorKindFilter, ApiKeyFilter, "action", "target_type"]
    search_fields = ["action", "actor_label", "target_type", "target_id", "hash"]
    date_hierarchy = "created_at"
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["verify_chain"]
    change_list_template = "admin/compliance/auditevent/change_list.html"
    show_full_result_count = False

    @admin.display(description="actor", ordering="actor_label")
    def actor_display(self, obj: AuditEvent) -> str:
        return audit_actor_display(obj)

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEvent) -> str:
        return obj.hash[:12] if obj.hash else "(not linked yet)"

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


# --- Fees, limits, risk rules, sanctions, review queue ------------------------------------------
# Rule edits are ordinary admin changes (the LogEntry signal puts them in the audit chain).
# Review decisions go through `review_approve` / `review_reject` only, from actions that ask for
# a reason on an intermediate page.


@admin.register(FeeRule)
class FeeRuleAdmin(admin.ModelAdmin):
    list_display = ["id", "movement_type", "destination_type", "currency", "percent", "fixed", "minimum", "maximum", "active", "description"]
    list_filter = ["movement_type", "destination_type", "active"]
    list_editable = ["active"]
    search_fields = ["description", "currency"]


@admin.register(LimitRule)
class LimitRuleAdmin(admin.ModelAdmin):
    list_display = ["id", "kyc_level", "movement_type", "direction", "currency", "single_limit", "daily_limit", "monthly_limit"]
    list_filter = ["kyc_level", "movement_type", "direction"]
    search_fields = ["currency"]


# --- Risk rules: one form per kind, and a preview ------------------------------------------------


class RiskRuleForm(forms.ModelForm):
    """The rule's own fields; the kind's settings come from its params form (`rule_forms`),
    rendered and validated alongside (`RiskRuleAdmin`)."""

    class Meta:
        model = RiskRule
        fields = ["name", "action", "active", "description"]


def _kind_of(request, obj) -> str:
    return obj.kind if obj is not None else (request.GET.get("kind") or request.POST.get("kind") or "")


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    form = RiskRuleForm
    list_display = ["id", "name", "kind", "action", "active", "settings_summary", "description"]
    list_filter = ["kind", "action", "active"]
    list_editable = ["active"]
    change_form_template = "admin/compliance/riskrule/change_form.html"

    @admin.display(description="settings")
    def settings_summary(self, obj: RiskRule) -> str:
        return ", ".join(f"{k}={', '.join(v) if isinstance(v, list) else v}" for k, v in (obj.params or {}).items()) or "(defaults)"

    def get_urls(self):
        return [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="compliance_riskrule_preview"),
        ] + super().get_urls()

    def _params_form(self, request, obj, kind: str):
        form_class = params_form_for(kind)
        if request.method == "POST":
            return form_class(request.POST, prefix="params")
        return form_class(initial=form_class.initial_from(obj.params if obj is not None else {}), prefix="params")

    def add_view(self, request, form_url="", extra_context=None):
        kind = request.GET.get("kind") or request.POST.get("kind")
        if kind not in risk_kinds():
            context = {
                **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Add a risk rule: choose its kind",
                "kinds": [(k, params_form_for(k)) for k in risk_kinds()],
            }
            return TemplateResponse(request, "admin/compliance/riskrule/choose_kind.html", context)
        return super().add_view(request, form_url, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        kind = _kind_of(request, obj)
        params_form = getattr(request, "_params_form", None) or self._params_form(request, obj, kind)
        context.update(kind=kind, params_form=params_form, kind_title=params_form.title or kind, kind_summary=params_form.summary)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        # The change form's clean (get_form, below) validated the kind's settings; a
        # list_editable save (the "active" column) has none and keeps the params.
        params_form = getattr(request, "_params_form", None)
        if params_form is not None:
            obj.kind = obj.kind if change else _kind_of(request, None)
            obj.params = params_form.to_params()
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        base = super().get_form(request, obj, change, **kwargs)
        admin_self = self

        class WithParams(base):
            def clean(self):
                cleaned = super().clean()
                kind = _kind_of(request, obj)
                if kind not in risk_kinds() and obj is None:
                    raise forms.ValidationError(f"Unknown rule kind {kind!r}.")
                params_form = admin_self._params_form(request, obj, kind)
                request._params_form = params_form
                if not params_form.is_valid():
                    raise forms.ValidationError("Correct the rule's settings below.")
                return cleaned

        return WithParams

    def preview_view(self, request):
        """POST the change form's fields: how many movements of the last 7 days the rule, as
        filled in (saved or not), would have flagged. JSON."""
        if request.method != "POST" or not self.has_view_permission(request):
            raise PermissionDenied
        # Settings that do not validate are an answer about the form, like the admin's own form
        # pages (200 with the errors), not a failed request.
        kind = request.POST.get("kind", "")
        if kind not in risk_kinds():
            return JsonResponse({"valid": False, "errors": {"kind": [f"Unknown rule kind {kind!r}."]}})
        params_form = params_form_for(kind)(request.POST, prefix="params")
        if not params_form.is_valid():
            return JsonResponse({"valid": False, "errors": params_form.errors.get_json_data()})
        rule = RiskRule(name=request.POST.get("name", ""), kind=kind, params=params_form.to_params(), action=request.POST.get("action") or "review")
        preview = risk_rule_preview(rule=rule)
        return JsonResponse({"valid": True, "days": preview.days, "scanned": preview.scanned, "flagged": preview.flagged,
                             "truncated": preview.truncated, "examples": preview.examples})


# --- Sanctions: import, screening hits, the whitelist ---------------------------------------------


class SanctionsImportForm(forms.Form):
    file = forms.FileField(help_text="OFAC sdn.csv, OpenSanctions targets.simple.csv, or a CSV with a header row name,aliases,list_id.")
    format = forms.ChoiceField(
        choices=[("auto", "Detect from the file"), ("ofac_sdn", "OFAC SDN (sdn.csv)"), ("opensanctions", "OpenSanctions (targets.simple.csv)"),
                 ("coffer", "CSV: name,aliases,list_id")],
        initial="auto", required=False,
    )
    source = forms.CharField(max_length=100, required=False, help_text="The list's name; blank: OFAC SDN or OpenSanctions by format.")


@admin.register(SanctionsEntry)
class SanctionsEntryAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "source", "list_id", "active", "updated_at"]
    list_filter = ["source", "active"]
    search_fields = ["name", "list_id"]
    change_list_template = "admin/compliance/sanctionsentry/change_list.html"

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="compliance_sanctionsentry_import"),
        ] + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SanctionsImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                text = form.cleaned_data["file"].read().decode("utf-8-sig")
                with db_transaction.atomic():
                    result = sanctions_import(
                        text=text, source=form.cleaned_data["source"], actor=request.user, format=form.cleaned_data["format"] or "auto",
                    )
                    if result.changed:
                        db_transaction.on_commit(sanctions_rescreen_task.delay, robust=True)
            except UnicodeDecodeError:
                form.add_error("file", "The file must be UTF-8 text.")
            except CofferError as exc:
                form.add_error("file", exc.message)
            else:
                self.message_user(
                    request,
                    f"{result.source or 'Sanctions'} list imported ({result.format}): {result.created} created, {result.updated} updated, "
                    f"{result.deactivated} deactivated, {result.unchanged} unchanged."
                    + (" Customers and beneficiaries are being re-screened." if result.changed else ""),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:compliance_sanctionsentry_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "title": "Import a sanctions list"}
        return TemplateResponse(request, "admin/compliance/sanctionsentry/import.html", context)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)


def _reason_action(modeladmin, request, queryset, *, verb: str, action: str, describe, run):
    """An admin action that asks for a reason on an intermediate page, then calls `run(obj,
    reason)` (a service) for each selected object."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        done = 0
        for obj in queryset.order_by("id"):
            try:
                run(obj, form.cleaned_data["reason"])
                done += 1
            except CofferError as exc:
                modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
        if done:
            modeladmin.message_user(request, f"{done} {modeladmin.model._meta.verbose_name}(s): {verb}.", messages.SUCCESS)
        return None
    context = {
        **modeladmin.admin_site.each_context(request), "opts": modeladmin.model._meta, "title": verb.capitalize(), "verb": verb,
        "action": action, "objects": [(obj.pk, describe(obj)) for obj in queryset], "form": form, "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/compliance/reason_action.html", context)


@admin.register(ScreeningHit)
class ScreeningHitAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "subject", "name", "customer", "entry", "matched", "score", "created_at", "decided_by"]
    list_filter = ["status", "subject", "entry__source"]
    search_fields = ["name", "matched", "entry__name"]
    list_select_related = ["customer", "entry", "decided_by"]
    readonly_fields = [f.name for f in ScreeningHit._meta.fields]
    actions = ["clear_hits", "confirm_hits"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Clear as false positives (whitelist the names)", permissions=["change"])
    def clear_hits(self, request, queryset):
        return _reason_action(self, request, queryset, verb="cleared as false positives", action="clear_hits",
                              describe=lambda h: f"{h.name} ~ {h.entry} ({h.score})",
                              run=lambda h, reason: screening_hit_decide(hit_id=h.pk, actor=request.user, reason=reason, clear=True))

    @admin.action(description="Confirm the matches", permissions=["change"])
    def confirm_hits(self, request, queryset):
        return _reason_action(self, request, queryset, verb="confirmed", action="confirm_hits",
                              describe=lambda h: f"{h.name} ~ {h.entry} ({h.score})",
                              run=lambda h, reason: screening_hit_decide(hit_id=h.pk, actor=request.user, reason=reason, clear=False))


@admin.register(SanctionsClearance)
class SanctionsClearanceAdmin(admin.ModelAdmin):
    """The whitelist: written by clearing a screening hit; read-only here."""

    list_display = ["id", "display_name", "entry", "reason", "cleared_by", "created_at"]
    search_fields = ["name", "display_name", "entry__name"]
    list_select_related = ["entry", "cleared_by"]
    readonly_fields = [f.name for f in SanctionsClearance._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
            "cases": queryset.select_related("transaction", "customer"),
            "form": form,
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


# --- Customers: KYC level changes with a reason and evidence, and their history ---------------------


class KycChangeInline(admin.TabularInline):
    model = KycChange
    fields = ["created_at", "from_level", "to_level", "reason", "evidence_reference", "actor"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "KYC level change"
    verbose_name_plural = "KYC history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class KycChangeForm(forms.Form):
    level = forms.ChoiceField(label="New KYC level", choices=Customer.KycLevel.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), max_length=500, strip=True,
                             help_text="Why the level changes (recorded in the audit chain).")
    evidence_reference = forms.CharField(max_length=200, required=False, strip=True,
                                         help_text="Optional: where the evidence is kept (document id, case number).")


def _customer_kyc_admin(base: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """The customer admin (registered by accounts) with KYC changes made only through
    `customer_kyc_set` (reason, evidence, history, audit) and the user/organization links read-only."""

    class CustomerKycAdmin(base):
        change_form_template = "admin/compliance/customer/change_form.html"
        inlines = [*getattr(base, "inlines", []), KycChangeInline]
        raw_id_fields: list[str] = []

        def get_readonly_fields(self, request, obj=None):
            fields = list(super().get_readonly_fields(request, obj))
            extra = ["kyc_level", "user", "organization"] if obj is not None else []
            return fields + [f for f in extra if f not in fields]

        def get_urls(self):
            return [
                path("<int:customer_id>/kyc/", self.admin_site.admin_view(self.kyc_view), name="accounts_customer_kyc"),
            ] + super().get_urls()

        def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
            if obj is not None:
                context.update(
                    kyc_form=getattr(request, "_kyc_form", None) or KycChangeForm(initial={"level": obj.kyc_level}),
                    can_change_kyc=self.has_change_permission(request, obj),
                )
            return super().render_change_form(request, context, add, change, form_url, obj)

        def kyc_view(self, request, customer_id: int):
            customer = Customer.objects.filter(pk=customer_id).first()
            if customer is None:
                raise Http404
            if request.method != "POST" or not self.has_change_permission(request, customer):
                raise PermissionDenied
            form = KycChangeForm(request.POST)
            if form.is_valid():
                try:
                    change = customer_kyc_set(
                        customer_id=customer.pk, level=form.cleaned_data["level"], reason=form.cleaned_data["reason"],
                        evidence_reference=form.cleaned_data["evidence_reference"], actor=request.user,
                    )
                except CofferError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(request, f"KYC level changed from {change.from_level} to {change.to_level}.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:accounts_customer_change", args=[customer.pk]))
            request._kyc_form = form
            self.message_user(request, "The KYC level was not changed: correct the form below.", messages.ERROR)
            request.method = "GET"  # render the customer page with the form's errors; the POST was ours, not the change form's
            return self.change_view(request, str(customer.pk))

    CustomerKycAdmin.__name__ = CustomerKycAdmin.__qualname__ = base.__name__
    return CustomerKycAdmin


if admin.site.is_registered(Customer):
    _registered = type(admin.site._registry[Customer])
    admin.site.unregister(Customer)
    admin.site.register(Customer, _customer_kyc_admin(_registered))
