"""Migrations 0005/0006 on a copy with history: transactions stored with the old JSON
`operations` (the shapes the engine wrote, and an older unresolved one) become posting rows,
and migrating back rebuilds the JSON from them."""

from decimal import Decimal

import pytest
from django.db import connection

from ledger.models import Posting
from tests.factories.accounts import CustomerFactory
from tests.migrations import latest_migrations as _latest, migrate_to as _migrate

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = [("ledger", "0004_usage_counters")]
AFTER = [("ledger", "0006_drop_transaction_operations")]
SHARDS = 16  # settings.LEDGER_HOT_ACCOUNT_SHARDS in tests


def _old_history(apps) -> dict:
    """Old-shape rows, written with the models as they were at 0004."""
    Asset, Wallet, Transaction = (apps.get_model("ledger", m) for m in ("Asset", "Wallet", "Transaction"))
    usd, _ = Asset.objects.get_or_create(code="USD", organization=None, defaults={"name": "US Dollar", "exponent": 2, "kind": "fiat"})
    a = Wallet.objects.create(asset=usd, kind="customer", customer_id=CustomerFactory().pk)
    b = Wallet.objects.create(asset=usd, kind="customer", customer_id=CustomerFactory().pk)
    for purpose, kind in (("issuance", "issuance"), ("fee", "system")):
        Wallet.objects.bulk_create(
            [Wallet(asset=usd, kind=kind, purpose=purpose, shard=s, label=f"platform {purpose} #{s}") for s in range(SHARDS)],
            ignore_conflicts=True,
        )
    shard = {(p, s): pk for pk, p, s in Wallet.objects.filter(asset=usd, customer__isnull=True, organization__isnull=True).values_list("pk", "purpose", "shard")}
    iss_a, iss_b, fee_a = shard[("issuance", a.pk % SHARDS)], shard[("issuance", b.pk % SHARDS)], shard[("fee", a.pk % SHARDS)]

    def tx(status, type_, operations, reference):
        return Transaction.objects.create(type=type_, status=status, reference=reference, operations=operations).pk

    ids = {
        "deposit": tx("completed", "deposit", [
            {"amount": "100.50", "type": "issue", "wallet_id": a.pk, "source_wallet_id": iss_a, "destination_wallet_id": a.pk, "currency": "USD"},
        ], "m-1"),
        "transfer": tx("completed", "transfer", [
            {"amount": "60", "type": "transfer", "source_wallet_id": a.pk, "destination_wallet_id": b.pk},
            {"amount": "0.60", "type": "transfer", "destination_platform": "fee", "source_wallet_id": a.pk, "destination_wallet_id": fee_a},
        ], "m-2"),
        "failed": tx("failed", "withdrawal", [
            {"amount": "1000", "type": "redeem", "wallet_id": b.pk, "source_wallet_id": b.pk, "destination_wallet_id": iss_b},
        ], "m-3"),
        "unresolved": tx("in_review", "deposit", [{"amount": "5", "type": "issue", "wallet_id": b.pk}], "m-4"),
        "empty": tx("failed", "ledger", [], "m-5"),
    }
    return {"ids": ids, "a": a.pk, "b": b.pk, "usd": usd.pk, "iss_a": iss_a, "iss_b": iss_b, "fee_a": fee_a}


def _rows(tx_id: int) -> list[tuple]:
    return list(Posting.objects.filter(transaction_id=tx_id).order_by("index").values_list(
        "index", "kind", "source_wallet_id", "source_purpose", "destination_wallet_id", "destination_purpose", "amount", "asset_id"))


def test_operations_become_postings_and_back():
    try:
        old = _old_history(_migrate(BEFORE))
        _migrate(AFTER)
        ids, a, b, usd = old["ids"], old["a"], old["b"], old["usd"]
        assert _rows(ids["deposit"]) == [(0, "issue", old["iss_a"], "issuance", a, "", Decimal("100.50"), usd)]
        assert _rows(ids["transfer"]) == [
            (0, "transfer", a, "", b, "", Decimal("60"), usd),
            (1, "transfer", a, "", old["fee_a"], "fee", Decimal("0.60"), usd),
        ]
        assert _rows(ids["failed"]) == [(0, "redeem", b, "", old["iss_b"], "issuance", Decimal("1000"), usd)]
        # stored before wallet ids were resolved: the shard the engine would have used
        assert _rows(ids["unresolved"]) == [(0, "issue", old["iss_b"], "issuance", b, "", Decimal("5"), usd)]
        assert _rows(ids["empty"]) == []
        with connection.cursor() as cursor:  # the column is gone
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_transaction'")
            assert "operations" not in {name for (name,) in cursor.fetchall()}

        Transaction = _migrate(BEFORE).get_model("ledger", "Transaction")  # and back: the JSON from the rows
        assert Transaction.objects.get(pk=ids["transfer"]).operations == [
            {"amount": "60.000000000000000000", "type": "transfer", "source_wallet_id": a, "destination_wallet_id": b},
            {"amount": "0.600000000000000000", "type": "transfer", "destination_platform": "fee", "source_wallet_id": a,
             "destination_wallet_id": old["fee_a"]},
        ]
        assert Transaction.objects.get(pk=ids["unresolved"]).operations == [
            {"amount": "5.000000000000000000", "type": "issue", "wallet_id": b, "source_wallet_id": old["iss_b"], "destination_wallet_id": b},
        ]
        assert Transaction.objects.get(pk=ids["empty"]).operations == []
    finally:
        _migrate(_latest())
