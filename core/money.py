"""Exact money at the edges (SPEC 4.1, STYLE 5).

`parse_amount` is the one place request input becomes a `Decimal` for an asset. It refuses
rather than rounds: a float (the value already lost its exactness), a bool, zero, a negative,
more decimals than the asset's exponent, NaN/Infinity, exponent notation ("1e3"), empty or
whitespace-only text, anything that is not a plain decimal number, and more than
`MAX_INTEGER_DIGITS` integer digits (the ledger stores NUMERIC(38, 18): 20 integer digits).
Every refusal is a `ValidationFailed` (400 VALIDATION_ERROR) naming the field.

Trailing zeros are judged by value: "1.000" is one dollar, not "three decimals", because it is
exactly representable in the asset; "1.001" is refused for a 2-decimal asset.

`format_amount` renders a stored amount at the asset's exponent, never in exponent notation. It is
the one formatter: API, CSV and the dashboard's `amount` template filter (core/templatetags/money.py)
all use it. For people (`trim=True`), the trailing zeros of a many-decimal asset go, down to two
decimals ("0.01253133" ETH rather than "0.012531330000000000"); the value shown is still exact,
and an asset of 0 to 2 decimals keeps exactly its exponent ("40.00" USD).

Arithmetic runs in `MONEY_CONTEXT` (60 significant digits): Python's default context keeps 28,
which would silently round a 38-digit NUMERIC(38, 18) value.

The embedded mode (SQLite) stores a decimal column as a double: exact to
`EMBEDDED_SIGNIFICANT_DIGITS` (15) significant digits only. There, `parse_amount` refuses an
amount with more (a 400 naming the limit) and the ledger refuses a posting whose balances would
need more (`embedded_precision_problem`), so nothing is ever stored rounded. PostgreSQL's
NUMERIC(38, 18) keeps every digit: nothing changes there.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation, localcontext

from core.errors import field_error

MAX_EXPONENT = 18
MAX_INTEGER_DIGITS = 20
MONEY_CONTEXT = Context(prec=60)
EMBEDDED_SIGNIFICANT_DIGITS = 15  # a double keeps any 15-digit decimal exactly (DBL_DIG)

_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SIGNED_DECIMAL = re.compile(r"[+-][0-9]+(?:\.[0-9]+)?")
_EXPONENT_NOTATION = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")


def quantum(exponent: int) -> Decimal:
    """The smallest unit of an asset with `exponent` minor-unit digits, e.g. Decimal("0.01")."""
    return Decimal(1).scaleb(-exponent)


def _check_exponent(exponent: int) -> None:
    if isinstance(exponent, bool) or not isinstance(exponent, int) or not 0 <= exponent <= MAX_EXPONENT:
        raise ValueError(f"exponent must be an int in 0..{MAX_EXPONENT}, got {exponent!r}")


def _from_text(text: str, field: str) -> Decimal:
    stripped = text.strip()
    if not stripped:
        raise field_error(field, "An amount is required.")
    if _EXPONENT_NOTATION.fullmatch(stripped):
        raise field_error(field, "Write the amount as a plain decimal number, without exponent notation.")
    if _SIGNED_DECIMAL.fullmatch(stripped):
        if Decimal(stripped) == 0:
            raise field_error(field, "The amount must be greater than zero.")
        if stripped[0] == "-":
            raise field_error(field, "The amount must be positive.")
        raise field_error(field, "Write the amount without a sign.")
    if not _PLAIN_DECIMAL.fullmatch(stripped):
        lowered = stripped.lower().lstrip("+-")
        if lowered in {"nan", "snan", "inf", "infinity"}:
            raise field_error(field, "The amount must be a finite number.")
        raise field_error(field, "The amount must be a decimal number such as \"10.50\".")
    integer_part = stripped.split(".", 1)[0].lstrip("0")
    if len(integer_part) > MAX_INTEGER_DIGITS:
        raise field_error(field, f"The amount is too large (at most {MAX_INTEGER_DIGITS} integer digits).")
    return Decimal(stripped)


def significant_digits(value: Decimal) -> int:
    if not value:
        return 0
    return len(value.normalize(MONEY_CONTEXT).as_tuple().digits)


def embedded_precision_problem(value: Decimal) -> str | None:
    """Why `value` cannot be stored exactly by the database in use, or None (always None on
    PostgreSQL; on SQLite, more than 15 significant digits)."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    digits = significant_digits(value)
    if digits <= EMBEDDED_SIGNIFICANT_DIGITS:
        return None
    return (
        f"{value} has {digits} significant digits; the embedded SQLite database keeps "
        f"{EMBEDDED_SIGNIFICANT_DIGITS} exactly (run Coffer on PostgreSQL, DATABASE_URL, for more)."
    )


