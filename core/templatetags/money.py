"""`{% load money %}`: the `amount` filter, which renders money in templates through the one
formatter, `core.money.format_amount` (trimmed for people: see its docstring).

    {{ order.amount|amount:order.currency }}   a platform asset's code: its exponent
    {{ entry.amount|amount:wallet.asset }}     an Asset (anything with `.exponent`)
    {{ value|amount:8 }}                       an exponent
    {{ row.fee|amount }}                       an amount already formatted at its exponent (a string)

A value that is not a number is shown as it is (never a 500 for a page); a float is refused, as
everywhere money is handled.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from core.money import MAX_EXPONENT, format_amount

register = template.Library()


_PLATFORM_EXPONENTS: dict[str, int] = {}  # a platform asset's exponent never changes (seeded by migration)


def _exponent_of_code(code: str) -> int | None:
    if code not in _PLATFORM_EXPONENTS:
        from ledger.models import Asset  # core does not import the ledger at load time

        found = Asset.objects.filter(code=code, organization__isnull=True).values_list("exponent", flat=True).first()
        if found is None:
            return None
        _PLATFORM_EXPONENTS[code] = found
    return _PLATFORM_EXPONENTS[code]


def _own_exponent(value: Decimal) -> int:
    places = -value.as_tuple().exponent  # type: ignore[operator]
    return max(0, min(int(places), MAX_EXPONENT))


@register.filter(name="amount")
def amount_filter(value, unit=None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        raise TypeError("float is not money")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not number.is_finite():
        return str(value)
    if isinstance(unit, int) and not isinstance(unit, bool):
        exponent = unit
    elif hasattr(unit, "exponent"):
        exponent = unit.exponent
    elif isinstance(unit, str) and unit:
        found = _exponent_of_code(unit.strip().upper())
        exponent = found if found is not None else _own_exponent(number)
    else:
        exponent = _own_exponent(number)
    return format_amount(number, exponent, trim=True)
