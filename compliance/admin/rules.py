"""Fee and limit rules (ordinary admin saves, audited by `AuditedAdmin`), and risk rules edited as
one form per kind with a 7-day preview."""


from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import path

from compliance.models import FeeRule, LimitRule, RiskRule
from compliance.risk import risk_kinds
from compliance.rule_forms import params_form_for, risk_rule_preview
from core.reference import reference_currency
from ledger.models import Asset


# --- Fees, limits, risk rules, sanctions, review queue ------------------------------------------
# Rule edits are ordinary admin changes (the LogEntry signal puts them in the audit chain).
# Review decisions go through `review_approve` / `review_reject` only, from actions that ask for
# a reason on an intermediate page.


# A rule's currency: blank is the default for every asset, its amounts in the reference currency
# (LIMITS_REFERENCE_CURRENCY, converted at each movement's rate: core.reference); an asset code
# makes it that asset's override, in its own units, winning over the default.


class _RuleCurrencyForm(forms.ModelForm):
    def clean_currency(self) -> str:
        code = (self.cleaned_data.get("currency") or "").strip().upper()
        if code and not Asset.objects.filter(code=code).exists():
            raise forms.ValidationError(f"No asset {code}: name an existing asset, or leave blank for the reference-currency default.")
        return code


class FeeRuleForm(_RuleCurrencyForm):
    class Meta:
        model = FeeRule
        fields = "__all__"


class LimitRuleForm(_RuleCurrencyForm):
    class Meta:
        model = LimitRule
        fields = "__all__"


class _AmountsInMixin:
    @admin.display(description="amounts in", ordering="currency")
    def amounts_in(self, rule) -> str:
        return rule.currency or f"{reference_currency()} (reference, every asset)"


@admin.register(FeeRule)
class FeeRuleAdmin(_AmountsInMixin, admin.ModelAdmin):
    form = FeeRuleForm
    list_display = ["id", "movement_type", "destination_type", "amounts_in", "percent", "fixed", "minimum", "maximum", "active", "description"]
    list_filter = ["movement_type", "destination_type", "active"]
    list_editable = ["active"]
    search_fields = ["description", "currency"]


@admin.register(LimitRule)
class LimitRuleAdmin(_AmountsInMixin, admin.ModelAdmin):
    form = LimitRuleForm
    list_display = ["id", "kyc_level", "movement_type", "direction", "amounts_in", "single_limit", "daily_limit", "monthly_limit"]
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
