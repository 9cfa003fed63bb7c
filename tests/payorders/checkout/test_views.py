"""The hosted checkout page and its JSON endpoints through Django's test client: unknown ids,
what is shown (and what never is), the JSON shapes, CSRF, choosing a currency (JSON and plain
form), the live states from awaiting payment to completed, expiry, and rate limits."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from payorders.chains.sandbox import sandbox_mine, sandbox_send
from payorders.checkout.services import payment_qr_document
from payorders.models import PayOrder, PayOrderQuote, XpubKey
from payorders.services.addresses import xpub_key_register
from payorders.services.lifecycle import payorder_expire
from payorders.services.payments import payorder_refresh_confirmations, payorder_scan
from tests.factories.orgs import make_org_key
from tests.factories.payorders import PayOrderFactory
from tests.payorders.support import account_keys, merchant, new_merchant  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db
S = PayOrder.Status

STATE_KEYS = {
    "id", "status", "phase", "merchant", "amount", "currency", "description", "expires_at", "seconds_left", "payment",
    "amount_received", "amount_remaining", "confirmations", "confirmations_required", "underpaid", "overpaid",
    "late_payment", "redirect_url", "headline", "detail", "livemode", "can_switch_currency", "receipt", "completed_at",
}
PAYMENT_KEYS = {"deposit_address", "amount", "amount_due", "currency", "currency_name", "chain", "chain_name", "payment_uri", "price", "rate"}


def make_order(merchant, **extra) -> PayOrder:  # noqa: F811
    return PayOrderFactory(organization=merchant.organization, **{"amount": "100.00", "description": "Order #1001", **extra})


def page(client: Client, order) -> str:
    response = client.get(f"/pay/{order.public_id}")
    assert response.status_code == 200
    return response.content.decode()


def status(client: Client, order) -> dict:
    response = client.get(f"/pay/{order.public_id}/status.json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def token_from(client: Client, order) -> str:
    html = page(client, order)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page carries a CSRF token"
    assert "csrftoken" in client.cookies
    return match.group(1)


def post_json(client: Client, url: str, body: dict, token: str | None = None):
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def choose(client: Client, order, currency: str = "ETH", quote_id: str | None = None, token: str | None = None):
    body = {"currency": currency} | ({"quote_id": quote_id} if quote_id else {})
    return post_json(client, f"/pay/{order.public_id}/payment-details", body, token)


def backdate(order: PayOrder, seconds: int = 5) -> None:
    """The clock moves on: put the order's payment window `seconds` in the past."""
    PayOrder.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=seconds))


