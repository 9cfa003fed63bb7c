"""The audit log in the back office: read-only (no add, change or delete, for anyone), with a
"Verify chain" button (a view) and the same check as an admin action."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, Case, F, IntegerField, Q, Value, When
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from compliance.models import AuditEvent, FeeRule, LimitRule, ReviewCase, RiskRule, SanctionsEntry
from compliance.risk import review_approve, review_reject, risk_kinds
from compliance.sanctions import sanctions_import
from compliance.services import audit_verify
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


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "sequence", "created_at", "action", "actor_label", "target_type", "target_id", "short_hash"]
    list_filter = ["action", "target_type"]
    search_fields = ["action", "actor_label", "target_type", "target_id", "hash"]
    date_hierarchy = "created_at"
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["verify_chain"]
    change_list_template = "admin/compliance/auditevent/change_list.html"
    show_full_result_count = False

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


class RiskRuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=())
    params = forms.JSONField(required=False, initial=dict, help_text="The kind's settings as a JSON object (see compliance.risk).")

    class Meta:
        model = RiskRule
        fields = ["name", "kind", "params", "action", "active", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kinds = risk_kinds()
        current = getattr(self.instance, "kind", "")
        self.fields["kind"].choices = [(k, k) for k in kinds] + ([(current, f"{current} (not registered)")] if current and current not in kinds else [])

    def clean_params(self):
        value = self.cleaned_data.get("params")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("A JSON object, e.g. {\"threshold\": \"10000\"}.")
        return value


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    form = RiskRuleForm
    list_display = ["id", "name", "kind", "action", "active", "params", "description"]
    list_filter = ["kind", "action", "active"]
    list_editable = ["active"]


class SanctionsImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row: name,aliases,list_id (aliases separated by ';' or '|').")
    source = forms.CharField(max_length=100, required=False, help_text="The list's name, e.g. OFAC SDN.")


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
                result = sanctions_import(text=text, source=form.cleaned_data["source"], actor=request.user)
            except UnicodeDecodeError:
                form.add_error("file", "The file must be UTF-8 text.")
            except CofferError as exc:
                form.add_error("file", exc.message)
            else:
                self.message_user(request, f"Sanctions list imported: {result.created} created, {result.updated} updated.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:compliance_sanctionsentry_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "title": "Import a sanctions list"}
        return TemplateResponse(request, "admin/compliance/sanctionsentry/import.html", context)


class ReviewDecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=500, strip=True)


@admin.register(ReviewCase)
class ReviewCaseAdmin(admin.ModelAdmin):
    """The review queue: open cases first (oldest first), then decided ones (newest first)."""

    list_display = ["id", "status", "transaction_link", "transaction_type", "customer", "rule_kind", "reason", "created_at", "decided_by", "decided_at"]
    list_filter = ["status", "rule_kind"]
    search_fields = ["reason", "decision_reason", "transaction__id", "customer__name", "customer__external_id"]
    list_select_related = ["transaction", "customer", "decided_by", "rule"]
    readonly_fields = [f.name for f in ReviewCase._meta.fields]
    actions = ["approve_cases", "reject_cases"]

    def get_ordering(self, request):
        is_open = Q(status=ReviewCase.Status.OPEN)
        return [
            Case(When(is_open, then=Value(0)), default=Value(1), output_field=IntegerField()).asc(),
            Case(When(is_open, then=F("id")), default=F("id") * -1, output_field=BigIntegerField()).asc(),
        ]

    @admin.display(description="transaction", ordering="transaction_id")
    def transaction_link(self, obj: ReviewCase) -> str:
        return f"#{obj.transaction_id} ({obj.transaction.status})"

    @admin.display(description="type")
    def transaction_type(self, obj: ReviewCase) -> str:
        return obj.transaction.type

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _decide(self, request, queryset, *, approve: bool):
        verb = "approve" if approve else "reject"
        form = ReviewDecisionForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            service = review_approve if approve else review_reject
            done, failed = 0, []
            for case in queryset.order_by("id"):
                try:
                    decided = service(case=case, actor=request.user, reason=form.cleaned_data["reason"])
                except CofferError as exc:
                    failed.append(f"case {case.pk}: {exc.message}")
                    continue
                done += 1
                if approve and decided.transaction.status != "completed":
                    failed.append(f"case {case.pk}: approved, but the ledger refused the posting ({decided.transaction.failure_code})")
            if done:
                self.message_user(request, f"{done} case(s) {verb}d.", messages.SUCCESS)
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
