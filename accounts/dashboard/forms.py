"""Forms of the merchant dashboard. They validate what a person typed and hand it to the
existing services and selectors; none of them saves a model.

Amounts stay strings until `payorder_create` parses them with `core.money.parse_amount` (never a
float); date filters are whole UTC days, a `to` date including that whole day.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import QuerySet

from accounts.identity.login import user_authenticate
from accounts.identity.throttles import client_address
from accounts.models import WebhookDelivery
from accounts.orgs.scopes import DEFAULT_SCOPES, SCOPES
from accounts.webhooks import EVENT_TYPES
from core.errors import AuthenticationFailed, CofferError, ValidationFailed
from ledger.models import Transaction
from payorders.models import PayOrder


class DashboardLoginForm(AuthenticationForm):
    """Django's login form, checked by `accounts.identity.login.user_authenticate` so the dashboard
    shares the API's failed-login lockout and audit trail."""

    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))

    def clean(self):
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if email and password:
            try:
                self.user_cache = user_authenticate(
                    email=email, password=password, client_ip=client_address(self.request) if self.request else ""
                )
            except AuthenticationFailed as exc:
                raise forms.ValidationError(exc.message, code="invalid_login") from None
            except ValidationFailed as exc:
                raise forms.ValidationError(exc.message, code="invalid") from None
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


def add_service_errors(form: forms.Form, error: CofferError) -> None:
    """Put a service's ValidationFailed on the form: per field where the details name fields
    (`{"fields": {name: [..]}}`, or `{name: [..]}`), else as a form-wide error."""
    details = error.details or {}
    fields = details.get("fields") if isinstance(details.get("fields"), dict) else details
    renamed = getattr(form, "SERVICE_FIELDS", {})
    placed = False
    for name, messages in (fields or {}).items():
        name = renamed.get(name, name)
        if name in form.fields:
            for message in messages if isinstance(messages, (list, tuple)) else [messages]:
                form.add_error(name, str(message))
            placed = True
    if not placed:
        form.add_error(None, error.message)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)


class DateRangeMixin:
    """`date_from` / `date_to` (whole UTC days, both inclusive)."""

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filter_dates(self, queryset: QuerySet, field: str = "created_at") -> QuerySet:
        start, end = self.cleaned_data.get("date_from"), self.cleaned_data.get("date_to")
        if start:
            queryset = queryset.filter(**{f"{field}__gte": _day_start(start)})
        if end:
            queryset = queryset.filter(**{f"{field}__lt": _day_start(end) + dt.timedelta(days=1)})
        return queryset


def _blank_choices(choices, label: str = "Any") -> list[tuple[str, str]]:
    return [("", label), *choices]


class PayOrderFilterForm(DateRangeMixin, forms.Form):
    status = forms.ChoiceField(required=False)
    type = forms.ChoiceField(required=False)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = _blank_choices(PayOrder.Status.choices)
        self.fields["type"].choices = _blank_choices(PayOrder.Type.choices)

    def apply(self, queryset: QuerySet) -> QuerySet:
        if self.cleaned_data.get("status"):
            queryset = queryset.filter(status=self.cleaned_data["status"])
        if self.cleaned_data.get("type"):
            queryset = queryset.filter(type=self.cleaned_data["type"])
        return self.filter_dates(queryset)


class PayOrderCreateForm(forms.Form):
    # The service names `expires_in` (seconds); this form asks for minutes.
    SERVICE_FIELDS = {"expires_in": "expires_in_minutes"}

    type = forms.ChoiceField(initial="SALE")
    amount = forms.CharField(max_length=60, help_text='Major units, e.g. "100.00".', widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
    currency = forms.ChoiceField()
    settlement_currency = forms.ChoiceField(required=False, help_text="Default: the price's currency.")
    description = forms.CharField(max_length=500, required=False)
    customer_external_id = forms.CharField(max_length=200, required=False, label="Customer external id")
    redirect_url = forms.URLField(max_length=2000, required=False, label="Redirect URL", assume_scheme="https")
    expires_in_minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=30, label="Expires in (minutes)")

    # Set by the view once it has asked "is this price really in BTC?" (see `crypto_price_token`).
    confirm_price = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, currencies: list[str], settlement_currency: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = PayOrder.Type.choices
        self.fields["currency"].choices = [(c, c) for c in currencies]
        self.fields["settlement_currency"].choices = _blank_choices([(c, c) for c in currencies], "Same as the price")
        if settlement_currency in currencies:
            # The organization's own currency, not the first in the alphabet (BTC): typing 42.50
            # must not make a 42.50 BTC order.
            self.fields["currency"].initial = settlement_currency
            self.fields["settlement_currency"].initial = settlement_currency

    def crypto_price_token(self) -> str:
        """What the confirmation of a large crypto price confirms: this amount in this currency."""
        return f"{self.cleaned_data['amount'].strip()} {self.cleaned_data['currency']}"

    def price_confirmed(self) -> bool:
        return self.cleaned_data.get("confirm_price") == self.crypto_price_token()

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "type": data["type"],
            "amount": data["amount"].strip(),
            "currency": data["currency"],
            "settlement_currency": data.get("settlement_currency") or None,
            "customer_external_id": (data.get("customer_external_id") or "").strip() or None,
            "description": data.get("description") or "",
            "redirect_url": data.get("redirect_url") or "",
            "expires_in": data["expires_in_minutes"] * 60,
        }


