"""Customers' KYC levels changed only through `customer_kyc_set` (reason, evidence, history,
audit): the customer admin registered by `accounts`, extended here."""


from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse

from accounts.models import Customer
from compliance.backoffice import customer_kyc_set
from compliance.models import KycChange
from core.admin import ReadOnlyTabularInline
from core.errors import CofferError


# --- Customers: KYC level changes with a reason and evidence, and their history ---------------------


class KycChangeInline(ReadOnlyTabularInline):
    model = KycChange
    fields = ["created_at", "from_level", "to_level", "reason", "evidence_reference", "actor"]
    verbose_name = "KYC level change"
    verbose_name_plural = "KYC history"


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
