"""Sanctions lists in the back office: import (OFAC SDN, OpenSanctions, CSV), screening hits
decided with a reason, and the whitelist (clearances, read-only)."""


from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import transaction as db_transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from compliance.models import SanctionsClearance, SanctionsEntry, ScreeningHit
from compliance.sanctions import sanctions_import, screening_hit_decide
from compliance.tasks import sanctions_rescreen_task
from core.admin import ReadOnlyModelAdmin
from core.errors import CofferError


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
class SanctionsClearanceAdmin(ReadOnlyModelAdmin):
    """The whitelist: written by clearing a screening hit; read-only here."""

    list_display = ["id", "display_name", "entry", "reason", "cleared_by", "created_at"]
    search_fields = ["name", "display_name", "entry__name"]
    list_select_related = ["entry", "cleared_by"]
    readonly_fields = [f.name for f in SanctionsClearance._meta.fields]
