"""POST /deposits and /transfers end to end: the idempotency layer, the posting engine and the
HTTP contract together (issue 4, items 7-8). Concurrency tests run real threads on PostgreSQL
and end with `ledger_check()` clean."""

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from core.idempotency import request_fingerprint
from core.models import IdempotencyRecord
from ledger.checks import ledger_check
from ledger.models import Entry, Transaction, Wallet
from ledger.services import wallet_suspend
from tests.concurrency import blocked_insert_pid, in_background, redis_flushing, redis_forget, run_in_threads
from tests.factories.wallets import client_for, open_wallet, person

DEPOSITS = "/api/v1/deposits"
TRANSFERS = "/api/v1/transfers"


def _key() -> str:
    return str(uuid.uuid4())


def _code(response) -> str:
    return response.json()["error"]["code"]


def _balance(wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).balance


def _deposit(client, wallet, amount="100.00", key=None, raw=None, **extra):
    headers = {"Idempotency-Key": key or _key()}
    if raw is not None:
        return client.post(DEPOSITS, data=raw, content_type="application/json", headers=headers)
    return client.post(DEPOSITS, {"wallet_id": wallet.pk, "amount": amount, **extra}, format="json", headers=headers)


def _transfer(client, source, destination, amount="10.00", currency="USD", key=None, **extra):
    body = {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount, "currency": currency, **extra}
    return client.post(TRANSFERS, body, format="json", headers={"Idempotency-Key": key or _key()})


