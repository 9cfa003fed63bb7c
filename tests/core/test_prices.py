"""Price providers: the sandbox's fixed rates and the HTTP JSON adapter against a real local
server (http.server in a thread) that can be told to answer well, badly, slowly or not at all."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from decimal import Context, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from core.prices import (
    HttpJsonPriceProvider,
    PriceUnavailable,
    SandboxPriceProvider,
    UnsupportedCurrency,
    get_price_provider,
)

# --- sandbox ----------------------------------------------------------------------------------------


def test_default_provider_is_the_sandbox():
    assert isinstance(get_price_provider(), SandboxPriceProvider)
    assert get_price_provider().currencies() == ["BTC", "ETH", "EUR", "GBP", "SOL", "USD", "USDC"]


def test_sandbox_rates_cross_through_usd():
    p = SandboxPriceProvider()
    btc_usd = p.quote("BTC", "USD")
    assert (btc_usd.base, btc_usd.quote, btc_usd.mid) == ("BTC", "USD", Decimal("65000"))
    assert btc_usd.bid == Decimal("64837.5") and btc_usd.ask == Decimal("65162.5")  # 0.25% each side
    assert p.quote("eth", "usdc").mid == Decimal("3200")
    assert p.quote("BTC", "ETH").mid == Decimal("20.3125")  # 65000 / 3200, exact
    assert p.quote("EUR", "USD").mid == Decimal("1.08")
    assert p.quote("USD", "EUR").mid == Decimal("0.92592592592592592593")  # 20 significant digits, half-even
    assert p.quote("GBP", "EUR").mid == Decimal("1.1759259259259259259")
    for rate in (btc_usd, p.quote("USD", "EUR"), p.quote("SOL", "BTC")):
        assert all(isinstance(v, Decimal) for v in (rate.mid, rate.bid, rate.ask))
        assert rate.bid < rate.mid < rate.ask
        assert rate.as_of.tzinfo is not None


def test_same_currency_is_exactly_one():
    rate = SandboxPriceProvider().quote("USD", "usd")
    assert (rate.mid, rate.bid, rate.ask) == (1, 1, 1)


def test_spread_comes_from_settings(settings):
    settings.PRICE_SPREAD = Decimal("0.01")
    rate = SandboxPriceProvider().quote("ETH", "USD")
    assert (rate.bid, rate.ask) == (Decimal("3168"), Decimal("3232"))
    settings.PRICE_SPREAD = Decimal("1")
    with pytest.raises(ImproperlyConfigured):
        SandboxPriceProvider().quote("ETH", "USD")


def test_inverse_swaps_bid_and_ask():
    rate = SandboxPriceProvider().quote("ETH", "USD")
    inverse = rate.inverse()
    assert (inverse.base, inverse.quote) == ("USD", "ETH")
    assert inverse.mid == Decimal("0.0003125")
    twenty = Context(prec=20)
    assert inverse.bid == twenty.divide(1, rate.ask) and inverse.ask == twenty.divide(1, rate.bid)
    assert inverse.bid < inverse.mid < inverse.ask


@pytest.mark.parametrize("base, quote", [("DOGE", "USD"), ("USD", "XYZ"), ("", "USD"), (None, "USD"), ("USD", 5)])
def test_unknown_currency(base, quote):
    with pytest.raises(UnsupportedCurrency) as exc:
        SandboxPriceProvider().quote(base, quote)
    assert exc.value.status == 400


def test_unknown_provider(settings):
    settings.PRICE_PROVIDER = "oracle"
    with pytest.raises(ImproperlyConfigured):
        get_price_provider()


# --- HTTP JSON feed -----------------------------------------------------------------------------------


class _Feed(BaseHTTPRequestHandler):
    status = 200
    body: bytes = b""
    delay = 0.0
    hits: list

    def do_GET(self):
        self.hits.append(self.path)
        if self.delay:
            time.sleep(self.delay)
        try:
            self.send_response(self.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def feed(settings):
    handler = type("Feed", (_Feed,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    settings.PRICE_PROVIDER = "http"
    settings.PRICE_FEED_URL = f"http://127.0.0.1:{server.server_address[1]}/rates.json"
    settings.PRICE_FEED_TIMEOUT = 0.5
    settings.PRICE_CACHE_SECONDS = 30
    settings.PRICE_MAX_AGE_SECONDS = 600

    def answer(document=None, *, status=200, raw: bytes | None = None, delay=0.0):
        handler.status, handler.delay = status, delay
        handler.body = raw if raw is not None else json.dumps(document).encode()
        return handler

    yield answer
    server.shutdown()
    server.server_close()


def _doc(**extra):
    return {"base": "USD", "rates": {"EUR": "0.92", "BTC": "0.0000153846", "USDC": 1, "ETH": 0.0003125}, **extra}


def test_http_feed_quotes_and_crosses(feed):
    handler = feed(_doc(as_of=timezone.now().isoformat()))
    provider = get_price_provider()
    assert isinstance(provider, HttpJsonPriceProvider)
    eur_usd = provider.quote("EUR", "USD")
    assert eur_usd.mid == Decimal("1.0869565217391304348")  # 1 / 0.92
    assert eur_usd.bid < eur_usd.mid < eur_usd.ask
    assert provider.quote("USD", "EUR").mid == Decimal("0.92")
    assert provider.quote("ETH", "USD").mid == Decimal("3200")  # a JSON float literal, read exactly
    assert provider.quote("USDC", "USD").mid == 1
    assert provider.quote("ETH", "EUR").mid == Decimal("2944")
    assert provider.currencies() == ["BTC", "ETH", "EUR", "USD", "USDC"]
    assert handler.hits == ["/rates.json"]  # one request, then the cache


def test_http_feed_cache_expires(feed, settings):
    handler = feed(_doc())
    settings.PRICE_CACHE_SECONDS = 1
    provider = HttpJsonPriceProvider()
    assert provider.quote("USD", "EUR").mid == Decimal("0.92")
    handler.body = json.dumps({"base": "USD", "rates": {"EUR": "0.95"}}).encode()
    assert provider.quote("USD", "EUR").mid == Decimal("0.92")  # cached
    time.sleep(1.2)
    assert provider.quote("USD", "EUR").mid == Decimal("0.95")
    assert len(handler.hits) == 2


def test_http_feed_unknown_currency_is_validation_error(feed):
    feed(_doc())
    with pytest.raises(UnsupportedCurrency):
        HttpJsonPriceProvider().quote("USD", "GBP")


@pytest.mark.parametrize("status", [500, 503, 404, 301])
def test_http_error_statuses(feed, status):
    feed(_doc(), status=status)
    with pytest.raises(PriceUnavailable) as exc:
        HttpJsonPriceProvider().quote("USD", "EUR")
    assert (exc.value.status, exc.value.code) == (503, "PRICE_UNAVAILABLE")
    assert exc.value.details["status"] == status


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>oops</html>",
        b"",
        b"[]",
        b'{"rates": {"EUR": "0.92"}}',  # no base
        b'{"base": "USD", "rates": {}}',
        b'{"base": "USD", "rates": []}',
        b'{"base": "USD", "rates": {"EUR": "abc"}}',
        b'{"base": "USD", "rates": {"EUR": "-0.92"}}',
        b'{"base": "USD", "rates": {"EUR": 0}}',
        b'{"base": "USD", "rates": {"EUR": NaN}}',
        b'{"base": "USD", "rates": {"EUR": "Infinity"}}',
        b'{"base": "USD", "rates": {"EUR": true}}',
        b'{"base": "USD", "rates": {"EUR": null}}',
        b'{"base": "USD", "rates": {"USD": "2"}}',
        b'{"base": "USD", "rates": {"EUR": "0.92"}, "as_of": "yesterday"}',
        b"\xff\xfe garbage",
    ],
)
def test_garbage_is_unavailable_and_not_cached(feed, raw):
    handler = feed(raw=raw)
    with pytest.raises(PriceUnavailable):
        HttpJsonPriceProvider().quote("USD", "EUR")
    handler.body = json.dumps(_doc()).encode()  # the feed recovers: the next quote succeeds
    assert HttpJsonPriceProvider().quote("USD", "EUR").mid == Decimal("0.92")


def test_timeout_is_unavailable(feed):
    feed(_doc(), delay=2.0)
    started = time.monotonic()
    with pytest.raises(PriceUnavailable, match="in time"):
        HttpJsonPriceProvider().quote("USD", "EUR")
    assert time.monotonic() - started < 1.5  # PRICE_FEED_TIMEOUT is 0.5 s


def test_unreachable_is_unavailable(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.PRICE_FEED_URL = f"http://127.0.0.1:{port}/rates.json"
    with pytest.raises(PriceUnavailable, match="reached"):
        HttpJsonPriceProvider().quote("USD", "EUR")


def test_stale_snapshot_is_refused(feed, settings):
    old = timezone.now() - timedelta(seconds=700)
    feed(_doc(as_of=old.isoformat()))
    with pytest.raises(PriceUnavailable, match="stale"):
        HttpJsonPriceProvider().quote("USD", "EUR")
    feed(_doc(timestamp=int(time.time()) - 30))  # unix seconds are accepted too
    settings.PRICE_FEED_URL += "?fresh"  # another URL, another cache entry
    rate = HttpJsonPriceProvider().quote("USD", "EUR")
    assert timezone.now() - rate.as_of < timedelta(seconds=60)


def test_cached_snapshot_goes_stale(feed, settings):
    feed(_doc(as_of=(timezone.now() - timedelta(seconds=50)).isoformat()))
    provider = HttpJsonPriceProvider()
    provider.quote("USD", "EUR")
    settings.PRICE_MAX_AGE_SECONDS = 40  # the cached copy is now too old to use
    with pytest.raises(PriceUnavailable, match="stale"):
        provider.quote("USD", "EUR")


def test_http_provider_needs_a_url(settings):
    settings.PRICE_PROVIDER = "http"
    settings.PRICE_FEED_URL = ""
    with pytest.raises(ImproperlyConfigured):
        get_price_provider()
