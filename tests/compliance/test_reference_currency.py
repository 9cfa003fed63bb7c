"""Limits, fees and the 2FA threshold in the reference currency (issue 13 item 7), over the API.

The sandbox price feed values BTC at USD 65,000, so the SPEC 11 defaults (USD reference amounts)
are, in BTC: single withdrawal limit of a `none` customer 1000 / 65000 = 0.01538461 BTC (rounded
down), the IBAN fee's minimum 1.00 / 65000 = 0.00001539 BTC (rounded up), step-up from
5000 / 65000 = 0.07692308 BTC. Usage counts each movement at the rate of its time, stored on its
posting rows: a later price move (a local HTTP price feed) changes nothing already counted, and
the recount (`check_ledger`'s `usage_check`) agrees."""

import json
import threading
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyotp
import pytest
from django.utils import timezone

from accounts.identity.totp import totp_confirm, totp_enrol
from compliance.models import FeeRule, LimitRule
from ledger.checks import ledger_check
from ledger.models import Posting, Transaction, UsageCounter
from ledger.usage import usage_check
from tests.factories.wallets import asset, client_for, open_wallet, person

pytestmark = pytest.mark.django_db

IBAN = "DE89370400440532013000"


def _withdraw(client, wallet, amount, code=None):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if code is not None:
        headers["X-2FA-Code"] = code
    body = {"wallet_id": wallet.pk, "amount": amount, "destination": {"type": "IBAN", "iban": IBAN, "name": "Jane Smith"}}
    return client.post("/api/v1/withdrawals", body, format="json", headers=headers)


def _transfer(client, source, destination, amount, code=None):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if code is not None:
        headers["X-2FA-Code"] = code
    body = {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount, "currency": source.asset.code}
    return client.post("/api/v1/transfers", body, format="json", headers=headers)


def _error(response) -> dict:
    return response.json()["error"]


def _counter(customer, code, movement_type, direction) -> UsageCounter:
    return UsageCounter.objects.get(customer=customer, asset=asset(code), movement_type=movement_type, direction=direction)


def _level(user, level):
    user.customer.kyc_level = level
    user.customer.save(update_fields=["kyc_level"])
    return user


# --- limits ---------------------------------------------------------------------------------------


def test_a_btc_withdrawal_over_usd_1000_worth_is_limit_exceeded_for_kyc_none():
    jane = person()
    assert jane.customer.kyc_level == "none"
    wallet = open_wallet(jane, "BTC", funded="1")
    client = client_for(jane)

    over = _withdraw(client, wallet, "0.02")  # USD 1,300 worth
    assert over.status_code == 422 and _error(over)["code"] == "LIMIT_EXCEEDED", over.content
    details = _error(over)["details"]
    assert (details["limit_type"], details["limit"], details["requested"], details["currency"]) == ("single", "0.01538461", "0.02000000", "BTC")
    assert (details["limit_currency"], details["reference_currency"], details["rate"]) == ("USD", "USD", "65000")
    assert details["reference"] == {"limit": "1000.00", "used": "0.00", "remaining": "1000.00", "requested": "1300.00"}
    assert "worth 1000.00 USD" in _error(over)["message"]

    just_under = _withdraw(client, wallet, "0.01538461")  # USD 999.99965 worth
    assert just_under.status_code == 202, just_under.content
    # A thousand BTC would have passed a limit in the asset's own units; the old default is gone.
    assert _withdraw(client, wallet, "0.01538462").status_code == 422


def test_the_daily_limit_adds_up_usd_worth_at_each_movements_rate():
    jane = person()
    wallet = open_wallet(jane, "BTC", funded="1")
    client = client_for(jane)
    for _ in range(2):  # 2 x USD 975
        assert _withdraw(client, wallet, "0.015").status_code == 202
    counter = _counter(jane.customer, "BTC", "withdrawal", "outgoing")
    assert (counter.amount, counter.reference_amount, counter.count) == (Decimal("0.03"), Decimal("1950"), 2)
    # every posting row keeps the rate its usage was counted at
    rates = set(Posting.objects.filter(transaction__customer=jane.customer, transaction__type="withdrawal").values_list("reference_rate", flat=True))
    assert rates == {Decimal("65000")}

    over = _withdraw(client, wallet, "0.001")  # USD 65 more: 2,015 > 2,000
    assert over.status_code == 422 and _error(over)["details"]["limit_type"] == "daily", over.content
    assert _error(over)["details"]["reference"] == {"limit": "2000.00", "used": "1950.00", "remaining": "50.00", "requested": "65.00"}
    assert _withdraw(client, wallet, "0.00076923").status_code == 202  # USD 49.99995: fits
    assert usage_check() == [] and ledger_check() == []


