"""POST /exchanges/quote and /exchanges: the bid rate, the 0.5% fee, the destination amount
rounded DOWN to the destination exponent, one posting through the platform's FX accounts,
once; QUOTE_EXPIRED, a used quote, an empty FX float, BOLA and bad amounts."""

import json
import uuid
from decimal import ROUND_FLOOR, Decimal

import pytest

from core.prices import get_price_provider
from ledger.checks import ledger_check
from ledger.models import Asset, Entry, Transaction, Wallet
from ledger.selectors import platform_account_balance
from tests.factories.wallets import asset, client_for, open_wallet
from wallets.models import ExchangeQuote
from wallets.movements.exchanges import fx_float_fund

QUOTE, EXECUTE = "/api/v1/exchanges/quote", "/api/v1/exchanges"


def _code(response) -> str:
    return response.json()["error"]["code"]


def _wallet(w) -> Wallet:
    return Wallet.objects.get(pk=w.pk)


def _quote(client, source, destination, amount):
    return client.post(QUOTE, {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount}, format="json")


def _execute(client, quote_id, key=None):
    return client.post(EXECUTE, {"quote_id": quote_id}, format="json", headers={"Idempotency-Key": key or str(uuid.uuid4())})


@pytest.fixture
def fx_float(db):
    for code, per_shard in (("EUR", "10000"), ("USD", "10000"), ("BTC", "1")):
        fx_float_fund(asset=asset(code), per_shard=Decimal(per_shard))


@pytest.mark.django_db
class TestQuote:
    def test_quote_uses_the_bid_and_rounds_the_destination_down(self, jane):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        response = _quote(client_for(jane), usd, eur, "100.00")
        assert response.status_code == 201, response.content
        body = response.json()
        bid = get_price_provider().quote("USD", "EUR").bid
        exact = Decimal("99.50") * bid
        expected = exact.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
        assert body["fee"] == "0.50" and body["amount"] == "100.00"
        assert Decimal(body["rate"]) == bid
        assert body["destination_amount"] == str(expected)
        assert Decimal(body["destination_amount"]) <= exact < Decimal(body["destination_amount"]) + Decimal("0.01")
        assert exact != expected  # the case really rounds
        assert body["status"] == "open" and body["transaction_id"] is None
        assert _wallet(usd).held == 0 and _wallet(usd).balance == Decimal("500")  # nothing moves

    def test_crypto_destination_rounds_to_its_own_exponent(self, jane):
        usd, btc = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "BTC")
        body = _quote(client_for(jane), usd, btc, "100.00").json()
        bid = get_price_provider().quote("USD", "BTC").bid
        assert body["destination_amount"] == str((Decimal("99.50") * bid).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR))
        assert len(body["destination_amount"].split(".")[1]) == 8

    def test_fee_rounds_up(self, jane):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        assert _quote(client_for(jane), usd, eur, "10.01").json()["fee"] == "0.06"  # 0.05005 -> 0.06

    def test_same_currency_and_tiny_amounts_are_400(self, jane):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        savings = open_wallet(jane, "USD", label="savings")
        same = _quote(client_for(jane), usd, savings, "10")
        assert same.status_code == 400 and "destination_wallet_id" in same.json()["error"]["details"]["fields"]
        tiny = _quote(client_for(jane), usd, eur, "0.01")  # the fee (rounded up) eats it all
        assert tiny.status_code == 400 and "amount" in tiny.json()["error"]["details"]["fields"]

    @pytest.mark.parametrize("amount, says", [
        ("0", "greater than zero"), ("-1", "positive"), ("1.001", "at most 2 decimals"), ("NaN", "finite"), ("1e3", "exponent"),
        ("", "required"), ("abc", "decimal number"), (True, "boolean"), (None, "null"),
    ])
    def test_bad_amounts_name_the_field(self, jane, amount, says):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        response = _quote(client_for(jane), usd, eur, amount)
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"
        assert says in json.dumps(response.json()["error"]["details"]["fields"]["amount"])
        assert not ExchangeQuote.objects.exists()

    def test_someone_elses_wallets_are_404(self, jane, john):
        mine, theirs = open_wallet(jane, "USD", funded="100"), open_wallet(john, "EUR")
        assert _quote(client_for(jane), mine, theirs, "10").status_code == 404
        theirs_usd, my_eur = open_wallet(john, "USD", funded="100"), open_wallet(jane, "EUR")
        assert _quote(client_for(jane), theirs_usd, my_eur, "10").status_code == 404
        assert not ExchangeQuote.objects.exists()