# --- Deposits -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestDeposits:
    def test_deposit_credits_my_wallet(self, jane):
        wallet = open_wallet(jane, "USD")
        response = _deposit(client_for(jane), wallet, "200.5", source="card")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body == {
            "id": body["id"], "type": "deposit", "status": "completed", "amount": "200.50", "currency": "USD", "fee": "0.00",
            "source_wallet_id": None, "source_wallet_name": None,
            "destination_wallet_id": wallet.pk, "destination_wallet_name": jane.full_name,
            "reference": "", "description": "Deposit from card",
            "created_at": body["created_at"], "completed_at": body["completed_at"], "balance_after": "200.50", "livemode": False,
        }
        assert body["completed_at"] is not None
        assert _balance(wallet) == Decimal("200.50")
        tx = Transaction.objects.get(pk=body["id"])
        assert tx.customer == jane.customer and tx.metadata == {"source": "card"}
        assert Entry.objects.filter(transaction=tx).count() == 2
        assert ledger_check() == []

    def test_json_number_amount_is_exact(self, jane):
        wallet = open_wallet(jane, "ETH")
        raw = json.dumps({"wallet_id": wallet.pk})[:-1] + ', "amount": 0.000000000000000001}'
        response = _deposit(client_for(jane), wallet, raw=raw)
        assert response.status_code == 201, response.content
        assert response.json()["amount"] == "0.000000000000000001"
        assert _balance(wallet) == Decimal("1E-18")

    BAD_AMOUNTS = [
        ("0", "greater than zero"), ("0.00", "greater than zero"), ("-5.00", "positive"), ("1.001", "at most 2 decimals"),
        ("NaN", "finite"), ("Infinity", "finite"), ("1e3", "exponent"), ("", "required"), ("   ", "required"),
        ("abc", "decimal number"), ("1,000.00", "decimal number"), ("1" * 25, "too large"), (True, "boolean"),
        (None, "null"), ([], "decimal number"), ({"v": 1}, "decimal number"),
    ]

    @pytest.mark.parametrize("amount, says", BAD_AMOUNTS)
    def test_bad_amount_is_400_naming_the_field(self, jane, amount, says):
        wallet = open_wallet(jane, "USD")
        response = _deposit(client_for(jane), wallet, amount)
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert "amount" in error["details"]["fields"]
        assert says in json.dumps(error["details"]["fields"]["amount"])
        assert _balance(wallet) == 0 and Transaction.objects.count() == 0

    @pytest.mark.parametrize("raw", ['{"wallet_id": %d, "amount": NaN}', '{"wallet_id": %d, "amount": 1e400}', '{"wallet_id": %d, "amount": -1}', '{"wallet_id": %d, "amount": 1E2}'])
    def test_bad_json_number_amounts_are_400(self, jane, raw):
        wallet = open_wallet(jane, "USD")
        response = _deposit(client_for(jane), wallet, raw=raw % wallet.pk)
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"
        assert _balance(wallet) == 0

    def test_missing_fields_are_named(self, jane):
        response = client_for(jane).post(DEPOSITS, {}, format="json", headers={"Idempotency-Key": _key()})
        assert response.status_code == 400
        assert set(response.json()["error"]["details"]["fields"]) == {"wallet_id", "amount"}

    def test_malformed_json_is_400_envelope(self, jane):
        wallet = open_wallet(jane, "USD")
        response = _deposit(client_for(jane), wallet, raw="{not json")
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"

    def test_key_required(self, jane):
        wallet = open_wallet(jane, "USD")
        response = client_for(jane).post(DEPOSITS, {"wallet_id": wallet.pk, "amount": "1.00"}, format="json")
        assert response.status_code == 400 and _code(response) == "IDEMPOTENCY_KEY_REQUIRED"
        assert _balance(wallet) == 0

    def test_someone_elses_wallet_is_404_and_moves_nothing(self, jane, john):
        theirs = open_wallet(john, "USD")
        response = _deposit(client_for(jane), theirs, "10.00")
        assert response.status_code == 404 and _code(response) == "NOT_FOUND"
        assert _balance(theirs) == 0

    def test_replay_moves_money_once(self, jane):
        wallet = open_wallet(jane, "USD")
        client, key = client_for(jane), _key()
        first = _deposit(client, wallet, "10.00", key=key)
        second = _deposit(client, wallet, "10.00", key=key)
        assert first.status_code == second.status_code == 201
        assert second["Idempotency-Replayed"] == "true" and second.content == first.content
        reused = _deposit(client, wallet, "11.00", key=key)
        assert reused.status_code == 422 and _code(reused) == "IDEMPOTENCY_KEY_REUSED"
        legacy = client.post(DEPOSITS, {"wallet_id": wallet.pk, "amount": "10.00"}, format="json", headers={"X-Idempotency-Key": key})
        assert legacy["Idempotency-Replayed"] == "true"
        assert _balance(wallet) == Decimal("10.00") and Transaction.objects.count() == 1

    def test_suspended_wallet_is_409_recorded_and_replayed(self, jane):
        wallet = open_wallet(jane, "USD")
        wallet_suspend(wallet=wallet)
        client, key = client_for(jane), _key()
        response = _deposit(client, wallet, "10.00", key=key)
        assert response.status_code == 409 and _code(response) == "WALLET_INACTIVE"
        failed = Transaction.objects.get()
        assert failed.status == "failed" and failed.failure_code == "WALLET_INACTIVE"
        again = _deposit(client, wallet, "10.00", key=key)
        assert again.status_code == 409 and again["Idempotency-Replayed"] == "true"
        assert Transaction.objects.count() == 1 and _balance(wallet) == 0


