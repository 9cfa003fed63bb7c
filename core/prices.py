"""Price providers: how many units of `quote` one unit of `base` is worth.

Invariants:
- Rates are `Decimal` end to end; a float never enters (JSON from the feed is parsed with
  `parse_float=Decimal`, and a rate given as a JSON float literal is read from its text).
- Cross rates go through the provider's pivot currency: the sandbox knows each currency's worth in
  USD, mid = usd(base) / usd(quote); the feed says how much of each currency one unit of its base
  buys, mid = rates[quote] / rates[base] (the feed's own numbers, never inverted first).
  Divisions are rounded to `RATE_PRECISION` significant digits, half-even, so the same inputs give
  the same rate on every machine.
- bid = mid * (1 - spread), ask = mid * (1 + spread), spread from settings.PRICE_SPREAD
  (0.25% each side by default); a currency against itself is exactly 1 with no spread.
- A feed that cannot be reached, answers with an error, garbage or a snapshot older than
  settings.PRICE_MAX_AGE_SECONDS is `PriceUnavailable` (503): we never price from stale data.

`get_price_provider()` picks the provider named by settings.PRICE_PROVIDER ("sandbox" or "http").
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

import httpx
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from core.errors import CofferError, ValidationFailed

RATE_PRECISION = 20
_RATE_CONTEXT = Context(prec=RATE_PRECISION, rounding=ROUND_HALF_EVEN)
_MAX_RATE = Decimal("1e30")


class PriceUnavailable(CofferError):
    code, status = "PRICE_UNAVAILABLE", 503
    default_message = "Prices are unavailable right now; try again shortly."


class UnsupportedCurrency(ValidationFailed):
    default_message = "This currency cannot be priced."


@dataclass(frozen=True)
class Rate:
    base: str
    quote: str
    mid: Decimal
    bid: Decimal  # what the platform pays for one `base`, in `quote`
    ask: Decimal  # what the platform charges for one `base`, in `quote`
    as_of: datetime

    def inverse(self) -> Rate:
        one = Decimal(1)
        return Rate(
            base=self.quote,
            quote=self.base,
            mid=_RATE_CONTEXT.divide(one, self.mid),
            bid=_RATE_CONTEXT.divide(one, self.ask),
            ask=_RATE_CONTEXT.divide(one, self.bid),
            as_of=self.as_of,
        )


class PriceProvider(ABC):
    """Interface: `quote(base, quote) -> Rate`; `currencies()` lists what it can price."""

    name = "abstract"

    @abstractmethod
    def quote(self, base: str, quote: str) -> Rate: ...

    @abstractmethod
    def currencies(self) -> list[str]: ...


def _spread() -> Decimal:
    spread = Decimal(str(settings.PRICE_SPREAD))
    if not (Decimal(0) <= spread < Decimal(1)):
        raise ImproperlyConfigured("PRICE_SPREAD must be in [0, 1)")
    return spread


def _normalize_code(code: object, field: str) -> str:
    if not isinstance(code, str) or not code.strip() or len(code.strip()) > 12:
        raise UnsupportedCurrency(f"{field} must be a currency code.", details={"fields": {field: ["not a currency code"]}, "currency": code})
    return code.strip().upper()


def _check_codes(base: object, quote: object, supported: dict[str, Decimal]) -> tuple[str, str]:
    base = _normalize_code(base, "base")
    quote = _normalize_code(quote, "quote")
    for field, code in (("base", base), ("quote", quote)):
        if code not in supported:
            raise UnsupportedCurrency(
                f"{code} cannot be priced.", details={"fields": {field: ["unsupported"]}, "currency": code, "supported": sorted(supported)}
            )
    return base, quote


def rate_from_mid(*, base: str, quote: str, mid: Decimal, as_of: datetime) -> Rate:
    """A Rate with the configured spread around `mid` (none for a currency against itself)."""
    if base == quote:
        one = Decimal(1)
        return Rate(base=base, quote=quote, mid=one, bid=one, ask=one, as_of=as_of)
    spread = _spread()
    bid = _RATE_CONTEXT.multiply(mid, Decimal(1) - spread)
    ask = _RATE_CONTEXT.multiply(mid, Decimal(1) + spread)
    return Rate(base=base, quote=quote, mid=mid, bid=bid, ask=ask, as_of=as_of)


class SandboxPriceProvider(PriceProvider):
    """Fixed rates, no network: the worth of one unit of each currency in USD."""

    name = "sandbox"
    USD_VALUES: dict[str, Decimal] = {
        "USD": Decimal("1"),
        "EUR": Decimal("1.08"),
        "GBP": Decimal("1.27"),
        "BTC": Decimal("65000"),
        "ETH": Decimal("3200"),
        "USDC": Decimal("1"),
        "SOL": Decimal("150"),
    }

    def quote(self, base: str, quote: str) -> Rate:
        base, quote = _check_codes(base, quote, self.USD_VALUES)
        mid = _RATE_CONTEXT.divide(self.USD_VALUES[base], self.USD_VALUES[quote])
        return rate_from_mid(base=base, quote=quote, mid=mid, as_of=timezone.now())

    def currencies(self) -> list[str]:
        return sorted(self.USD_VALUES)


@dataclass(frozen=True)
class _Snapshot:
    base: str
    rates: dict[str, Decimal]  # units of each currency that one `base` buys, as the feed sent them
    as_of: datetime


def _parse_rate(code: str, raw: object) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (str, Decimal, int)):
        raise PriceUnavailable("The price feed sent a rate that is not a number.", details={"currency": code})
    try:
        rate = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(raw)
    except InvalidOperation:
        raise PriceUnavailable("The price feed sent a rate that is not a number.", details={"currency": code}) from None
    if not rate.is_finite() or rate <= 0 or rate > _MAX_RATE:
        raise PriceUnavailable("The price feed sent an impossible rate.", details={"currency": code})
    return rate


def _parse_time(raw: object) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, (int, Decimal)) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(int(raw), tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise PriceUnavailable("The price feed sent an invalid timestamp.") from None
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise PriceUnavailable("The price feed sent an invalid timestamp.") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt_timezone.utc)
        return parsed
    raise PriceUnavailable("The price feed sent an invalid timestamp.")


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a rate")


def parse_feed(body: bytes | str, *, fetched_at: datetime) -> _Snapshot:
    """`{"base": "USD", "rates": {"EUR": "0.92", ...}, "as_of": ISO 8601 or unix seconds?}`:
    one `base` buys `rates[c]` of `c`."""
    try:
        doc = json.loads(body, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise PriceUnavailable("The price feed did not send valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rates"), dict) or not doc["rates"]:
        raise PriceUnavailable("The price feed did not send a rates object.")
    base_raw = doc.get("base")
    if not isinstance(base_raw, str) or not base_raw.strip():
        raise PriceUnavailable("The price feed did not name its base currency.")
    base = base_raw.strip().upper()
    rates: dict[str, Decimal] = {base: Decimal(1)}
    for code, raw in doc["rates"].items():
        if not isinstance(code, str) or not code.strip():
            raise PriceUnavailable("The price feed sent a rate without a currency code.")
        per_base = _parse_rate(code, raw)
        code = code.strip().upper()
        if code == base:
            if per_base != 1:
                raise PriceUnavailable("The price feed prices its base currency at other than 1.")
            continue
        rates[code] = per_base
    as_of = _parse_time(doc.get("as_of", doc.get("timestamp"))) or fetched_at
    return _Snapshot(base=base, rates=rates, as_of=as_of)


class HttpJsonPriceProvider(PriceProvider):
    """Rates from settings.PRICE_FEED_URL (a JSON document, see `parse_feed`), cached in the
    Django cache for settings.PRICE_CACHE_SECONDS so a burst of quotes makes one request."""

    name = "http"

    def __init__(self, *, url: str | None = None, timeout: float | None = None):
        self.url = url if url is not None else settings.PRICE_FEED_URL
        if not self.url:
            raise ImproperlyConfigured("PRICE_PROVIDER=http needs PRICE_FEED_URL")
        self.timeout = float(timeout if timeout is not None else settings.PRICE_FEED_TIMEOUT)
        self.cache_key = "prices:feed:" + hashlib.sha256(self.url.encode()).hexdigest()[:32]

    def _fetch(self) -> _Snapshot:
        try:
            response = httpx.get(self.url, timeout=self.timeout, headers={"Accept": "application/json"})
        except httpx.TimeoutException:
            raise PriceUnavailable("The price feed did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise PriceUnavailable("The price feed cannot be reached.", details={"reason": type(exc).__name__}) from None
        if response.status_code != 200:
            raise PriceUnavailable("The price feed answered with an error.", details={"status": response.status_code})
        return parse_feed(response.content, fetched_at=timezone.now())

    def snapshot(self) -> _Snapshot:
        cached = cache.get(self.cache_key)
        if cached is not None:
            snap = _Snapshot(
                base=cached["base"],
                rates={code: Decimal(value) for code, value in cached["rates"].items()},
                as_of=datetime.fromisoformat(cached["as_of"]),
            )
        else:
            snap = self._fetch()
            cache.set(
                self.cache_key,
                {"base": snap.base, "rates": {c: str(v) for c, v in snap.rates.items()}, "as_of": snap.as_of.isoformat()},
                timeout=settings.PRICE_CACHE_SECONDS,
            )
        age = timezone.now() - snap.as_of
        if age > timedelta(seconds=settings.PRICE_MAX_AGE_SECONDS):
            raise PriceUnavailable(
                "The price feed's rates are stale.",
                details={"as_of": snap.as_of.isoformat(), "max_age_seconds": settings.PRICE_MAX_AGE_SECONDS},
            )
        return snap

    def quote(self, base: str, quote: str) -> Rate:
        snap = self.snapshot()
        base, quote = _check_codes(base, quote, snap.rates)
        mid = _RATE_CONTEXT.divide(snap.rates[quote], snap.rates[base])
        return rate_from_mid(base=base, quote=quote, mid=mid, as_of=snap.as_of)

    def currencies(self) -> list[str]:
        return sorted(self.snapshot().rates)


def get_price_provider() -> PriceProvider:
    name = settings.PRICE_PROVIDER
    if name == "sandbox":
        return SandboxPriceProvider()
    if name == "http":
        return HttpJsonPriceProvider()
    raise ImproperlyConfigured(f"Unknown PRICE_PROVIDER {name!r}: use 'sandbox' or 'http'")