def test_limits_endpoints_answer_in_the_asked_currency_with_the_reference_visible():
    jane = person()
    wallet = open_wallet(jane, "BTC", funded="1")
    client = client_for(jane)
    assert _withdraw(client, wallet, "0.01").status_code == 202

    shown = client.get("/api/v1/limits", {"type": "withdrawal", "currency": "BTC"})
    assert shown.status_code == 200, shown.content
    assert shown.json() == {
        "limit_check": "PASSED", "single_transaction_limit": "0.01538461", "daily_limit": "0.03076923", "daily_used": "0.01000000",
        "daily_remaining": "0.02076923", "monthly_limit": "0.07692307", "monthly_used": "0.01000000", "monthly_remaining": "0.06692307",
        "failed_limit": None, "type": "withdrawal", "direction": "outgoing", "currency": "BTC", "kyc_level": "none",
        "limit_currency": "USD", "reference_currency": "USD", "rate": "65000",
        "reference": {
            "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "650.00", "daily_remaining": "1350.00",
            "monthly_limit": "5000.00", "monthly_used": "650.00", "monthly_remaining": "4350.00", "amount": None,
        },
    }
    check = client.post("/api/v1/limits/check", {"type": "withdrawal", "amount": "0.016", "currency": "BTC"}, format="json").json()
    assert (check["limit_check"], check["failed_limit"], check["reference"]["amount"]) == ("FAILED", "single", "1040.00")
    usd = client.post("/api/v1/limits/check", {"type": "withdrawal", "amount": "1000", "currency": "USD"}, format="json").json()
    assert (usd["limit_check"], usd["single_transaction_limit"], usd["rate"]) == ("PASSED", "1000.00", "1")


def test_a_per_asset_rule_wins_over_the_reference_default(settings):
    settings.TWO_FACTOR_THRESHOLDS = {"BTC": "10"}  # not the subject here
    LimitRule.objects.create(
        kyc_level="none", movement_type="withdrawal", direction="outgoing", currency="BTC",
        single_limit=Decimal("0.5"), daily_limit=Decimal("1"), monthly_limit=None,
    )
    jane = person()
    wallet = open_wallet(jane, "BTC", funded="2")
    client = client_for(jane)
    assert _withdraw(client, wallet, "0.4").status_code == 202  # USD 26,000 worth: the BTC rule allows it
    over = _withdraw(client, wallet, "0.50000001")
    assert over.status_code == 422
    details = _error(over)["details"]
    assert (details["limit"], details["limit_currency"], details["reference_currency"]) == ("0.50000000", "BTC", "USD")
    shown = client.get("/api/v1/limits", {"type": "withdrawal", "currency": "BTC"}).json()
    assert (shown["limit_currency"], shown["single_transaction_limit"], shown["daily_used"]) == ("BTC", "0.50000000", "0.40000000")
    assert shown["reference"]["single_transaction_limit"] == "32500.00" and shown["reference"]["daily_used"] == "26000.00"
    # other assets keep the default
    assert client.get("/api/v1/limits", {"type": "withdrawal", "currency": "EUR"}).json()["limit_currency"] == "USD"
    assert usage_check() == []


# --- fees -----------------------------------------------------------------------------------------