# --- Transfers -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestTransfers:
    def test_transfer_to_another_customer(self, jane, john):
        source, destination = open_wallet(jane, "USD", funded="100.00"), open_wallet(john, "USD")
        response = _transfer(client_for(jane), source, destination, "25.50", description="Dinner")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["type"] == "transfer" and body["status"] == "completed"
        assert (body["amount"], body["currency"], body["fee"]) == ("25.50", "USD", "0.00")
        assert (body["source_wallet_id"], body["destination_wallet_id"]) == (source.pk, destination.pk)
        assert (body["source_wallet_name"], body["destination_wallet_name"]) == (jane.full_name, john.full_name)
        assert body["description"] == "Dinner" and body["balance_after"] == "74.50"
        assert _balance(source) == Decimal("74.50") and _balance(destination) == Decimal("25.50")
        assert ledger_check() == []

    def test_bodies_are_exactly_the_documented_serializer(self, jane, john):
        """The views render the presenter's dict without a serializer pass: it must be what
        MoneyTransactionOutput (the schema's response) would render, field for field."""
        from rest_framework.renderers import JSONRenderer

        from wallets.serializers import MoneyTransactionOutput

        source, destination = open_wallet(jane, "USD", funded="100.00"), open_wallet(john, "USD")
        for response in (_transfer(client_for(jane), source, destination, "1.5"), _deposit(client_for(jane), source, "2")):
            assert response.status_code == 201, response.content
            body = response.json()
            assert set(body) == set(MoneyTransactionOutput().fields)
            assert json.loads(JSONRenderer().render(MoneyTransactionOutput(body).data)) == body

    def test_between_my_own_wallets_balance_after_is_the_source(self, jane):
        source = open_wallet(jane, "USD", funded="10")
        savings = open_wallet(jane, "USD", label="savings")
        body = _transfer(client_for(jane), source, savings, "4").json()
        assert body["balance_after"] == "6.00"

    def test_insufficient_funds_is_422_recorded_and_replayed(self, jane, john):
        source, destination = open_wallet(jane, "USD", funded="5.00"), open_wallet(john, "USD")
        client, key = client_for(jane), _key()
        response = _transfer(client, source, destination, "5.01", key=key)
        assert response.status_code == 422 and _code(response) == "INSUFFICIENT_FUNDS"
        details = response.json()["error"]["details"]
        assert details["operation_index"] == 0
        failed = Transaction.objects.get(pk=details["transaction_id"])
        assert failed.status == "failed" and failed.failure_code == "INSUFFICIENT_FUNDS"
        assert IdempotencyRecord.objects.filter(endpoint="transfers.create", response_status=422).count() == 1
        again = _transfer(client, source, destination, "5.01", key=key)
        assert again.status_code == 422 and again["Idempotency-Replayed"] == "true" and again.content == response.content
        assert Transaction.objects.filter(type="transfer").count() == 1
        assert _balance(source) == Decimal("5.00") and _balance(destination) == 0
        # A new request (new key) with a fitting amount goes through.
        assert _transfer(client, source, destination, "5.00").status_code == 201
        assert ledger_check() == []

    def test_source_must_be_mine(self, jane, john):
        theirs, mine = open_wallet(john, "USD", funded="50"), open_wallet(jane, "USD")
        response = _transfer(client_for(jane), theirs, mine, "10")
        assert response.status_code == 404 and _code(response) == "NOT_FOUND"
        assert _balance(theirs) == Decimal("50")

    def test_destination_must_exist_and_be_a_customer_wallet(self, jane):
        source = open_wallet(jane, "USD", funded="50")
        platform = Wallet.objects.filter(customer__isnull=True, organization__isnull=True).first()
        assert platform is not None
        for destination_id in (999999, platform.pk):
            response = client_for(jane).post(
                TRANSFERS, {"source_wallet_id": source.pk, "destination_wallet_id": destination_id, "amount": "1", "currency": "USD"},
                format="json", headers={"Idempotency-Key": _key()},
            )
            assert response.status_code == 404 and _code(response) == "NOT_FOUND"
        assert _balance(source) == Decimal("50")

    def test_currency_mismatch(self, jane, john):
        source = open_wallet(jane, "USD", funded="50")
        euro = open_wallet(john, "EUR")
        response = _transfer(client_for(jane), source, euro, "1")
        assert response.status_code == 400 and _code(response) == "CURRENCY_MISMATCH"
        dollars = open_wallet(john, "USD")
        response = _transfer(client_for(jane), source, dollars, "1", currency="EUR")
        assert response.status_code == 400 and _code(response) == "CURRENCY_MISMATCH"
        assert _balance(source) == Decimal("50") and _balance(dollars) == 0

    def test_inactive_destination_is_409(self, jane, john):
        source, destination = open_wallet(jane, "USD", funded="50"), open_wallet(john, "USD")
        wallet_suspend(wallet=destination)
        response = _transfer(client_for(jane), source, destination, "1")
        assert response.status_code == 409 and _code(response) == "WALLET_INACTIVE"
        assert _balance(source) == Decimal("50")

    def test_same_wallet_is_400(self, jane):
        source = open_wallet(jane, "USD", funded="50")
        response = _transfer(client_for(jane), source, source, "1")
        assert response.status_code == 400 and "destination_wallet_id" in response.json()["error"]["details"]["fields"]

    @pytest.mark.parametrize("amount", ["0", "-1", "0.001", "1e2", "NaN", ""])
    def test_bad_amounts(self, jane, john, amount):
        source, destination = open_wallet(jane, "USD", funded="50"), open_wallet(john, "USD")
        response = _transfer(client_for(jane), source, destination, amount)
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"
        assert "amount" in response.json()["error"]["details"]["fields"]
        assert _balance(source) == Decimal("50")

    def test_throttled_with_retry_after(self, jane, john, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "20/min", "money": "2/min"}}
        source, destination = open_wallet(jane, "USD", funded="50"), open_wallet(john, "USD")
        client = client_for(jane)
        assert [_transfer(client, source, destination, "1").status_code for _ in range(2)] == [201, 201]
        limited = _transfer(client, source, destination, "1")
        assert limited.status_code == 429 and _code(limited) == "RATE_LIMITED" and int(limited["Retry-After"]) >= 1
        assert _balance(source) == Decimal("48")

    def test_schema_documents_the_money_endpoints(self, jane):
        from drf_spectacular.generators import SchemaGenerator

        schema = SchemaGenerator().get_schema(request=None, public=True)
        for path in ("/api/v1/deposits", "/api/v1/transfers"):
            operation = schema["paths"][path]["post"]
            assert any(p["name"] == "Idempotency-Key" and p["required"] for p in operation["parameters"])
            assert "examples" in operation["requestBody"]["content"]["application/json"]
            assert {"201", "400", "404", "409", "422"} <= set(operation["responses"])
        assert "/api/v1/wallets/{wallet_id}/entries" in schema["paths"]


