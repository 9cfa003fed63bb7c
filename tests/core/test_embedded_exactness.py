"""Money is exact in every mode the README offers (issue 12 item 16).

SQLite, the embedded mode of `make run`, stores a decimal column as a double: 15 significant
digits. There an amount, or a balance, that needs more is refused with a 400 naming the limit,
never stored rounded; PostgreSQL's NUMERIC(38, 18) keeps all 18 decimals of ETH as before. And
`check_ledger` compares every entry with its posting (what the request asked for) exactly, to the
eighteenth decimal."""

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from ledger.checks import ledger_check
from ledger.models import Entry, Transaction
from ledger.services import wallet_open
from tests.factories.ledger_api import person, platform_asset, user_client

ROOT = Path(__file__).resolve().parents[2]
PRECISE = "0.123456789012345678"  # 18 significant digits: ETH's full exponent


def _deposit(client, wallet, amount, key):
    return client.post("/api/v1/deposits", {"wallet_id": wallet.pk, "amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgresql_keeps_all_eighteen_decimals_and_check_ledger_agrees():
    user = person()
    wallet = wallet_open(asset=platform_asset("ETH"), customer=user.customer)
    response = _deposit(user_client(user), wallet, PRECISE, "eth-1")
    assert response.status_code == 201, response.content
    wallet.refresh_from_db()
    assert wallet.balance == Decimal(PRECISE)
    assert Entry.objects.get(wallet=wallet).amount == Decimal(PRECISE)
    with connection.cursor() as cursor:  # byte for byte what NUMERIC(38, 18) holds
        cursor.execute("SELECT balance::text FROM ledger_wallet WHERE id = %s", [wallet.pk])
        assert cursor.fetchone()[0] == PRECISE
    assert ledger_check() == []


@pytest.mark.postgres
@pytest.mark.django_db
def test_check_ledger_reports_an_entry_that_differs_from_its_posting_in_the_eighteenth_decimal():
    # What a rounding store leaves behind: the posting (what was asked) and its entries disagree.
    user = person()
    user.customer.kyc_level = "verified"  # 0.5 ETH is worth more than an unverified customer's USD 1,000
    user.customer.save(update_fields=["kyc_level"])
    wallet = wallet_open(asset=platform_asset("ETH"), customer=user.customer)
    assert _deposit(user_client(user), wallet, "0.5", "eth-2").status_code == 201
    tx = Transaction.objects.get(entries__wallet=wallet)
    with connection.cursor() as cursor:  # past the append-only trigger, as only a superuser could
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE ledger_posting SET amount = 0.500000000000000001 WHERE transaction_id = %s", [tx.pk])
        cursor.execute("SET LOCAL session_replication_role = origin")
    breaches = ledger_check()
    assert f"transaction {tx.pk}: operation 0 has entries that do not match its posting" in breaches, breaches


SQLITE_SCRIPT = textwrap.dedent("""
    import json
    import django
    django.setup()
    from decimal import Decimal
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from ledger.checks import ledger_check
    from ledger.models import Wallet
    from ledger.services import wallet_open
    from tests.factories.ledger_api import person, platform_asset, user_client

    user = person()
    wallet = wallet_open(asset=platform_asset("ETH"), customer=user.customer)
    client = user_client(user)

    def deposit(amount, key):
        r = client.post("/api/v1/deposits", {"wallet_id": wallet.pk, "amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=key)
        return {"status": r.status_code, "body": r.json()}

    out = {"vendor": __import__("django.db").db.connection.vendor}
    out["precise"] = deposit("234.123456789012345678", "k1")
    out["fifteen"] = deposit("0.123456789012345", "k2")
    out["balance_after_fifteen"] = str(Wallet.objects.get(pk=wallet.pk).balance)
    out["balance_would_round"] = deposit("0.000000000000000001", "k3")
    out["balance_after_all"] = str(Wallet.objects.get(pk=wallet.pk).balance)
    out["check_clean"] = ledger_check()
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_sqlite_refuses_what_it_cannot_store_exactly_and_keeps_the_rest_exact(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
           "REDIS_URL": "", "CELERY_BROKER_URL": "memory://", "COFFER_VAR_DIR": str(tmp_path / "var"),
           "AUDIT_CHECKPOINT_PATH": str(tmp_path / "checkpoints.jsonl")}
    done = subprocess.run([sys.executable, "-c", SQLITE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["vendor"] == "sqlite"

    refused = out["precise"]
    assert refused["status"] == 400, refused
    assert refused["body"]["error"]["code"] == "VALIDATION_ERROR"
    message = refused["body"]["error"]["details"]["fields"]["amount"][0]
    assert "21 significant digits" in message and "keeps 15 exactly" in message

    assert out["fifteen"]["status"] == 201, out["fifteen"]
    assert out["balance_after_fifteen"] == "0.123456789012345000"

    would_round = out["balance_would_round"]  # the amount fits; the balance it makes would not
    assert would_round["status"] == 400, would_round
    assert "resulting balance" in json.dumps(would_round["body"]) and "keeps 15 exactly" in json.dumps(would_round["body"])
    assert out["balance_after_all"] == "0.123456789012345000"

    assert out["check_clean"] == []