# --------------------------------------------------------------------------------------------
# Unknown ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_id", ["3f2c8a41-9d6e-4b7a-8c15-0e9d2f4a6b7c", "not-a-uuid", "1", "00000000-0000-0000-0000-000000000000"])
def test_unknown_or_malformed_id_is_a_friendly_404_everywhere(client, merchant, order_id):  # noqa: F811
    make_order(merchant)  # an order exists; its internal id (1, ...) is no way in
    response = client.get(f"/pay/{order_id}")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Payment request not found" in html and "<html" in html and "Traceback" not in html
    assert response["Cache-Control"] == "no-store"
    for path in ("status.json", "qr.svg"):
        response = client.get(f"/pay/{order_id}/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    for path in ("quote", "payment-details"):
        response = post_json(client, f"/pay/{order_id}/{path}", {"currency": "ETH"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_the_internal_id_does_not_open_the_page(client, merchant):  # noqa: F811
    order = make_order(merchant)
    assert client.get(f"/pay/{order.pk}").status_code == 404
    assert client.get(f"/pay/{str(order.public_id).upper()}").status_code == 200  # the same UUID


# --------------------------------------------------------------------------------------------
# The page and the status JSON
# --------------------------------------------------------------------------------------------


def test_page_shows_merchant_amount_description_and_currency_choice(client, merchant):  # noqa: F811
    order = make_order(merchant, description="Blue mug <b>x2</b>", metadata={"note": "internal-only-note"})
    response = client.get(f"/pay/{order.public_id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert merchant.organization.name in html
    assert '<span id="order-amount">100.00</span>' in html and ">USD<" in html
    assert "Blue mug &lt;b&gt;x2&lt;/b&gt;" in html and "<b>x2</b>" not in html  # escaped
    assert [m for m in re.findall(r'name="currency" value="(\w+)"', html)] == ["BTC", "ETH", "USDC"]
    assert "Choose how to pay" in html
    assert "internal-only-note" not in html
    assert re.search(r'<time id="countdown"[^>]*>(29:5\d|30:00)</time>', html)
    # hardening: no caching, no referrer (the URL is the capability), a strict CSP, no framing
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in response["Content-Security-Policy"] and "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in html  # no inline script: the state travels as a JSON data block
    state = json.loads(re.search(r'<script id="checkout-state" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert state["phase"] == "choose" and state["id"] == str(order.public_id)


def test_status_json_shape_and_no_internal_data(client, merchant, seed):  # noqa: F811
    order = make_order(merchant, metadata={"note": "internal-only-note"}, redirect_url="https://shop.example.com/thanks")
    other = make_order(new_merchant(seed, "Othershop"), description="someone else's order")
    body = status(client, order)
    assert set(body) == STATE_KEYS
    assert body["id"] == str(order.public_id) and body["status"] == "PENDING" and body["phase"] == "choose"
    assert body["merchant"] == merchant.organization.name
    assert (body["amount"], body["currency"], body["description"]) == ("100.00", "USD", "Order #1001")
    assert body["payment"] is None and body["confirmations"] == 0 and body["confirmations_required"] is None
    assert 1790 <= body["seconds_left"] <= 1800
    assert body["redirect_url"] is None  # only once completed
    text = json.dumps(body)
    assert "internal-only-note" not in text and str(other.public_id) not in text and "someone else" not in text
    assert not [k for k in body if k.endswith("_id") or k in ("pk", "organization", "customer", "metadata")]
    assert status(client, other)["merchant"] == "Othershop"


# --------------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------------


def test_posts_need_the_csrf_token(merchant):  # noqa: F811
    order = make_order(merchant)
    client = Client(enforce_csrf_checks=True)
    token = token_from(client, order)

    for path, body in (("quote", {}), ("payment-details", {"currency": "ETH"})):
        response = post_json(client, f"/pay/{order.public_id}/{path}", body)  # no header
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PERMISSION_DENIED" and response.json()["error"]["details"] == {"reason": "csrf"}
        response = post_json(client, f"/pay/{order.public_id}/{path}", body, token="x" * 64)  # a wrong one
        assert response.status_code == 403
    assert PayOrderQuote.objects.filter(pay_order=order).count() == 0
    order.refresh_from_db()
    assert order.status == S.PENDING and order.deposit_address_id is None

    stranger = Client(enforce_csrf_checks=True)  # a token without its cookie (another site's form)
    assert post_json(stranger, f"/pay/{order.public_id}/quote", {}, token=token).status_code == 403
    form = stranger.post(f"/pay/{order.public_id}/payment-details", {"currency": "ETH", "csrfmiddlewaretoken": token})
    assert form.status_code == 403

    ok = post_json(client, f"/pay/{order.public_id}/quote", {}, token=token)
    assert ok.status_code == 200, ok.content
    assert choose(client, order, "ETH", token=token).status_code == 200


# --------------------------------------------------------------------------------------------
# Quotes and payment details
# --------------------------------------------------------------------------------------------


def test_quote_then_choose_eth_gives_address_amount_uri_and_qr(client, merchant):  # noqa: F811
    order = make_order(merchant)
    response = post_json(client, f"/pay/{order.public_id}/quote", {})
    assert response.status_code == 200
    quotes = response.json()["quotes"]
    assert [q["currency"] for q in quotes] == ["BTC", "ETH", "USDC"]
    assert set(quotes[0]) == {"quote_id", "currency", "chain", "amount", "rate", "expires_at"}
    eth = quotes[1]
    stored = PayOrderQuote.objects.get(public_id=eth["quote_id"])
    assert eth["chain"] == "ethereum" and Decimal(eth["amount"]) == stored.amount
    assert not eth["amount"].endswith("0") and "E" not in eth["amount"]  # exact, as a payer types it

    response = choose(client, order, "ETH", eth["quote_id"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == STATE_KEYS | {"qr_svg"}
    assert body["phase"] == "awaiting_payment" and body["status"] == "AWAITING_PAYMENT"
    payment = body["payment"]
    assert set(payment) == PAYMENT_KEYS
    assert payment["amount"] == payment["amount_due"] == eth["amount"] and payment["currency"] == "ETH"
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", payment["deposit_address"])
    assert payment["payment_uri"].startswith(f"ethereum:{payment['deposit_address']}@11155111?value=")
    assert body["qr_svg"].startswith("<svg") and "<path" in body["qr_svg"] and "<script" not in body["qr_svg"]
    order.refresh_from_db()
    assert order.status == S.AWAITING_PAYMENT and order.quote.public_id == uuid.UUID(eth["quote_id"])

    # the same choice again (double click, reload, second tab): the same details
    again = choose(client, order, "ETH")
    assert again.status_code == 200 and again.json()["payment"] == payment
    # another currency once details exist: 409, the order is unchanged
    other = choose(client, order, "BTC")
    assert other.status_code == 409 and other.json()["error"]["code"] == "INVALID_STATE"
    order.refresh_from_db()
    assert order.source_currency == "ETH" and order.deposit_address.address == payment["deposit_address"]
    # quoting is over too
    assert post_json(client, f"/pay/{order.public_id}/quote", {}).status_code == 409

    # the page now renders the details and the QR code itself
    html = page(client, order)
    assert payment["deposit_address"] in html and payment["amount"] in html
    assert '<div class="qr" id="qr"><svg' in html and 'id="choose" class="choose" hidden' in html
    assert status(client, order)["payment"] == payment

    qr = client.get(f"/pay/{order.public_id}/qr.svg")
    assert qr.status_code == 200 and qr["Content-Type"] == "image/svg+xml"
    assert qr.content == payment_qr_document(payment["payment_uri"])


def test_choose_btc_gives_a_bip21_uri(client, merchant):  # noqa: F811
    order = make_order(merchant)
    body = choose(client, order, "btc").json()  # no quote shown: priced on the spot; any case
    assert body["payment"]["currency"] == "BTC" and body["payment"]["chain"] == "bitcoin"
    assert body["payment"]["deposit_address"].startswith("tb1q")
    assert body["payment"]["payment_uri"] == f"bitcoin:{body['payment']['deposit_address']}?amount={Decimal(body['payment']['amount']).normalize():f}"


def test_choose_refuses_bad_input_and_changes_nothing(client, merchant):  # noqa: F811
    order = make_order(merchant)
    quotes = post_json(client, f"/pay/{order.public_id}/quote", {}).json()["quotes"]
    btc_quote = quotes[0]["quote_id"]
    cases = [
        ({"currency": "DOGE"}, 400, "currency"),
        ({}, 400, "currency"),
        ({"currency": 7}, 400, "currency"),
        ({"currency": "ETH", "quote_id": btc_quote}, 400, "quote_id"),
    ]
    for body, code, field in cases:
        response = post_json(client, f"/pay/{order.public_id}/payment-details", body)
        assert response.status_code == code, (body, response.content)
        assert field in response.json()["error"]["details"]["fields"]
    response = post_json(client, f"/pay/{order.public_id}/payment-details", {"currency": "ETH", "quote_id": str(uuid.uuid4())})
    assert response.status_code == 404
    for raw in (b"{not json", b"[1, 2]"):
        response = client.post(f"/pay/{order.public_id}/payment-details", data=raw, content_type="application/json")
        assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get(f"/pay/{order.public_id}/payment-details").status_code == 405
    order.refresh_from_db()
    assert order.status == S.PENDING and order.deposit_address_id is None


def test_an_expired_quote_is_priced_again(client, merchant):  # noqa: F811
    order = make_order(merchant)
    quote = post_json(client, f"/pay/{order.public_id}/quote", {}).json()["quotes"][1]
    PayOrderQuote.objects.filter(public_id=quote["quote_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = choose(client, order, "ETH", quote["quote_id"])
    assert response.status_code == 200
    order.refresh_from_db()
    assert str(order.quote.public_id) != quote["quote_id"] and order.quote.source_currency == "ETH"


def test_only_currencies_the_merchant_can_receive_are_offered(client, seed):
    key = make_org_key("Ethonly")
    eth_xpub, _ = account_keys(seed, 40)
    xpub_key_register(organization=key.organization, chain="ethereum", xpub=eth_xpub)
    order = PayOrderFactory(organization=key.organization, amount="5", currency="EUR")
    html = page(client, order)
    assert re.findall(r'name="currency" value="(\w+)"', html) == ["ETH", "USDC"]
    assert [q["currency"] for q in post_json(client, f"/pay/{order.public_id}/quote", {}).json()["quotes"]] == ["ETH", "USDC"]
    refused = choose(client, order, "BTC")
    assert refused.status_code == 400 and "currency" in refused.json()["error"]["details"]["fields"]

    XpubKey.objects.filter(organization=key.organization).update(is_active=False)
    html = page(client, order)
    assert "cannot take crypto payments right now" in html
    assert post_json(client, f"/pay/{order.public_id}/quote", {}).json() == {"quotes": []}


def test_plain_form_post_without_javascript(merchant):  # noqa: F811
    order = make_order(merchant)
    client = Client(enforce_csrf_checks=True)
    token = token_from(client, order)
    response = client.post(f"/pay/{order.public_id}/payment-details", {"currency": "BTC", "csrfmiddlewaretoken": token})
    assert response.status_code == 303 and response["Location"] == f"/pay/{order.public_id}"
    html = page(client, order)
    order.refresh_from_db()
    assert order.deposit_address.address in html and '<div class="qr" id="qr"><svg' in html
    # a refused form post re-renders the page with the error
    response = client.post(f"/pay/{order.public_id}/payment-details", {"currency": "ETH", "csrfmiddlewaretoken": token})
    assert response.status_code == 409
    assert 'class="error" id="error" role="alert">' in response.content.decode()


# --------------------------------------------------------------------------------------------
# Live states: paid, confirming, completed (and the redirect), underpaid
# --------------------------------------------------------------------------------------------


def test_states_from_payment_to_completed_with_redirect(client, merchant):  # noqa: F811
    order = make_order(merchant, redirect_url="https://shop.example.com/thanks?order=1001")
    payment = choose(client, order, "ETH").json()["payment"]
    body = status(client, order)
    assert body["phase"] == "awaiting_payment" and body["headline"] == "Waiting for your payment"

    sandbox_send(to_address=payment["deposit_address"], amount=payment["amount"], currency="ETH")
    sandbox_mine(blocks=1)
    payorder_scan(order_id=order.pk)  # the watcher
    body = status(client, order)
    assert (body["status"], body["phase"]) == ("AWAITING_CONFIRMATION", "confirming")
    assert (body["confirmations"], body["confirmations_required"]) == (1, 3)
    assert body["detail"] == "Confirming on the Ethereum network: 1 of 3 confirmations."
    assert body["amount_received"] == payment["amount"] and body["redirect_url"] is None
    html = page(client, order)
    assert '<progress id="confirmations" max="3" value="1">' in html and 'id="pay" class="pay" hidden' in html

    sandbox_mine(blocks=2)
    payorder_refresh_confirmations(order_id=order.pk)
    body = status(client, order)
    assert (body["status"], body["phase"], body["headline"]) == ("COMPLETED", "completed", "Payment complete")
    assert body["redirect_url"] == "https://shop.example.com/thanks?order=1001"
    assert body["seconds_left"] > 0  # completed well before the window closed: still completed
    assert "Payment complete" in page(client, order)


def test_a_non_http_redirect_url_is_never_handed_to_the_page(client, merchant):  # noqa: F811
    order = make_order(merchant, redirect_url="javascript:alert(1)")
    payment = choose(client, order, "ETH").json()["payment"]
    sandbox_send(to_address=payment["deposit_address"], amount=payment["amount"], currency="ETH")
    sandbox_mine(blocks=3)
    payorder_scan(order_id=order.pk)
    payorder_refresh_confirmations(order_id=order.pk)
    body = status(client, order)
    assert body["phase"] == "completed" and body["redirect_url"] is None
    assert "javascript:" not in page(client, order)


def test_underpaid_shows_what_is_still_due(client, merchant):  # noqa: F811
    order = make_order(merchant)
    payment = choose(client, order, "ETH").json()["payment"]
    due = Decimal(payment["amount"])
    part = (due / 4).quantize(Decimal("1e-18"))
    sandbox_send(to_address=payment["deposit_address"], amount=part, currency="ETH")
    sandbox_mine(blocks=1)
    payorder_scan(order_id=order.pk)
    body = status(client, order)
    assert body["phase"] == "awaiting_payment" and body["underpaid"] and body["headline"] == "Partly paid"
    assert Decimal(body["amount_remaining"]) == due - part == Decimal(body["payment"]["amount_due"])
    assert body["payment"]["amount"] == payment["amount"]
    assert f"Send the remaining {body['amount_remaining']} ETH" in body["detail"]


# --------------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------------


def test_an_order_past_its_window_shows_expired_and_takes_no_choice(client, merchant):  # noqa: F811
    order = make_order(merchant)
    backdate(order)
    body = status(client, order)
    assert body["status"] == "PENDING" and body["phase"] == "expired" and body["seconds_left"] == 0  # not closed yet
    assert body["headline"] == "This payment request has expired"
    html = page(client, order)
    assert "This payment request has expired" in html
    assert 'id="choose" class="choose" hidden' in html and 'name="currency"' not in html
    assert 'id="countdown-row" hidden' in html
    for path, body in (("quote", {}), ("payment-details", {"currency": "ETH"})):
        response = post_json(client, f"/pay/{order.public_id}/{path}", body)
        assert response.status_code == 409 and response.json()["error"]["code"] == "QUOTE_EXPIRED"
    order.refresh_from_db()
    assert order.status == S.PENDING and order.deposit_address_id is None


def test_an_expired_order_shows_expired(client, merchant):  # noqa: F811
    order = make_order(merchant)
    payment = choose(client, order, "ETH").json()["payment"]
    backdate(order, seconds=3600)
    payorder_expire(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == S.EXPIRED
    body = status(client, order)
    assert (body["status"], body["phase"]) == ("EXPIRED", "expired")
    assert body["payment"]["deposit_address"] == payment["deposit_address"]
    html = page(client, order)
    assert "This payment request has expired" in html and "Ask " in html
    assert 'id="pay" class="pay" hidden' in html  # the address is no longer offered for payment
    # money that arrives late is recorded and the page says so
    sandbox_send(to_address=payment["deposit_address"], amount=payment["amount"], currency="ETH")
    sandbox_mine(blocks=1)
    payorder_scan(order_id=order.pk)
    body = status(client, order)
    assert body["late_payment"] and "refunded" in body["detail"]


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


def test_public_endpoints_are_rate_limited_per_address(client, merchant, settings):  # noqa: F811
    settings.CHECKOUT_RATE_LIMITS = {"status": "3/min", "page": "2/min", "post": "2/min"}
    order = make_order(merchant)
    url = f"/pay/{order.public_id}/status.json"
    assert [client.get(url, REMOTE_ADDR="203.0.113.5").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get(url, REMOTE_ADDR="203.0.113.5")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert client.get(url, REMOTE_ADDR="203.0.113.6").status_code == 200  # another address
    assert client.get(url, REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429  # not dodged

    for _ in range(2):
        assert client.get(f"/pay/{order.public_id}", REMOTE_ADDR="203.0.113.7").status_code == 200
    response = client.get(f"/pay/{order.public_id}", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429 and "Too many requests" in response.content.decode() and response["Retry-After"]

    quote_url = f"/pay/{order.public_id}/quote"
    codes = [client.post(quote_url, "{}", content_type="application/json", REMOTE_ADDR="203.0.113.8").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert PayOrderQuote.objects.filter(pay_order=order).count() == 6  # two quote requests of three currencies


# --------------------------------------------------------------------------------------------
# Racing choices (real threads, PostgreSQL row locks)
# --------------------------------------------------------------------------------------------


def _at_once(*calls):
    """Run the calls in threads released together; return their results (or exceptions)."""
    from tests.concurrency import run_in_threads

    return run_in_threads(len(calls), lambda i: calls[i](), timeout=60)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_choices_issue_one_address(seed):
    from importlib import import_module

    from django.apps import apps

    from payorders.models import DepositAddress

    import_module("ledger.migrations.0003_seed_assets").seed(apps, None)  # flushed by earlier transactional tests
    shop = new_merchant(seed, "Raceshop")
    same = make_order(shop)
    results = _at_once(*[lambda: choose(Client(), same, "ETH") for _ in range(4)])
    assert [r.status_code for r in results] == [200] * 4, [r.content for r in results]
    addresses = {r.json()["payment"]["deposit_address"] for r in results}
    same.refresh_from_db()
    assert addresses == {same.deposit_address.address}
    assert same.status_changes.filter(to_status=S.AWAITING_PAYMENT).count() == 1

    mixed = make_order(shop)
    before = DepositAddress.objects.count()
    results = _at_once(lambda: choose(Client(), mixed, "ETH"), lambda: choose(Client(), mixed, "BTC"))
    assert sorted(r.status_code for r in results) == [200, 409], [r.content for r in results]
    winner = next(r for r in results if r.status_code == 200).json()["payment"]
    mixed.refresh_from_db()
    assert mixed.source_currency == winner["currency"] and mixed.deposit_address.address == winner["deposit_address"]
    assert DepositAddress.objects.count() == before + 1  # the loser derived no address


# --- Issue 14: test mode, a broadcast payment, rates, switching coin, the receipt ---------------------


def test_sandbox_page_says_test_mode_and_pays_on_a_testnet(client, merchant):  # noqa: F811
    order = make_order(merchant)
    html = page(client, order)
    assert 'id="test-mode-badge"' in html and "Test mode" in html
    assert status(client, order)["livemode"] is False
    data = choose(client, order, "ETH", token=token_from(client, order)).json()
    assert data["livemode"] is False
    assert re.fullmatch(r"ethereum:0x[0-9a-fA-F]{40}@11155111\?value=\d+", data["payment"]["payment_uri"])
    btc_order = make_order(merchant)
    btc = choose(client, btc_order, "BTC", token=token_from(client, btc_order)).json()
    assert btc["payment"]["deposit_address"].startswith("tb1q")
    assert btc["payment"]["payment_uri"].startswith("bitcoin:tb1q")


def test_live_page_has_no_test_badge(client, merchant, settings):  # noqa: F811
    order = make_order(merchant)
    settings.CHAIN_PROVIDER = "evm"  # as if this deployment were live (the page asks no chain before a choice)
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    PayOrder.objects.filter(pk=order.pk).update(livemode=True)
    assert 'id="test-mode-badge"' not in page(client, order)


def test_quotes_and_details_show_the_rate_and_the_price(client, merchant):  # noqa: F811
    order = make_order(merchant, amount="42.50")
    token = token_from(client, order)
    quotes = post_json(client, f"/pay/{order.public_id}/quote", {}, token).json()["quotes"]
    eth = next(q for q in quotes if q["currency"] == "ETH")
    assert re.fullmatch(r"1 ETH = \d+\.\d{2} USD", eth["rate"]), eth["rate"]
    data = choose(client, order, "ETH", quote_id=eth["quote_id"], token=token).json()
    assert data["payment"]["price"] == "42.50 USD"
    assert data["payment"]["rate"] == eth["rate"]
    html = page(client, order)
    assert 'id="pay-rate"' in html and eth["rate"] in html


def test_a_broadcast_payment_is_detected_before_it_is_mined(client, merchant):  # noqa: F811
    order = make_order(merchant)
    data = choose(client, order, "ETH", token=token_from(client, order)).json()
    assert data["headline"] == "Waiting for your payment" and data["can_switch_currency"] is True
    tx_hash = sandbox_send(to_address=data["payment"]["deposit_address"], amount=data["payment"]["amount"], currency="ETH")
    state = status(client, order)  # not mined: the status poll looks at pending transfers itself
    assert state["phase"] == "confirming"
    assert state["headline"] == "Payment detected, waiting for confirmations"
    assert state["confirmations"] == 0 and state["can_switch_currency"] is False
    assert [r["tx_hash"] for r in state["receipt"]] == [tx_hash]
    order.refresh_from_db()
    (payment,) = order.payments.all()
    assert payment.block_number is None and payment.tx_hash == tx_hash

    sandbox_mine(blocks=1)
    payorder_scan(order_id=order.pk)  # the watcher sees the mined transfer: still one payment
    payorder_refresh_confirmations(order_id=order.pk)
    state = status(client, order)
    assert state["headline"] == "Payment received" and state["confirmations"] == 1
    assert order.payments.count() == 1


def test_pending_look_is_throttled_per_order(client, merchant, settings):  # noqa: F811
    settings.CHECKOUT_PENDING_SCAN_SECONDS = 60
    order = make_order(merchant)
    data = choose(client, order, "ETH", token=token_from(client, order)).json()
    assert status(client, order)["phase"] == "awaiting_payment"  # the look happened: nothing there yet
    sandbox_send(to_address=data["payment"]["deposit_address"], amount=data["payment"]["amount"], currency="ETH")
    assert status(client, order)["phase"] == "awaiting_payment"  # within the minute: no second look
    from django.core.cache import cache

    cache.delete(f"checkout-pending-scan:{order.public_id}")
    assert status(client, order)["phase"] == "confirming"


def test_payer_switches_coin_before_paying(client, merchant):  # noqa: F811
    order = make_order(merchant)
    token = token_from(client, order)
    eth = choose(client, order, "ETH", token=token).json()
    first_address = eth["payment"]["deposit_address"]
    back = post_json(client, f"/pay/{order.public_id}/choose-again", {}, token)
    assert back.status_code == 200, back.content
    assert back.json()["phase"] == "choose" and back.json()["payment"] is None
    order.refresh_from_db()
    assert order.status == S.PENDING and order.deposit_address_id is None
    assert order.status_changes.filter(to_status=S.PENDING, data__abandoned_address=first_address).exists()
    # again: idempotent
    assert post_json(client, f"/pay/{order.public_id}/choose-again", {}, token).status_code == 200
    btc = choose(client, order, "BTC", token=token).json()
    assert btc["phase"] == "awaiting_payment" and btc["payment"]["currency"] == "BTC"

    # once something was sent to the address, no switching
    sandbox_send(to_address=btc["payment"]["deposit_address"], amount="0.00001", currency="BTC")
    refused = post_json(client, f"/pay/{order.public_id}/choose-again", {}, token)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
    order.refresh_from_db()
    assert order.source_currency == "BTC" and order.underpaid is True


def test_choose_again_plain_form_and_csrf(client, merchant):  # noqa: F811
    order = make_order(merchant)
    token = token_from(client, order)
    choose(client, order, "ETH", token=token)
    strict = Client(enforce_csrf_checks=True)
    assert post_json(strict, f"/pay/{order.public_id}/choose-again", {}).status_code == 403
    response = client.post(f"/pay/{order.public_id}/choose-again", {"csrfmiddlewaretoken": token})
    assert response.status_code == 303 and response["Location"] == f"/pay/{order.public_id}"
    order.refresh_from_db()
    assert order.status == S.PENDING


def test_receipt_links_the_transaction_to_the_explorer_from_settings(client, merchant, settings):  # noqa: F811
    settings.CHAIN_EXPLORER_TEST_TX_URLS = {"ethereum": "https://explorer.example/tx/{tx_hash}"}
    order = make_order(merchant, redirect_url="https://shop.example.com/thanks")
    data = choose(client, order, "ETH", token=token_from(client, order)).json()
    tx_hash = sandbox_send(to_address=data["payment"]["deposit_address"], amount=data["payment"]["amount"], currency="ETH")
    sandbox_mine(blocks=3)
    payorder_scan(order_id=order.pk)
    payorder_refresh_confirmations(order_id=order.pk)
    state = status(client, order)
    assert state["phase"] == "completed" and state["redirect_url"] == "https://shop.example.com/thanks"
    (row,) = state["receipt"]
    assert row["tx_hash"] == tx_hash and row["explorer_url"] == f"https://explorer.example/tx/{tx_hash}"
    assert row["amount"] == data["payment"]["amount"] and row["currency"] == "ETH" and row["detected_at"]
    html = page(client, order)
    assert f'href="https://explorer.example/tx/{tx_hash}"' in html and 'id="receipt"' in html
    settings.CHAIN_EXPLORER_TEST_TX_URLS = {"ethereum": "javascript:alert(1)//{tx_hash}"}
    assert status(client, order)["receipt"][0]["explorer_url"] is None
