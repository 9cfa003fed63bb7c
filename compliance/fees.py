"""Fees (SPEC 6 `POST /fees/quote`, SPEC 11 defaults).

`fee_compute` is the one place a fee is worked out; the money path calls it and posts the fee
leg to the platform fee account in the same ledger transaction.

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
3. raised to `minimum`, then capped at `maximum` (major units of the movement's asset). The
   minimum is itself rounded up and the maximum down to the exponent, so the result is always
   a whole number of minor units and never above the stated maximum.

`total_amount` = amount + fee: what the paying wallet parts with when the fee is charged on top
(withdrawals, exchanges); a caller that deducts the fee instead (settlement) uses `fee_amount`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext


from compliance.models import FeeRule, MovementType
from compliance.rules import rules
from core.errors import ValidationFailed
from core.money import MONEY_CONTEXT, format_amount, quantum

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

    def as_dict(self) -> dict[str, str | None]:
        """The SPEC 6 shape: amounts as strings at the asset's exponent."""
        return {
            "fee_amount": format_amount(self.fee_amount, self.exponent),
            "fee_currency": self.fee_currency,
            "fee_type": self.fee_type,
            "fee_percentage": format_percent(self.fee_percentage),
            "total_amount": format_amount(self.total_amount, self.exponent),
            "description": self.description,
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


def fee_compute(*, movement_type: str, amount: Decimal, asset, destination_type: str = "") -> FeeQuote:
    """The fee for moving `amount` (a Decimal already parsed for `asset`) of `asset`."""
    if movement_type not in MovementType.values:
        raise ValidationFailed(
            f"type: must be one of {', '.join(MovementType.values)}.",
            details={"fields": {"type": [f"One of {', '.join(MovementType.values)}."]}},
        )
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("fee_compute takes a Decimal amount")
    rule = fee_rule_for(movement_type=movement_type, currency=asset.code, destination_type=destination_type)
    q = quantum(asset.exponent)
    with localcontext(MONEY_CONTEXT):
        if rule is None:
            fee = ZERO.quantize(q)
            percent = ZERO
            description = "No fee"
        else:
            percent = rule.percent
            raw = amount * percent / HUNDRED + rule.fixed
            fee = raw.quantize(q, rounding=ROUND_CEILING)
            if rule.minimum is not None:
                fee = max(fee, rule.minimum.quantize(q, rounding=ROUND_CEILING))
            if rule.maximum is not None:
                fee = min(fee, rule.maximum.quantize(q, rounding=ROUND_FLOOR))
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
    )
