"""The reference currency: limits, fees and the 2FA threshold that mean the same in every asset.

Invariants:
- `LIMITS_REFERENCE_CURRENCY` (default USD) is the currency the platform's default limit rules
  and fee rules (those with a blank currency), and `TWO_FACTOR_THRESHOLD`, are expressed in. A
  rule naming an asset (and a `TWO_FACTOR_THRESHOLDS` entry) stays in that asset's own units and
  wins over the default.
- The rate of an asset is the price provider's MID rate (`core.prices`, no spread) for one unit of
  the asset in the reference currency, quantized to `RATE_QUANTUM` (18 decimals, the width of
  the column it is stored in) so the number used is exactly the number stored: every posting
  keeps the rate of its asset on its posting rows (`ledger.Posting.reference_rate`), and the
  usage counters' reference amounts are recounted from those rows.
- A reference amount is `amount * rate` quantized to 18 decimals, half-even (`to_reference`):
  the engine, the release and the recount all use this one function.
- No SQL: rates come from the price provider (the sandbox's are constants; the HTTP feed is
  cached in the shared cache for PRICE_CACHE_SECONDS) and are kept per process for
  LIMITS_RATE_CACHE_SECONDS. A movement reads them through one `RateBook`, so its limit check,
  its step-up and what its posting stores use the same rate.
- An asset the provider cannot price (an organization's custom asset) has no rate (None): the
  reference-currency defaults do not apply to it; only rules naming it do. A provider that is
  unreachable raises `PriceUnavailable` (503) when a check needs the rate: never a guess.
"""

from __future__ import annotations

import threading
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

from django.conf import settings

from core.money import MONEY_CONTEXT, quantum
from core.prices import PriceUnavailable, UnsupportedCurrency, get_price_provider

RATE_QUANTUM = Decimal("1e-18")
_NO_RATE = object()
_memo: dict[tuple[str, str, str], tuple[float, Decimal | None]] = {}
_memo_lock = threading.Lock()


def reference_currency() -> str:
    return str(settings.LIMITS_REFERENCE_CURRENCY).strip().upper()


# Digits the reference currency's figures are shown with (the seeded assets' exponents; 2 for
# any other): display only, the figures themselves are kept to 18 decimals.
_DISPLAY_EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "BTC": 8, "ETH": 18, "USDC": 6, "SOL": 9}


def reference_exponent(code: str | None = None) -> int:
    return _DISPLAY_EXPONENTS.get(code or reference_currency(), 2)


def reference_rate(code: str) -> Decimal | None:
    """How many units of the reference currency one unit of `code` is worth (mid, 18 decimals),
    or None when the price provider cannot price `code`. Raises PriceUnavailable."""
    code = (code or "").strip().upper()
    ref = reference_currency()
    if code == ref:
        return Decimal(1)
    key = (str(settings.PRICE_PROVIDER), ref, code)
    ttl = float(getattr(settings, "LIMITS_RATE_CACHE_SECONDS", 10.0))
    now = time.monotonic()
    cached = _memo.get(key)
    if cached is not None and now < cached[0]:
        return cached[1]
    try:
        mid = get_price_provider().quote(code, ref).mid
        rate: Decimal | None = mid.quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)
        if not rate:  # worth less than 1e-18 of the reference currency: cannot be stored, treat as unpriced
            rate = None
    except UnsupportedCurrency:
        rate = None
    if ttl > 0:
        with _memo_lock:
            _memo[key] = (now + ttl, rate)
    return rate


def rates_forget() -> None:
    """Drop this process's remembered rates (tests that change the provider)."""
    with _memo_lock:
        _memo.clear()


def to_reference(amount: Decimal, rate: Decimal | None) -> Decimal:
    """`amount` of an asset in the reference currency at `rate` (0 without a rate)."""
    if rate is None:
        return Decimal(0)
    with localcontext(MONEY_CONTEXT):
        return (amount * rate).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def from_reference(value: Decimal, rate: Decimal, exponent: int, *, rounding: str = ROUND_FLOOR) -> Decimal:
    """A reference-currency `value` in units of an asset worth `rate`, at the asset's exponent:
    rounded down for what may be moved (a limit), up for what must be paid (a fee minimum)."""
    with localcontext(MONEY_CONTEXT):
        return (value / rate).quantize(quantum(exponent), rounding=rounding)


def from_reference_up(value: Decimal, rate: Decimal, exponent: int) -> Decimal:
    return from_reference(value, rate, exponent, rounding=ROUND_CEILING)


class RateBook:
    """The rates one movement uses, each asked of the provider at most once: the limit check,
    the step-up and the posting's stored rate agree. `rate` raises PriceUnavailable; `stored`
    (what a posting records) answers None instead, as the posting itself needs no rate."""

    def __init__(self) -> None:
        self._rates: dict[str, Decimal | None] = {}
        self.currency = reference_currency()

    def rate(self, code: str) -> Decimal | None:
        code = (code or "").upper()
        found = self._rates.get(code, _NO_RATE)
        if found is _NO_RATE:
            found = self._rates[code] = reference_rate(code)
        return found  # type: ignore[return-value]

    def stored(self, code: str) -> Decimal | None:
        try:
            return self.rate(code)
        except PriceUnavailable:
            self._rates[(code or "").upper()] = None
            return None
