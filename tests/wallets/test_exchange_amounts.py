"""Review of amount edge cases on the exchange quote: an amount the source asset accepts can
convert into more than the ledger can store in the destination asset."""

from decimal import Decimal

import pytest

from tests.factories.wallets import client_for, open_wallet
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


@pytest.mark.django_db
@pytest.mark.postgres  # SQLite keeps decimals as floats and cannot read a 20-digit USD amount back at all
class TestBalanceOverflow:
    def test_a_deposit_that_would_overflow_the_balance_is_a_400_and_moves_nothing(self, jane):
        """Enhanced KYC has no limits: two deposits of 20 integer digits each were a 500 from the
        database (numeric field overflow) on the second; now a 400 before anything is written."""
        import uuid

        from ledger.checks import ledger_check
        from ledger.models import Transaction, Wallet

        jane.customer.kyc_level = "enhanced"
        jane.customer.save(update_fields=["kyc_level"])
        wallet = open_wallet(jane, "USD")
        client = client_for(jane)

        def deposit():
            return client.post("/api/v1/deposits", {"wallet_id": wallet.pk, "amount": "99999999999999999999"}, format="json",
                               headers={"Idempotency-Key": str(uuid.uuid4())})

        assert deposit().status_code == 201
        second = deposit()
        assert second.status_code == 400, second.content
        assert second.json()["error"]["code"] == "VALIDATION_ERROR"
        assert Wallet.objects.get(pk=wallet.pk).balance == Decimal("99999999999999999999")
        assert Transaction.objects.filter(type="deposit").count() == 1 and ledger_check() == []