def test_the_iban_fee_minimum_is_usd_1_worth_of_btc():
    jane = person()
    client = client_for(jane)

    def quote(amount, currency="BTC"):
        response = client.post("/api/v1/fees/quote", {"type": "withdrawal", "amount": amount, "currency": currency, "destination_type": "IBAN"}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    ten_millis = quote("0.01")  # 1% = 0.0001 BTC (USD 6.50), over the minimum
    assert (ten_millis["fee_amount"], ten_millis["fee_percentage"], ten_millis["total_amount"]) == ("0.00010000", "1.00", "0.01010000")
    assert (ten_millis["minimum_fee"], ten_millis["rule_currency"], ten_millis["reference_currency"], ten_millis["rate"]) == (
        "0.00001539", "USD", "USD", "65000")
    assert ten_millis["reference"] == {"fee_amount": "6.50", "fixed": "0.00", "minimum_fee": "1.00", "maximum_fee": None}

    small = quote("0.001")  # 1% = 0.00001 BTC (USD 0.65): raised to USD 1.00 worth, rounded up
    assert (small["fee_amount"], small["total_amount"], small["reference"]["fee_amount"]) == ("0.00001539", "0.00101539", "1.00")
    assert quote("5", "USD")["fee_amount"] == "1.00"  # in the reference currency itself: 1.00
    assert quote("50", "EUR")["fee_amount"] == "0.93"  # USD 1.00 at EUR 1.08, rounded up

    wallet = open_wallet(jane, "BTC", funded="1")
    withdrawn = _withdraw(client, wallet, "0.01")
    assert withdrawn.status_code == 202 and withdrawn.json()["fee"] == "0.00010000", withdrawn.content


def test_a_per_asset_fee_rule_wins_in_its_own_units():
    FeeRule.objects.create(movement_type="withdrawal", destination_type="IBAN", currency="BTC", percent=Decimal("1"), minimum=Decimal("0.001"))
    client = client_for(person())
    body = client.post("/api/v1/fees/quote", {"type": "withdrawal", "amount": "0.01", "currency": "BTC", "destination_type": "IBAN"}, format="json").json()
    assert (body["fee_amount"], body["minimum_fee"], body["rule_currency"], body["rate"]) == ("0.00100000", "0.00100000", "BTC", "65000")
    assert body["reference"]["fee_amount"] == "65.00" and body["reference"]["minimum_fee"] is None  # the rule is in BTC


# --- 2FA ------------------------------------------------------------------------------------------


def _with_totp(user) -> str:
    enrolment = totp_enrol(user=user)
    totp_confirm(user=user, code=pyotp.TOTP(enrolment.secret).now())
    return enrolment.secret


def test_step_up_starts_at_usd_5000_worth(settings):
    jane, john = _level(person(), "verified"), _level(person(), "verified")
    secret = _with_totp(jane)
    source, destination = open_wallet(jane, "BTC", funded="1"), open_wallet(john, "BTC")
    client = client_for(jane)

    below = _transfer(client, source, destination, "0.07692307")  # USD 4,999.99955
    assert below.status_code == 201, below.content
    at = _transfer(client, source, destination, "0.07692308")  # USD 5,000.0002
    assert at.status_code == 403 and _error(at)["code"] == "2FA_REQUIRED", at.content
    details = _error(at)["details"]
    assert (details["threshold"], details["currency"], details["reference_threshold"], details["reference_currency"], details["rate"]) == (
        "0.07692308", "BTC", "5000", "USD", "65000")
    now = timezone.now()
    passed = _transfer(client, source, destination, "0.07692308", code=pyotp.TOTP(secret).at(now, counter_offset=1))
    assert passed.status_code == 201, passed.content

    settings.TWO_FACTOR_THRESHOLDS = {"BTC": "0.5"}  # a per-asset threshold, in BTC, wins
    assert _transfer(client, source, destination, "0.1").status_code == 201
    assert _error(_transfer(client, source, destination, "0.5"))["code"] == "2FA_REQUIRED"


# --- exact recount across a price move ---------------------------------------------------------------


class _Feed(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def feed(settings):
    """A local HTTP price feed (the `http` provider's protocol); call it with a BTC price in USD."""
    handler = type("Feed", (_Feed,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def price(btc_usd: str) -> None:
        rates = {"EUR": "0.92", "BTC": str(Decimal(1) / Decimal(btc_usd))}
        handler.body = json.dumps({"base": "USD", "rates": rates, "as_of": timezone.now().isoformat()}).encode()
        settings.PRICE_PROVIDER = "http"
        settings.PRICE_FEED_URL = f"http://127.0.0.1:{server.server_address[1]}/rates-{btc_usd}.json"  # a new cache key per price

    yield price
    server.shutdown()
    server.server_close()


def test_usage_counted_at_each_movements_rate_recounts_exactly_after_the_price_moves(feed):
    jane, john = _level(person(), "basic"), person()
    source, destination = open_wallet(jane, "BTC", funded="1"), open_wallet(john, "BTC")
    client = client_for(jane)
    assert _transfer(client, source, destination, "0.01").status_code == 201  # sandbox: USD 65,000 / BTC
    feed("50000")
    assert _transfer(client, source, destination, "0.01").status_code == 201  # the feed: USD 50,000 / BTC

    counter = _counter(jane.customer, "BTC", "transfer", "outgoing")
    assert (counter.amount, counter.reference_amount) == (Decimal("0.02"), Decimal("1150"))  # 650 + 500
    received = _counter(john.customer, "BTC", "transfer", "incoming")
    assert received.reference_amount == Decimal("1150")
    stored = list(
        Posting.objects.filter(transaction__type="transfer", transaction__customer=jane.customer).order_by("transaction_id")
        .values_list("reference_rate", flat=True)
    )
    assert stored == [Decimal("65000"), Decimal("50000")]
    feed("80000")  # prices move again: what was counted stays, and recounts the same
    assert usage_check() == [] and ledger_check() == []
    shown = client.get("/api/v1/limits", {"type": "transfer", "currency": "BTC"}).json()
    assert (shown["rate"], shown["reference"]["daily_used"], shown["daily_used"]) == ("80000", "1150.00", "0.01437500")


def test_a_released_movement_gives_back_its_reference_usage_at_its_own_rate(feed):
    """A withdrawal whose payout fails releases what it charged, at the rate stored with it,
    whatever the price is by then."""
    from ledger.posting import ledger_fail_pending

    jane = _level(person(), "basic")  # no risk review: the withdrawal stays pending while paid out
    wallet = open_wallet(jane, "BTC", funded="1")
    client = client_for(jane)
    body = _withdraw(client, wallet, "0.01").json()
    assert body["status"] == "pending", body
    feed("40000")
    ledger_fail_pending(Transaction.objects.get(pk=body["id"]), code="PAYOUT_FAILED")
    counter = _counter(jane.customer, "BTC", "withdrawal", "outgoing")
    assert (counter.amount, counter.reference_amount, counter.count) == (Decimal("0"), Decimal("0"), 0)
    assert usage_check() == []


# --- per-asset overrides in the admin ------------------------------------------------------------------


def test_an_override_added_in_the_admin_wins_at_once():
    from django.test import Client
    from django.urls import reverse

    from tests.factories.accounts import UserFactory

    staff = Client()
    staff.force_login(UserFactory(is_staff=True, is_superuser=True, email="officer@coffer.test"))
    listing = staff.get(reverse("admin:compliance_limitrule_changelist"))
    assert listing.status_code == 200 and "USD (reference, every asset)" in listing.content.decode()

    jane = person()
    client = client_for(jane)
    wallet = open_wallet(jane, "BTC", funded="1")
    assert client.get("/api/v1/limits", {"type": "withdrawal", "currency": "BTC"}).json()["limit_currency"] == "USD"
    form = {"kyc_level": "none", "movement_type": "withdrawal", "direction": "outgoing", "currency": "btc",
            "single_limit": "0.1", "daily_limit": "0.2", "monthly_limit": ""}
    refused = staff.post(reverse("admin:compliance_limitrule_add"), {**form, "currency": "XYZ"})
    assert refused.status_code == 200 and "No asset XYZ" in refused.content.decode()
    added = staff.post(reverse("admin:compliance_limitrule_add"), form)
    assert added.status_code == 302, added.content.decode()[:2000]
    assert LimitRule.objects.get(currency="BTC").single_limit == Decimal("0.1")

    shown = client.get("/api/v1/limits", {"type": "withdrawal", "currency": "BTC"}).json()
    assert (shown["limit_currency"], shown["single_transaction_limit"], shown["monthly_limit"]) == ("BTC", "0.10000000", None)
    assert _withdraw(client, wallet, "0.02").status_code == 202  # over USD 1,000, within the BTC override
    assert _error(_withdraw(client, wallet, "0.10000001"))["details"]["limit_currency"] == "BTC"


# --- no price, no guess -------------------------------------------------------------------------------


def test_an_unreachable_price_feed_refuses_the_movement_rather_than_guess(settings):
    import socket

    jane = person()
    wallet = open_wallet(jane, "BTC", funded="1")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PRICE_PROVIDER = "http"
    settings.PRICE_FEED_URL = f"http://127.0.0.1:{port}/rates.json"
    settings.PRICE_FEED_TIMEOUT = 0.5
    response = _withdraw(client_for(jane), wallet, "0.01")
    assert response.status_code == 503 and _error(response)["code"] == "PRICE_UNAVAILABLE", response.content
    assert not Transaction.objects.filter(type="withdrawal").exists()
    limits = client_for(jane).get("/api/v1/limits", {"type": "withdrawal", "currency": "BTC"})
    assert limits.status_code == 503


def test_an_asset_nobody_prices_is_limited_only_by_rules_naming_it():
    from compliance.limits import limits_status
    from ledger.services import asset_create
    from tests.factories.accounts import CustomerFactory

    points = asset_create(code="PTS", name="Points", exponent=0)
    customer = CustomerFactory(kyc_level="none")
    shown = limits_status(customer=customer, asset=points, movement_type="deposit", amount=Decimal(1_000_000), always_usage=True).as_dict()
    assert (shown["limit_check"], shown["single_transaction_limit"], shown["limit_currency"], shown["rate"], shown["reference"]) == (
        "PASSED", None, "PTS", None, None)
    LimitRule.objects.create(kyc_level="none", movement_type="deposit", direction="incoming", currency="PTS", single_limit=Decimal(500))
    refused = limits_status(customer=customer, asset=points, movement_type="deposit", amount=Decimal(501)).as_dict()
    assert (refused["limit_check"], refused["failed_limit"], refused["single_transaction_limit"]) == ("FAILED", "single", "500")