def parse_amount(value: object, *, exponent: int, field: str = "amount") -> Decimal:
    """Turn request input into an exact positive `Decimal` quantized to `exponent` decimals.

    Accepts `str`, `int` and `Decimal` (JSON numbers arrive as `Decimal` from
    `core.parsers.DecimalJSONParser`). Raises `ValidationFailed` naming `field` otherwise."""
    _check_exponent(exponent)
    if isinstance(value, bool):
        raise field_error(field, "The amount must be a number, not a boolean.")
    if isinstance(value, float):
        raise field_error(field, "Send the amount as a decimal string (for example \"10.50\"); floating-point numbers are not exact.")
    if isinstance(value, str):
        amount = _from_text(value, field)
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise field_error(field, "The amount must be a finite number.")
        if value.as_tuple().exponent > 0:  # type: ignore[operator]  # Decimal("1E+3"): exponent notation
            raise field_error(field, "Write the amount as a plain decimal number, without exponent notation.")
        amount = value
    elif value is None:
        raise field_error(field, "An amount is required.")
    else:
        raise field_error(field, "The amount must be a decimal number such as \"10.50\".")

    if amount.is_signed() and amount != 0:
        raise field_error(field, "The amount must be positive.")
    if amount == 0:
        raise field_error(field, "The amount must be greater than zero.")
    if amount.adjusted() >= MAX_INTEGER_DIGITS:
        raise field_error(field, f"The amount is too large (at most {MAX_INTEGER_DIGITS} integer digits).")
    with localcontext(MONEY_CONTEXT):
        try:
            quantized = amount.quantize(quantum(exponent))
        except InvalidOperation:  # pragma: no cover - prec 60 covers 20 + 18 digits
            raise field_error(field, "The amount is too large.") from None
        if quantized != amount:
            noun = "decimal" if exponent == 1 else "decimals"
            raise field_error(field, f"This asset allows at most {exponent} {noun}.")
    problem = embedded_precision_problem(quantized)
    if problem:
        raise field_error(field, f"The amount {problem}")
    return quantized


def format_exact(amount: Decimal) -> str:
    """A crypto amount as a payer reads and types it: exact, without trailing zeros or an
    exponent ("0.01331454", not "0.013314540000000000"); the same number, as in a BIP21 URI."""
    text = format(amount.normalize(), "f")
    return text if amount else "0"


def format_compact(value: Decimal) -> str:
    """A chart's axis label of a few characters ("310", "12.5k", "3M"); not an amount to read
    back (each bar's title carries the exact one, `format_amount`)."""
    for threshold, scale, suffix in ((10**9, 10**9, "B"), (10**6, 10**6, "M"), (10**4, 10**3, "k")):
        if value >= threshold:
            return f"{(value / scale).quantize(Decimal('0.1')).normalize():f}{suffix}"
    if value >= 100:
        return f"{value.quantize(Decimal(1)):f}"
    if value >= 1:
        return f"{value.quantize(Decimal('0.01')).normalize():f}"
    return f"{value.quantize(Decimal('0.0001')).normalize():f}"


DISPLAY_MIN_DECIMALS = 2


def format_amount(amount: Decimal, exponent: int, *, trim: bool = False) -> str:
    """Render `amount` at `exponent` decimals as a plain string ("1000.50", never "1.0005E+3").
    `trim`: for display, drop trailing zeros past DISPLAY_MIN_DECIMALS (never a significant digit).

    Stored amounts never carry more decimals than their asset; if one did, this rounds half-even
    for display only."""
    _check_exponent(exponent)
    if isinstance(amount, (float, bool)) or not isinstance(amount, (Decimal, int)):
        raise TypeError(f"format_amount takes a Decimal, got {type(amount).__name__}")
    with localcontext(MONEY_CONTEXT):
        quantized = Decimal(amount).quantize(quantum(exponent))
    if quantized == 0:
        quantized = abs(quantized)  # never "-0.00"
    text = format(quantized, "f")
    if trim and exponent > DISPLAY_MIN_DECIMALS:
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(DISPLAY_MIN_DECIMALS, '0')}"
    return text
