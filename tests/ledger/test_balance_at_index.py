"""Balance at a point in time is one index descent, whatever the wallet's history; statements
read nothing they do not print (ledger.selectors, ledger.statements)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from ledger.models import Entry
from ledger.partitions import index_and_partitions
from ledger.posting import Issue, Redeem, ledger_post
from ledger.selectors import wallet_balance_at, wallet_last_entry_query
from ledger.statements import Period, statement_build
from tests.factories.accounts import CustomerFactory
from tests.factories.ledger import open_wallet

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.mark.slow
def test_balance_at_is_an_index_scan_on_a_10k_entry_wallet(usd):
    wallet = open_wallet(usd, customer=CustomerFactory())
    other = open_wallet(usd, "5.00", customer=CustomerFactory())
    for _ in range(1000):  # 10,000 entries on the wallet, through the posting engine
        ledger_post(type="adjustment", operations=[Issue(wallet=wallet, amount="2.00"), Redeem(wallet=wallet, amount="1.00")] * 5).raise_for_error()
    assert Entry.objects.filter(wallet=wallet).count() == 10_000
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_entry")  # real statistics, so the planner could choose a seq scan if it wanted

    middle = Entry.objects.filter(wallet=wallet).order_by("id")[4999]
    plan = wallet_last_entry_query(wallet_id=wallet.pk, at=middle.created_at)[:1].explain()
    # the (wallet, created_at, id) index, on a partitioned ledger_entry its copy on each partition
    used = set(re.findall(r"Index Scan(?: Backward)? using (\S+) on", plan))
    assert used and used <= index_and_partitions("entry_wallet_created"), plan
    assert "Index" in plan and "Seq Scan" not in plan, plan
    assert "Sort" not in plan, plan  # read backwards off the index, not sorted

    found = wallet_balance_at(wallet=wallet, at=timezone.now())
    assert (found.balance, found.entry_id) == (Decimal("5000.00"), Entry.objects.filter(wallet=wallet).order_by("-id").first().pk)
    assert wallet_balance_at(wallet=other, at=timezone.now()).balance == Decimal("5.00")


def test_balance_before_the_first_entry_is_zero(usd):
    wallet = open_wallet(usd, "3.00", customer=CustomerFactory())
    first = Entry.objects.get(wallet=wallet)
    before = wallet_balance_at(wallet=wallet, at=first.created_at - dt.timedelta(microseconds=1))
    assert (before.balance, before.entry_id) == (Decimal(0), None)
    assert wallet_balance_at(wallet=wallet, at=first.created_at).balance == Decimal("3.00")


def test_a_statement_is_read_only(usd):
    wallet = open_wallet(usd, "3.00", customer=CustomerFactory())
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_entry")
        before = cursor.fetchone()[0]
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        statement = statement_build(wallet=wallet, period=Period(start=None, end=timezone.now()))
        rows = list(statement.rows())
    assert len(rows) == 1
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_entry")
        assert cursor.fetchone()[0] == before


def test_a_statement_ignores_entries_after_its_as_of_entry(usd):
    """An entry posted while a statement is being read (after its closing was fixed) does not
    tear it: every read is bounded by `as_of_entry_id`."""
    wallet = open_wallet(usd, "3.00", customer=CustomerFactory())
    statement = statement_build(wallet=wallet, period=Period(start=None, end=timezone.now() + dt.timedelta(hours=1)))
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount="4.00")]).raise_for_error()
    rows = list(statement.rows())  # would raise StatementImbalance if the new entry were read
    assert [r["amount"] for r in rows] == ["3.00"]
    assert statement.closing == Decimal("3.00")
