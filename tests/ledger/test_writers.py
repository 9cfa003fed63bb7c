"""The two writers of the posting engine (`ledger.posting.pg`, `ledger.posting.orm`) write the
same rows (transaction, postings, entries, balances) for the same plan, and the PostgreSQL writer's use of Django's private API is pinned
to the Django minor version it was written against."""

from decimal import Decimal

import django
import pytest
from django.db import connection
from django.utils import timezone

from ledger.models import Entry, Posting, Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Transfer
from ledger.posting import engine, orm, pg
from ledger.posting.operations import legs_of, postings_of
from tests.factories.ledger import open_wallet

pytestmark = pytest.mark.django_db


def test_the_pg_writer_is_pinned_to_django_5_2():
    # pg.py uses Django internals (_prepare_cursor, the connection's __dict__, _state): a new
    # Django minor must be re-checked against it before this pin moves.
    assert django.VERSION[:2] == (5, 2)


def _plan(source: Wallet, destination: Wallet):
    """Lock and simulate a transfer with a fee leg and an issue, as the engine does."""
    legs = legs_of([
        Issue(wallet=source, amount="5"),
        Transfer(source=source, destination=destination, amount="7.25"),
        Transfer(source=source, destination=PlatformAccount("fee"), amount="0.75"),
    ])
    rows, resolved = engine.lock(legs)
    engine._parse_amounts(legs, resolved)
    plan, error = engine._simulate(legs, rows, resolved, {})
    assert error is None
    return legs, resolved, plan


def _written(tx_id: int, source: Wallet, destination: Wallet) -> tuple[list, dict, list]:
    """The entries, balances and postings, with wallets named by role (the two runs use other wallets)."""
    role = {source.pk: "source", destination.pk: "destination"}
    name = lambda wid: role.get(wid) or Wallet.objects.get(pk=wid).purpose  # noqa: E731
    entries = [
        (role.get(wid, Wallet.objects.get(pk=wid).purpose), d, amount, after if wid in role else None, i)
        for wid, d, amount, after, i in Entry.objects.filter(transaction_id=tx_id).order_by("id").values_list(
            "wallet_id", "direction", "amount", "balance_after", "operation_index")
    ]
    balances = {role[w.pk]: (w.balance, w.held) for w in Wallet.objects.filter(pk__in=role)}
    postings = [
        (i, kind, name(sw), sp, name(dw), dp, amount, asset)
        for i, kind, sw, sp, dw, dp, amount, asset in Posting.objects.filter(transaction_id=tx_id).order_by("index").values_list(
            "index", "kind", "source_wallet_id", "source_purpose", "destination_wallet_id", "destination_purpose", "amount", "asset__code")
    ]
    return entries, balances, postings


@pytest.mark.postgres
def test_pg_and_orm_writers_write_the_same_rows(usd):
    assert connection.vendor == "postgresql"
    results = []
    for writer in ("pg", "orm"):
        source, destination = open_wallet(usd, "10"), open_wallet(usd)
        legs, resolved, plan = _plan(source, destination)
        now = timezone.now()
        tx = Transaction(type="transfer", reference=f"parity-{writer}", created_at=now)
        postings = postings_of(legs, resolved)
        tx.complete()
        tx.completed_at = now
        if writer == "pg":
            tx_id, entry_ids = pg.write_posted(tx, postings, plan, now, [], {})
            assert len(entry_ids) == len(plan.entries)
        else:
            entry_ids = orm.write_posted(tx, postings, plan, now, [], existing=False)
            tx_id = tx.pk
            assert len(entry_ids) == len(plan.entries)
        stored = Transaction.objects.get(pk=tx_id)
        assert (stored.status, stored.type, stored.reference) == ("completed", "transfer", f"parity-{writer}")
        results.append(_written(tx_id, source, destination))
    assert results[0] == results[1]
    entries, balances, postings = results[0]
    assert balances == {"source": (Decimal("7"), Decimal("0")), "destination": (Decimal("7.25"), Decimal("0"))}
    assert [e[0] for e in entries] == ["issuance", "source", "source", "destination", "source", "fee"]
    assert postings == [
        (0, "issue", "issuance", "issuance", "source", "", Decimal("5"), "USD"),
        (1, "transfer", "source", "", "destination", "", Decimal("7.25"), "USD"),
        (2, "transfer", "source", "", "fee", "fee", Decimal("0.75"), "USD"),
    ]
