"""Risk rules as forms (issue 14 item 9): each built-in kind's settings as typed, validated
fields with help text, turned into and read from `RiskRule.params`; and a preview of a rule
against the last days of movements.

A kind registered by code without a form here is edited as a JSON object (`JsonParamsForm`).
The params written are the ones `compliance.risk` reads: integers as JSON numbers, decimals as
strings (never floats).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django import forms
from django.utils import timezone

from compliance.models import Direction, MovementType, RiskRule


class ParamsForm(forms.Form):
    """The params of one rule kind. `to_params()` after `is_valid()`."""

    title = ""
    summary = ""

    @classmethod
    def initial_from(cls, params: dict) -> dict:
        return {name: params[name] for name in cls.base_fields if name in (params or {})}

    def to_params(self) -> dict:
        out = {}
        for name, value in self.cleaned_data.items():
            if value in (None, "", []):
                continue
            out[name] = str(value) if isinstance(value, Decimal) else value
        return out


class VelocityForm(ParamsForm):
    title = "Velocity"
    summary = "Holds an outgoing movement from a wallet that already made many outgoing movements in a short window."
    max_count = forms.IntegerField(min_value=1, max_value=100_000, initial=100, help_text="Outgoing movements allowed in the window; the next one fires.")
    window_minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=10, help_text="Length of the window, in minutes.")


class StructuringForm(ParamsForm):
    title = "Structuring"
    summary = "Several movements each just under the customer's single limit within a window."
    min_count = forms.IntegerField(min_value=2, max_value=1000, initial=3, help_text="Movements in the band (this one included) that fire the rule.")
    window_hours = forms.IntegerField(min_value=1, max_value=24 * 31, initial=24, help_text="Length of the window, in hours.")
    band_percent = forms.DecimalField(
        min_value=Decimal("0.01"), max_value=Decimal("50"), decimal_places=2, initial=Decimal("10"),
        help_text="How far under the single limit a movement counts as 'just under', in percent.",
    )


class NewAccountLargeForm(ParamsForm):
    title = "New account, large first movement"
    summary = "A customer's first outgoing movement, soon after sign-up, above a share of the single limit."
    fraction = forms.DecimalField(
        min_value=Decimal("0.01"), max_value=Decimal("1"), decimal_places=4, initial=Decimal("0.5"),
        help_text="Share of the single limit (0.5 = half) above which the first movement fires.",
    )
    window_hours = forms.IntegerField(min_value=1, max_value=24 * 365, initial=24, help_text="How long after sign-up an account counts as new, in hours.")


class AmountThresholdForm(ParamsForm):
    title = "Amount threshold"
    summary = "Any movement at or above an amount."
    threshold = forms.DecimalField(min_value=Decimal("0"), max_digits=38, decimal_places=18, help_text="In the moving asset's major units (e.g. 10000 for USD 10,000.00).")
    currency = forms.CharField(required=False, max_length=16, help_text="Asset code (e.g. USD); blank for every asset.")
    movement_types = forms.MultipleChoiceField(
        required=False, choices=MovementType.choices, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every type.",
    )
    direction = forms.ChoiceField(required=False, choices=[("", "Either direction"), *Direction.choices])

    def clean_currency(self) -> str:
        code = (self.cleaned_data.get("currency") or "").strip().upper()
        if code:
            from ledger.models import Asset

            if not Asset.objects.filter(code=code).exists():
                raise forms.ValidationError(f"No asset has the code {code}.")
        return code

    def clean_threshold(self):
        value = self.cleaned_data.get("threshold")
        if value is not None and value <= 0:
            raise forms.ValidationError("The threshold must be more than 0.")
        return value


class SanctionsForm(ParamsForm):
    title = "Sanctions name match"
    summary = "The beneficiary's name fuzzy-matches a sanctions list entry or alias."
    threshold = forms.IntegerField(
        min_value=50, max_value=100, initial=90,
        help_text="Match score from 50 to 100 (100 = same words in any order); lower catches more spellings and more false positives.",
    )


class JsonParamsForm(ParamsForm):
    title = "Custom kind"
    summary = "A kind registered by code: its settings as a JSON object."
    params = forms.JSONField(required=False, initial=dict, help_text='A JSON object, e.g. {"threshold": "10000"}.')

    @classmethod
    def initial_from(cls, params: dict) -> dict:
        return {"params": params or {}}

    def clean_params(self):
        value = self.cleaned_data.get("params")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('A JSON object, e.g. {"threshold": "10000"}.')
        return value

    def to_params(self) -> dict:
        return self.cleaned_data.get("params") or {}


KIND_FORMS: dict[str, type[ParamsForm]] = {
    "velocity": VelocityForm,
    "structuring": StructuringForm,
    "new_account_large": NewAccountLargeForm,
    "amount_threshold": AmountThresholdForm,
    "sanctions": SanctionsForm,
}


def params_form_for(kind: str) -> type[ParamsForm]:
    return KIND_FORMS.get(kind, JsonParamsForm)


# --- Preview ---------------------------------------------------------------------------------------

PREVIEW_DAYS = 7
PREVIEW_MAX_MOVEMENTS = 5000


@dataclass
class RulePreview:
    days: int
    scanned: int = 0
    flagged: int = 0
    truncated: bool = False
    examples: list[dict] = field(default_factory=list)


def risk_rule_preview(*, rule: RiskRule, days: int = PREVIEW_DAYS, now: dt.datetime | None = None) -> RulePreview:
    """How many customer movements of the last `days` days the (possibly unsaved) `rule` would have
    flagged: each movement (newest first, at most PREVIEW_MAX_MOVEMENTS) is checked as it was
    made, at its own time. Reads only. Counts a rule reads from the ledger (velocity's outgoing
    movements, structuring's earlier movements) are of today's ledger, so a movement made later
    in the window can count toward an earlier one: the number is an estimate, on the high side."""
    from accounts.crypto import decrypt_secret
    from accounts.models import Customer
    from compliance.backoffice import transaction_summaries
    from compliance.limits import default_direction
    from compliance.risk import RiskContext, _REGISTRY
    from ledger.models import Transaction
    from wallets.models import Payout

    check = _REGISTRY.get(rule.kind)
    now = now or timezone.now()
    result = RulePreview(days=days)
    if check is None:
        return result
    movements = (
        Transaction.objects.filter(created_at__gte=now - dt.timedelta(days=days), customer__isnull=False, type__in=MovementType.values)
        .exclude(status=Transaction.Status.FAILED)
        .order_by("-id")
    )
    batch = list(movements[: PREVIEW_MAX_MOVEMENTS + 1])
    result.truncated = len(batch) > PREVIEW_MAX_MOVEMENTS
    batch = batch[:PREVIEW_MAX_MOVEMENTS]
    summaries = transaction_summaries(batch)
    customers = {c.pk: c for c in Customer.objects.filter(pk__in={tx.customer_id for tx in batch})}
    # A payout's beneficiary is shown masked (summary.counterparty); the rules screen the real name.
    sealed = Payout.objects.filter(transaction_id__in=[tx.pk for tx in batch]).values_list("transaction_id", "beneficiary_name_encrypted")
    beneficiaries = {tx_id: decrypt_secret(name) for tx_id, name in sealed}
    for tx in batch:
        summary = summaries[tx.pk]
        wallet = summary.wallet
        if wallet is None or summary.amount is None or tx.customer_id not in customers:
            continue
        result.scanned += 1
        ctx = RiskContext(
            customer=customers[tx.customer_id], wallet=wallet, asset=wallet.asset, movement_type=tx.type,
            direction=default_direction(tx.type), amount=summary.amount,
            beneficiary_name=beneficiaries.get(tx.pk, summary.counterparty) if tx.type in (MovementType.WITHDRAWAL, MovementType.TRANSFER) else None,
            now=tx.created_at,
        )
        try:
            reason = check(rule, ctx)
        except (InvalidOperation, ValueError, TypeError, KeyError) as exc:
            reason = None
            result.examples.append({"transaction_id": tx.pk, "error": f"the rule could not be checked: {exc}"})
        if reason:
            result.flagged += 1
            if len(result.examples) < 10:
                result.examples.append({"transaction_id": tx.pk, "amount": summary.amount_display, "reason": reason})
    return result