class PayOrderCancelForm(forms.Form):
    reason = forms.CharField(max_length=150, required=False, help_text="Kept in the order's history and sent in its webhook.")


class PayOrderRefundForm(forms.Form):
    """A refund as `POST /pay-orders/{id}/refund` takes it. The amount is not typed: it is what the
    service refunds for the kind (everything received, or the overpaid excess), shown before
    confirming and checked again when confirmed. `token` is the idempotency key of the confirmed
    submission (rendered into the confirmation page: a double submit carries the same one)."""

    kind = forms.ChoiceField(widget=forms.RadioSelect, label="What to refund")
    destination_address = forms.CharField(
        max_length=100, label="Refund address", help_text="The payer's address on the order's chain.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    reason = forms.CharField(max_length=300, required=False)
    amount = forms.CharField(required=False, max_length=60, widget=forms.HiddenInput)
    token = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    KIND_LABELS = {"full": "Everything received", "excess": "Only the overpaid excess"}

    def __init__(self, *args, amounts: dict[str, str], currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(kind, f"{self.KIND_LABELS[kind]}: {amount} {currency}") for kind, amount in amounts.items()]
        if len(amounts) == 1:
            self.fields["kind"].initial = next(iter(amounts))


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="What uses this key, e.g. \"shop backend\".")
    scopes = forms.MultipleChoiceField(
        required=False, initial=list(DEFAULT_SCOPES), widget=forms.CheckboxSelectMultiple,
        choices=[(scope, f"{scope}: {meaning}") for scope, meaning in SCOPES.items()],
        help_text="Least privilege: give the key only what its integration needs. None chosen: read only.",
    )
    test_key = forms.BooleanField(
        required=False, label="Test key",
        help_text="A test key creates and sees only test-mode pay orders: sandbox chain, testnet payment links.",
    )

    def chosen_scopes(self) -> list[str]:
        return list(self.cleaned_data.get("scopes") or DEFAULT_SCOPES)


class WebhookEndpointCreateForm(forms.Form):
    url = forms.URLField(max_length=2000, label="URL", assume_scheme="https")
    events = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text='"All events" subscribes to every event, present and future.')
    description = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [("*", "All events"), *((e, e) for e in EVENT_TYPES)]


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=_blank_choices(WebhookDelivery.Status.choices))
    endpoint = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def apply(self, queryset: QuerySet) -> QuerySet:
        if self.cleaned_data.get("status"):
            queryset = queryset.filter(status=self.cleaned_data["status"])
        if self.cleaned_data.get("endpoint"):
            queryset = queryset.filter(endpoint_id=self.cleaned_data["endpoint"])
        return queryset


class TransactionFilterForm(DateRangeMixin, forms.Form):
    """Rendered by the dashboard; the filtering itself is `ledger.filters.TransactionFilter`,
    the API's, so the page and `GET /transactions` agree on what a filter means."""

    type = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False)
    currency = forms.ChoiceField(required=False)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    search = forms.CharField(required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "Reference or description"}))

    def __init__(self, *args, currencies: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = _blank_choices(Transaction.Type.choices)
        self.fields["status"].choices = _blank_choices(Transaction.Status.choices)
        self.fields["currency"].choices = _blank_choices([(c, c) for c in currencies])

    def filter_data(self) -> dict[str, str]:
        """The cleaned values in `TransactionFilter`'s parameter names."""
        data = self.cleaned_data
        out = {name: data[name] for name in ("type", "status", "currency", "search") if data.get(name)}
        if data.get("date_from"):
            out["from"] = data["date_from"].isoformat()
        if data.get("date_to"):
            out["to"] = data["date_to"].isoformat()
        return out
