"""Review of the limit checks on the money path (SPEC 4, SPEC 11): what a movement is enforced
for must be what it later counts for in usage, or a customer passes a limit by repeating it."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Customer
from ledger.models import Transaction, Wallet
from tests.factories.wallets import asset, client_for, open_wallet
from wallets.movements.exchanges import fx_float_fund

QUOTE, EXECUTE = "/api/v1/exchanges/quote", "/api/v1/exchanges"


@pytest.fixture
def settled(jane):
    """Jane, signed up a month ago (a first large movement within 24 h of sign-up goes to review)."""
    Customer.objects.filter(pk=jane.customer.pk).update(created_at=timezone.now() - timedelta(days=30))
    return jane


@pytest.fixture
def fx_float(db):
    for code, per_shard in (("EUR", "10000"), ("USD", "10000")):
        fx_float_fund(asset=asset(code), per_shard=Decimal(per_shard))


def _exchange(client, source, destination, amount):
    quote = client.post(QUOTE, {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount}, format="json")
    assert quote.status_code == 201, quote.content
    return client.post(EXECUTE, {"quote_id": quote.json()["quote_id"]}, format="json", headers={"Idempotency-Key": str(uuid.uuid4())})


@pytest.mark.django_db
class TestExchangeUsage:
    """An exchange is enforced for its whole source amount (the fee is part of what leaves the
    wallet: `exchange_execute` passes `quote.source_amount`), so its usage must count the whole
    source amount too. Counting it net of the fee let a KYC-none customer (daily 2,000) exchange
    2,010 USD in a day: 1,000 + 1,000 counted as 995 + 995."""

    def test_the_daily_limit_counts_the_fee_inside_an_exchange(self, settled, fx_float):
        usd, eur = open_wallet(settled, "USD", funded="2500"), open_wallet(settled, "EUR")
        client = client_for(settled)
        assert [_exchange(client, usd, eur, "1000.00").status_code for _ in range(2)] == [201, 201]
        refused = _exchange(client, usd, eur, "10.00")
        assert refused.status_code == 422, refused.content
        error = refused.json()["error"]
        assert error["code"] == "LIMIT_EXCEEDED" and error["details"]["limit_type"] == "daily"
        assert error["details"]["used"] == "2000.00" and error["details"]["type"] == "exchange"
        assert Wallet.objects.get(pk=usd.pk).balance == Decimal("500.00")
        assert Transaction.objects.filter(type="exchange", status="completed").count() == 2

    def test_the_limits_endpoint_reports_the_whole_source_amount_as_used(self, settled, fx_float):
        usd, eur = open_wallet(settled, "USD", funded="2500"), open_wallet(settled, "EUR")
        client = client_for(settled)
        assert _exchange(client, usd, eur, "1000.00").status_code == 201
        check = client.post("/api/v1/limits/check", {"type": "exchange", "amount": "1000.01", "currency": "USD"}, format="json")
        assert check.status_code == 200, check.content
        body = check.json()
        assert body["daily_used"] == "1000.00" and body["limit_check"] == "FAILED"

    def test_a_withdrawal_fee_charged_on_top_still_does_not_count(self, settled):
        """The other side of the rule, unchanged: a withdrawal is enforced for the amount asked
        (the fee comes on top), so its usage leaves the fee out."""
        wallet = open_wallet(settled, "USD", funded="3000")
        client = client_for(settled)
        body = {"wallet_id": wallet.pk, "amount": "1000.00", "destination": {"type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Smith"}}
        first = client.post("/api/v1/withdrawals", body, format="json", headers={"Idempotency-Key": str(uuid.uuid4())})
        assert first.status_code == 202, first.content
        second = client.post("/api/v1/withdrawals", body, format="json", headers={"Idempotency-Key": str(uuid.uuid4())})
        assert second.status_code == 202, second.content  # 1000 + 1000 = the daily 2000, fees (10 each) not counted

    def test_an_exchange_held_for_review_counts_its_whole_source_amount(self, jane, fx_float):
        """A brand-new customer's first large movement goes to review (SPEC 11): its usage is
        read from the stored operations, and must count the fee leg as well."""
        usd, eur = open_wallet(jane, "USD", funded="2500"), open_wallet(jane, "EUR")
        client = client_for(jane)
        held = _exchange(client, usd, eur, "1000.00")
        assert held.status_code == 202 and held.json()["status"] == "in_review", held.content
        check = client.post("/api/v1/limits/check", {"type": "exchange", "amount": "1000.00", "currency": "USD"}, format="json")
        assert check.json()["daily_used"] == "1000.00" and check.json()["daily_remaining"] == "1000.00"