# --- Concurrency on PostgreSQL ---------------------------------------------------------------------------------
def _race(n, request, before=None):
    def worker(i):
        if before:
            before(i)
        response = request(i)
        return (response.status_code, response.content, response.get("Idempotency-Replayed"))

    return [("exception", repr(r), None) if isinstance(r, BaseException) else r for r in run_in_threads(n, worker)]


def _classify(results):
    originals = [r for r in results if r[0] == 201 and r[2] is None]
    replays = [r for r in results if r[0] == 201 and r[2] == "true"]
    busy = [r for r in results if r[0] == 409 and json.loads(r[1])["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"]
    assert len(originals) + len(replays) + len(busy) == len(results), [r[:2] for r in results if r not in originals + replays + busy]
    assert len({r[1] for r in originals + replays}) <= 1
    return originals, replays, busy


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestConcurrentMoney:
    def test_32_racing_deposits_with_one_key_move_money_once(self):
        jane = person()
        wallet = open_wallet(jane, "USD")
        key = _key()
        results = _race(32, lambda i: _deposit(client_for(jane), wallet, "100.00", key=key))
        originals, replays, busy = _classify(results)
        assert len(originals) == 1
        assert _balance(wallet) == Decimal("100.00")
        assert Transaction.objects.filter(type="deposit").count() == 1
        # The same key once more, after Redis forgot everything: still one deposit.
        redis_forget()
        again = _race(32, lambda i: _deposit(client_for(jane), wallet, "100.00", key=key))
        originals2, replays2, _ = _classify(again)
        assert not originals2 and len(replays2) >= 1
        assert replays2[0][1] == originals[0][1]
        assert _balance(wallet) == Decimal("100.00") and Transaction.objects.filter(type="deposit").count() == 1
        assert ledger_check() == []

    def test_racing_deposits_while_redis_is_flushed(self):
        jane = person()
        wallet = open_wallet(jane, "USD")
        key = _key()
        with redis_flushing(every=0.002):
            results = _race(32, lambda i: _deposit(client_for(jane), wallet, "7.00", key=key))
        originals, _, _ = _classify(results)
        assert len(originals) == 1
        assert _balance(wallet) == Decimal("7.00") and Transaction.objects.count() == 1
        assert ledger_check() == []

    def test_racing_transfers_with_one_key_and_many_keys(self):
        jane, john = person(), person()
        source, destination = open_wallet(jane, "USD", funded="100.00"), open_wallet(john, "USD", funded="100.00")
        back = open_wallet(john, "USD", label="back")
        key = _key()
        results = _race(32, lambda i: _transfer(client_for(jane), source, destination, "30.00", key=key))
        assert len(_classify(results)[0]) == 1
        assert _balance(source) == Decimal("70.00")
        # Now 16 distinct requests each way: money is conserved, nothing goes negative, no deadlock.
        def both_ways(i):
            if i % 2:
                return _transfer(client_for(jane), source, destination, "10.00")
            return _transfer(client_for(john), destination, source, "10.00")

        statuses = [r[0] for r in _race(32, both_ways)]
        assert set(statuses) <= {201, 422}, statuses
        total = _balance(source) + _balance(destination)
        assert total == Decimal("200.00") and _balance(source) >= 0 and _balance(destination) >= 0
        assert _balance(back) == 0
        assert ledger_check() == []

    def test_request_killed_after_posting_leaves_nothing_and_retry_deposits_once(self):
        """The worker dies after the deposit is posted and before its response is stored: we
        hold an uncommitted record with the same key so the request blocks right there, then
        terminate its database backend. Nothing may remain; the retry deposits exactly once."""
        jane = person()
        wallet = open_wallet(jane, "USD")
        key = _key()
        body = {"wallet_id": wallet.pk, "amount": "40.00"}
        thread, outcome = in_background(lambda: client_for(jane).post(DEPOSITS, body, format="json", headers={"Idempotency-Key": key}))
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"user:{jane.pk}", endpoint="deposits.create", key=key, fingerprint="0" * 64, method="POST",
                path=DEPOSITS, response_status=201, response_body="{}", expires_at=timezone.now() + timedelta(hours=48),
            )
            thread.start()
            pid = blocked_insert_pid("core_idempotencyrecord")
            assert pid is not None, "the request never reached the record insert"
            # Posted, not yet answered: the deposit exists only inside the doomed transaction.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            transaction.set_rollback(True)  # and our blocking record goes too
        thread.join(timeout=30)
        killed = outcome["result"]  # the database went away under the request: 503, retry later (SPEC 5)
        assert killed.status_code == 503 and killed["Retry-After"]
        assert killed.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert _balance(wallet) == 0
        assert Transaction.objects.count() == 0 and Entry.objects.filter(wallet=wallet).count() == 0
        assert IdempotencyRecord.objects.count() == 0
        assert ledger_check() == []
        client = client_for(jane)
        retry = client.post(DEPOSITS, body, format="json", headers={"Idempotency-Key": key})
        assert retry.status_code == 201 and "Idempotency-Replayed" not in retry
        replay = client.post(DEPOSITS, body, format="json", headers={"Idempotency-Key": key})
        assert replay["Idempotency-Replayed"] == "true" and replay.content == retry.content
        assert _balance(wallet) == Decimal("40.00") and Transaction.objects.count() == 1
        assert ledger_check() == []

    def test_a_concurrent_winner_makes_the_loser_roll_back_its_deposit(self):
        """The unique key is the last line: if another commit with the key lands while this
        request has posted, the request undoes its deposit and replays the winner."""
        jane = person()
        wallet = open_wallet(jane, "USD")
        key = _key()
        body = {"wallet_id": wallet.pk, "amount": "40.00"}
        winner = '{"winner":true}'
        thread, outcome = in_background(lambda: client_for(jane).post(DEPOSITS, body, format="json", headers={"Idempotency-Key": key}))
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"user:{jane.pk}", endpoint="deposits.create", key=key,
                fingerprint=request_fingerprint(method="POST", path=DEPOSITS, data=body), method="POST", path=DEPOSITS,
                response_status=201, response_body=winner, expires_at=timezone.now() + timedelta(hours=48),
            )
            thread.start()
            blocked_insert_pid("core_idempotencyrecord")  # the request has posted and waits on the winner's record
        thread.join(timeout=30)
        response = outcome["result"]
        assert response.status_code == 201 and response["Idempotency-Replayed"] == "true"
        assert response.content.decode() == winner
        assert _balance(wallet) == 0 and Transaction.objects.count() == 0
        assert ledger_check() == []
