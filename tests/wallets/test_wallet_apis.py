"""Wallets of a user: open, list, read, statement. Someone else's wallet is a 404."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ledger.models import Wallet
from ledger.posting import Transfer, ledger_post
from ledger.services import wallet_suspend
from tests.factories.wallets import client_for, open_wallet

pytestmark = pytest.mark.django_db


def _code(response):
    return response.json()["error"]["code"]


class TestOpen:
    def test_open_a_wallet(self, jane, usd):
        response = client_for(jane).post("/api/v1/wallets", {"currency": "usd"}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["currency"] == "USD" and body["balance"] == "0.00" and body["available_balance"] == "0.00"
        assert body["status"] == "active" and body["owner_name"] == jane.full_name
        wallet = Wallet.objects.get(pk=body["id"])
        assert wallet.customer.user == jane and wallet.kind == Wallet.Kind.CUSTOMER

    def test_one_unlabelled_wallet_per_currency_but_labels_allowed(self, jane, usd):
        client = client_for(jane)
        assert client.post("/api/v1/wallets", {"currency": "USD"}, format="json").status_code == 201
        again = client.post("/api/v1/wallets", {"currency": "USD"}, format="json")
        assert again.status_code == 409 and _code(again) == "WALLET_EXISTS"
        labelled = client.post("/api/v1/wallets", {"currency": "USD", "label": "savings"}, format="json")
        assert labelled.status_code == 201 and labelled.json()["label"] == "savings"

    @pytest.mark.parametrize("body, field", [({"currency": "XXX"}, "currency"), ({}, "currency"), ({"currency": "USD", "label": "x" * 101}, "label")])
    def test_bad_input_is_400_naming_the_field(self, jane, usd, body, field):
        response = client_for(jane).post("/api/v1/wallets", body, format="json")
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"
        assert field in response.json()["error"]["details"]["fields"]

    def test_anonymous_is_401(self, usd):
        response = APIClient().post("/api/v1/wallets", {"currency": "USD"}, format="json")
        assert response.status_code == 401 and _code(response) == "AUTHENTICATION_FAILED"

    def test_a_user_without_a_customer_profile_gets_one(self, usd):
        from tests.factories.accounts import UserFactory

        user = UserFactory()
        response = client_for(user).post("/api/v1/wallets", {"currency": "USD"}, format="json")
        assert response.status_code == 201
        assert Wallet.objects.get(pk=response.json()["id"]).customer.user == user


class TestRead:
    def test_list_shows_only_my_wallets(self, jane, john):
        mine = [open_wallet(jane, "USD"), open_wallet(jane, "EUR")]
        open_wallet(john, "USD")
        body = client_for(jane).get("/api/v1/wallets").json()
        assert body["count"] == 2 and body["limit"] == 20 and body["offset"] == 0
        assert [w["id"] for w in body["results"]] == [w.pk for w in mine]

    def test_detail_with_balances_and_holds(self, jane):
        wallet = open_wallet(jane, "USD", funded="700.00")
        withdrawal = client_for(jane).post("/api/v1/withdrawals", {"wallet_id": wallet.pk, "amount": "49.00", "destination": {
            "type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Doe"}}, format="json", headers={"Idempotency-Key": "w-1"})
        assert withdrawal.status_code == 202 and withdrawal.json()["fee"] == "1.00"  # the payout in flight holds 49.00 + 1.00
        body = client_for(jane).get(f"/api/v1/wallets/{wallet.pk}").json()
        assert body["balance"] == "700.00" and body["available_balance"] == "650.00" and body["held_balance"] == "50.00"
        assert set(body) >= {"id", "currency", "status", "owner_name", "created_at", "updated_at"}

    @pytest.mark.postgres  # SQLite keeps NUMERIC as a double: 19 significant digits do not survive
    def test_eth_amounts_keep_18_decimals(self, jane):
        wallet = open_wallet(jane, "ETH", funded="9.223372036854775808")
        body = client_for(jane).get(f"/api/v1/wallets/{wallet.pk}").json()
        assert body["balance"] == "9.223372036854775808"

    def test_someone_elses_wallet_is_404(self, jane, john):
        theirs = open_wallet(john, "USD", funded="10")
        client = client_for(jane)
        for url in (f"/api/v1/wallets/{theirs.pk}", f"/api/v1/wallets/{theirs.pk}/entries", "/api/v1/wallets/999999"):
            response = client.get(url)
            assert response.status_code == 404 and _code(response) == "NOT_FOUND", url

    def test_statement_newest_first_paginated(self, jane, john):
        wallet = open_wallet(jane, "USD", funded="100.00")
        other = open_wallet(john, "USD")
        for amount in ("10.00", "20.00", "30.00"):
            ledger_post(type="transfer", operations=[Transfer(source=wallet, destination=other, amount=Decimal(amount))]).raise_for_error()
        client = client_for(jane)
        body = client.get(f"/api/v1/wallets/{wallet.pk}/entries").json()
        assert body["count"] == 4
        first = body["results"][0]
        assert first == {
            "id": first["id"], "transaction_id": first["transaction_id"], "wallet_id": wallet.pk, "entry_type": "debit",
            "amount": "30.00", "currency": "USD", "balance_after": "40.00", "created_at": first["created_at"],
        }
        assert [e["balance_after"] for e in body["results"]] == ["40.00", "70.00", "90.00", "100.00"]
        assert [e["entry_type"] for e in body["results"]] == ["debit", "debit", "debit", "credit"]
        page = client.get(f"/api/v1/wallets/{wallet.pk}/entries?limit=2&offset=1").json()
        assert [e["balance_after"] for e in page["results"]] == ["70.00", "90.00"]
        bad = client.get(f"/api/v1/wallets/{wallet.pk}/entries?limit=abc")
        assert bad.status_code == 400

    def test_statement_by_date_range(self, jane, john):
        wallet = open_wallet(jane, "USD", funded="100.00")
        ledger_post(type="transfer", operations=[Transfer(source=wallet, destination=open_wallet(john, "USD"), amount=Decimal("10.00"))]).raise_for_error()
        client = client_for(jane)
        url = f"/api/v1/wallets/{wallet.pk}/entries"
        today = timezone.now().date()
        counts = {
            "": 2,
            f"?from={today.isoformat()}": 2,
            f"?to={today.isoformat()}": 2,  # a bare date includes that whole day
            f"?from={(today + timedelta(days=1)).isoformat()}": 0,
            f"?to={(today - timedelta(days=1)).isoformat()}": 0,
            f"?from={(timezone.now() - timedelta(hours=1)).isoformat().replace('+00:00', 'Z')}": 2,
        }
        for query, expected in counts.items():
            response = client.get(url + query)
            assert response.status_code == 200, (query, response.content)
            assert response.json()["count"] == expected, query
        bad = client.get(url + "?from=yesterday")
        assert bad.status_code == 400 and _code(bad) == "VALIDATION_ERROR"
        assert "from" in bad.json()["error"]["details"]["fields"]

    def test_suspended_wallet_is_still_readable(self, jane):
        wallet = open_wallet(jane, "USD", funded="5")
        wallet_suspend(wallet=wallet)
        assert client_for(jane).get(f"/api/v1/wallets/{wallet.pk}").json()["status"] == "suspended"
