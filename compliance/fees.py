"""Fees (SPEC 6 `POST /fees/quote`, SPEC 11 defaults).

`fee_compute` is the one place a fee is worked out; the money path calls it and posts the fee
leg to the platform fee account in the same ledger transaction.

Units: a rule naming the asset (its `currency`) has its fixed part, minimum and maximum in that
asset's major units; a rule with a blank currency (the defaults) has them in the reference
currency (`LIMITS_REFERENCE_CURRENCY`, `core.reference`), converted to the asset at the price
provider's rate when the fee is worked out: the IBAN withdrawal minimum of 1.00 is USD 1.00
worth of BTC, not 1 BTC. The percentage needs no conversion. An asset the provider cannot price
pays only the percentage of a default rule.

Rule choice: among the ACTIVE `FeeRule`s of the movement type whose currency is blank or the
asset's code and whose destination type is blank or the requested one, the most specific wins:
currency + destination > destination only > currency only > generic. Ties (two rules of the same
specificity) go to the lowest id, so the answer never depends on row order. No rule: no fee.

Arithmetic, in this order (all in `MONEY_CONTEXT`, exact decimals):
1. raw = amount * percent / 100 + fixed
2. rounded UP (toward +infinity) to the asset's exponent. Rounding is in the platform's favour,
   as for every price it quotes: a fee of 0.305 USD is 0.31, never 0.30, so the platform never
   collects less than its stated rate because of rounding (the customer pays at most one minor
   unit more).
3. raised to `minimum`, then capped at `maximum` (major units of the movement's asset; a default
   rule's converted from the reference currency). The minimum is itself rounded up and the
   maximum down to the exponent, so the result is always a whole number of minor units and
   never above the stated maximum.

`total_amount` = amount + fee: what the paying wallet parts with when the fee is charged on top
(withdrawals, exchanges); a caller that deducts the fee instead (settlement) uses `fee_amount`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any


from compliance.models import FeeRule, MovementType
from compliance.rules import rules
from core.errors import ValidationFailed
from core.money import MONEY_CONTEXT, format_amount, quantum
from core.reference import RateBook, reference_exponent, to_reference

HUNDRED = Decimal(100)
ZERO = Decimal(0)


@dataclass(frozen=True)
class FeeQuote:
    fee_amount: Decimal
    fee_currency: str
    fee_type: str  # "free" | "percentage" | "fixed" | "percentage_plus_fixed"
    fee_percentage: Decimal
    total_amount: Decimal
    description: str
    amount: Decimal
    exponent: int
    rule_id: int | None = None
    rule_currency: str = ""  # what the rule's fixed/minimum/maximum are in ("" without a rule)
    reference_currency: str = ""
    rate: Decimal | None = None  # one unit of the asset in the reference currency
    minimum: Decimal | None = None  # in the asset's units, as applied
    maximum: Decimal | None = None
    reference_rule: dict | None = None  # a default rule's fixed/minimum/maximum in the reference currency

    def as_dict(self) -> dict[str, Any]:
        """The SPEC 6 shape (amounts as strings at the asset's exponent), plus the reference
        conversion: `rule_currency`, `reference_currency`, `rate`, the minimum/maximum applied in
        the asset, and `reference` (the default rule's own figures and the fee's worth)."""
        reference = None
        if self.rate is not None:
            reference = {
                "fee_amount": format_amount(to_reference(self.fee_amount, self.rate), reference_exponent(self.reference_currency)),
                **(self.reference_rule or {}),
            }
        return {
            "fee_amount": format_amount(self.fee_amount, self.exponent),
            "fee_currency": self.fee_currency,
            "fee_type": self.fee_type,
            "fee_percentage": format_percent(self.fee_percentage),
            "total_amount": format_amount(self.total_amount, self.exponent),
            "description": self.description,
            "minimum_fee": None if self.minimum is None else format_amount(self.minimum, self.exponent),
            "maximum_fee": None if self.maximum is None else format_amount(self.maximum, self.exponent),
            "rule_currency": self.rule_currency or None,
            "reference_currency": self.reference_currency,
            "rate": None if self.rate is None else format(self.rate.normalize(), "f"),
            "reference": reference,
        }


def format_percent(value: Decimal) -> str:
    """At least two decimals, no trailing noise: 1 -> "1.00", 0.5 -> "0.50", 0.125 -> "0.125"."""
    normal = value.normalize()
    if normal.as_tuple().exponent > -2:  # type: ignore[operator]
        normal = normal.quantize(Decimal("0.01"))
    return format(normal, "f")


def _normalise_destination(destination_type: str | None) -> str:
    return (destination_type or "").strip().upper()


def fee_rule_for(*, movement_type: str, currency: str, destination_type: str = "") -> FeeRule | None:
    """The most specific active rule (see the module docstring), or None."""
    destination_type = _normalise_destination(destination_type)
    candidates = [
        rule for rule in rules().fees
        if rule.movement_type == movement_type and rule.currency in ("", currency) and rule.destination_type in ("", destination_type)
    ]

    def specificity(rule: FeeRule) -> tuple[int, int]:
        score = (2 if rule.destination_type else 0) + (1 if rule.currency else 0)
        return (-score, rule.pk)

    ordered = sorted(candidates, key=specificity)
    return ordered[0] if ordered else None


def _fee_type(rule: FeeRule | None) -> str:
    if rule is None or (rule.percent == 0 and rule.fixed == 0 and not rule.minimum):
        return "free"
    if rule.percent and rule.fixed:
        return "percentage_plus_fixed"
    if rule.fixed:
        return "fixed"
    return "percentage"


def fee_compute(*, movement_type: str, amount: Decimal, asset, destination_type: str = "", rates: RateBook | None = None) -> FeeQuote:
    """The fee for moving `amount` (a Decimal already parsed for `asset`) of `asset` (a default
    rule's fixed part, minimum and maximum converted from the reference currency at `rates`)."""
    if movement_type not in MovementType.values:
        raise ValidationFailed(
            f"type: must be one of {', '.join(MovementType.values)}.",
            details={"fields": {"type": [f"One of {', '.join(MovementType.values)}."]}},
        )
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("fee_compute takes a Decimal amount")
    rule = fee_rule_for(movement_type=movement_type, currency=asset.code, destination_type=destination_type)
    q = quantum(asset.exponent)
    book = rates if rates is not None else RateBook()
    in_reference = rule is not None and not rule.currency
    rate = book.rate(asset.code) if in_reference else book.stored(asset.code)
    minimum = maximum = None
    reference_rule = None
    with localcontext(MONEY_CONTEXT):
        if rule is None:
            fee = ZERO.quantize(q)
            percent = ZERO
            description = "No fee"
        else:
            percent = rule.percent
            fixed, minimum, maximum = rule.fixed, rule.minimum, rule.maximum
            if in_reference:
                rexp = reference_exponent(book.currency)
                reference_rule = {
                    "fixed": format_amount(rule.fixed, rexp),
                    "minimum_fee": None if rule.minimum is None else format_amount(rule.minimum, rexp),
                    "maximum_fee": None if rule.maximum is None else format_amount(rule.maximum, rexp),
                }
                if rate is None:  # an asset nobody prices: only the percentage applies
                    fixed, minimum, maximum = ZERO, None, None
                else:
                    fixed = fixed / rate
                    minimum = None if minimum is None else minimum / rate
                    maximum = None if maximum is None else maximum / rate
            raw = amount * percent / HUNDRED + fixed
            fee = raw.quantize(q, rounding=ROUND_CEILING)
            if minimum is not None:
                minimum = minimum.quantize(q, rounding=ROUND_CEILING)
                fee = max(fee, minimum)
            if maximum is not None:
                maximum = maximum.quantize(q, rounding=ROUND_FLOOR)
                fee = min(fee, maximum)
            description = rule.description or str(rule)
        total = amount + fee
    return FeeQuote(
        fee_amount=fee,
        fee_currency=asset.code,
        fee_type=_fee_type(rule),
        fee_percentage=percent,
        total_amount=total,
        description=description,
        amount=amount,
        exponent=asset.exponent,
        rule_id=rule.pk if rule else None,
        rule_currency="" if rule is None else (rule.currency or book.currency),
        reference_currency=book.currency,
        rate=rate,
        minimum=minimum,
        maximum=maximum,
        reference_rule=reference_rule,
    )
