"""Review of amount edge cases on the exchange quote: an amount the source asset accepts can
convert into more than the ledger can store in the destination asset."""

from decimal import Decimal

import pytest

from tests.wallets.conftest import client_for, open_wallet
from wallets.models import ExchangeQuote

QUOTE = "/api/v1/exchanges/quote"


@pytest.mark.django_db
class TestHugeExchangeQuotes:
    def test_a_destination_amount_too_large_to_store_is_a_400_naming_amount(self, jane):
        """20 integer digits of BTC is a valid BTC amount, but at the BTC/USD bid it is a
        25-digit USD amount: NUMERIC(38, 18) cannot hold it (it was a 500 from the database)."""
        btc, usd = open_wallet(jane, "BTC"), open_wallet(jane, "USD")
        response = client_for(jane).post(
            QUOTE, {"source_wallet_id": btc.pk, "destination_wallet_id": usd.pk, "amount": "99999999999999999999"}, format="json"
        )
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and "amount" in error["details"]["fields"]
        assert not ExchangeQuote.objects.exists()

    def test_the_largest_storable_destination_amount_still_quotes(self, jane):
        btc, usd = open_wallet(jane, "BTC"), open_wallet(jane, "USD")
        response = client_for(jane).post(
            QUOTE, {"source_wallet_id": btc.pk, "destination_wallet_id": usd.pk, "amount": "1000"}, format="json"
        )
        assert response.status_code == 201, response.content
        assert Decimal(response.json()["destination_amount"]) > 0