@pytest.mark.django_db
class TestExecute:
    def test_executes_once_through_the_fx_accounts(self, jane, fx_float):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        client = client_for(jane)
        quote = _quote(client, usd, eur, "100.00").json()
        fx_eur_before = platform_account_balance(asset=asset("EUR"), purpose="fx")
        fx_usd_before = platform_account_balance(asset=asset("USD"), purpose="fx")
        key = str(uuid.uuid4())
        response = _execute(client, quote["quote_id"], key=key)
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["type"], body["status"], body["amount"], body["currency"], body["fee"]) == ("exchange", "completed", "100.00", "USD", "0.50")
        assert (body["source_wallet_id"], body["destination_wallet_id"], body["balance_after"]) == (usd.pk, eur.pk, "400.00")
        assert body["quote"]["status"] == "executed" and body["quote"]["transaction_id"] == body["id"]
        dest = Decimal(quote["destination_amount"])
        assert _wallet(usd).balance == Decimal("400.00") and _wallet(eur).balance == dest
        assert platform_account_balance(asset=asset("USD"), purpose="fx") - fx_usd_before == Decimal("99.50")
        assert platform_account_balance(asset=asset("USD"), purpose="fee") == Decimal("0.50")
        assert fx_eur_before - platform_account_balance(asset=asset("EUR"), purpose="fx") == dest
        tx = Transaction.objects.get(pk=body["id"])
        assert Entry.objects.filter(transaction=tx).count() == 6  # three legs, one posting
        assert ledger_check() == []

        replay = _execute(client, quote["quote_id"], key=key)
        assert replay["Idempotency-Replayed"] == "true" and replay.content == response.content
        again = _execute(client, quote["quote_id"])
        assert again.status_code == 409 and _code(again) == "INVALID_STATE"
        assert _wallet(usd).balance == Decimal("400.00") and Transaction.objects.filter(type="exchange").count() == 1

    def test_expired_quote_is_409_and_moves_nothing(self, jane, fx_float, settings):
        settings.EXCHANGE_QUOTE_TTL_SECONDS = 0
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        quote = _quote(client_for(jane), usd, eur, "100.00").json()
        response = _execute(client_for(jane), quote["quote_id"])
        assert response.status_code == 409 and _code(response) == "QUOTE_EXPIRED"
        assert _wallet(usd).balance == Decimal("500") and _wallet(eur).balance == 0
        assert not Transaction.objects.filter(type="exchange").exists()

    def test_an_empty_fx_float_is_insufficient_funds(self, jane):
        usd, eur = open_wallet(jane, "USD", funded="500"), open_wallet(jane, "EUR")
        quote = _quote(client_for(jane), usd, eur, "100.00").json()
        response = _execute(client_for(jane), quote["quote_id"])
        assert response.status_code == 422 and _code(response) == "INSUFFICIENT_FUNDS"
        assert response.json()["error"]["details"]["float"] is True and "float" in response.json()["error"]["message"]
        assert _wallet(usd).balance == Decimal("500") and _wallet(eur).balance == 0
        assert ExchangeQuote.objects.get().status == "open"  # usable once the float is funded
        fx_float_fund(asset=asset("EUR"), per_shard=Decimal("1000"))
        assert _execute(client_for(jane), quote["quote_id"]).status_code == 201
        assert ledger_check() == []

    def test_insufficient_source_funds(self, jane, fx_float):
        usd, eur = open_wallet(jane, "USD", funded="50"), open_wallet(jane, "EUR")
        quote = _quote(client_for(jane), usd, eur, "100.00").json()  # quoting does not check funds
        response = _execute(client_for(jane), quote["quote_id"])
        assert response.status_code == 422 and _code(response) == "INSUFFICIENT_FUNDS"
        assert response.json()["error"]["details"].get("float") is None
        assert _wallet(usd).balance == Decimal("50")

    def test_someone_elses_quote_is_404(self, jane, john, fx_float):
        usd, eur = open_wallet(john, "USD", funded="500"), open_wallet(john, "EUR")
        quote = _quote(client_for(john), usd, eur, "10").json()
        response = _execute(client_for(jane), quote["quote_id"])
        assert response.status_code == 404 and _code(response) == "NOT_FOUND"
        assert _execute(client_for(jane), str(uuid.uuid4())).status_code == 404
        assert _wallet(usd).balance == Decimal("500")

    def test_malformed_quote_id_is_400(self, jane):
        response = _execute(client_for(jane), "not-a-uuid")
        assert response.status_code == 400 and "quote_id" in response.json()["error"]["details"]["fields"]

    def test_outgoing_exchange_limit(self, jane, fx_float):
        usd, eur = open_wallet(jane, "USD", funded="3000"), open_wallet(jane, "EUR")
        quote = _quote(client_for(jane), usd, eur, "1000.01").json()
        response = _execute(client_for(jane), quote["quote_id"])
        assert response.status_code == 422 and _code(response) == "LIMIT_EXCEEDED"
        assert response.json()["error"]["details"]["type"] == "exchange"
        assert _wallet(usd).balance == Decimal("3000")

    def test_fx_float_funding_is_idempotent(self, db):
        eur = asset("EUR")
        first = fx_float_fund(asset=eur, per_shard=Decimal("100"))
        assert first is not None and fx_float_fund(asset=eur, per_shard=Decimal("100")) is None
        shards = Wallet.objects.filter(asset=eur, purpose="fx")
        assert shards.count() >= 1 and all(w.balance == Decimal("100") for w in shards)
        assert Asset.objects.filter(code="EUR").count() == 1 and ledger_check() == []
