"""ledger_entry partitioned by month (issue 15 item 3; ledger/partitions.py, migration 0010).

On PostgreSQL: the table is partitioned with (id, created_at) as primary key, partitions exist
ahead of time, entries of any month land in their partition, the append-only trigger and the
deferred sum-to-zero check hold on every partition (raw SQL on the partition itself included),
`entry_partitions_ensure` (the beat task) creates missing months idempotently, and migration 0010
converts an existing table with rows (and back). On SQLite the migration and the task do nothing."""

from datetime import datetime, timedelta, timezone as tz
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from ledger.checks import ledger_check
from ledger.models import Entry
from ledger.partitions import _legacy_end, add_months, entry_partitions_ensure, is_partitioned, month_start, partition_name, partitions
from ledger.posting import Transfer, ledger_post
from tests.factories.ledger import open_wallet, platform_asset
from tests.migrations import latest_migrations as _latest, migrate_to as _migrate


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _partition_of(entry_id: int) -> str:
    return _sql("SELECT tableoid::regclass::text FROM ledger_entry WHERE id = %s", [entry_id])[0][0]


@pytest.mark.django_db
def test_sqlite_keeps_one_plain_table_and_the_task_does_nothing():
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite fallback (the PostgreSQL behaviour is tested below)")
    assert not is_partitioned("ledger_entry") and entry_partitions_ensure() == []


@pytest.mark.postgres
@pytest.mark.django_db
def test_entries_are_partitioned_by_month_with_months_ready_ahead(settings):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")
    assert is_partitioned("ledger_entry")
    key = _sql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
               " WHERE i.indrelid = 'ledger_entry'::regclass AND i.indisprimary ORDER BY a.attnum")
    assert [k for (k,) in key] == ["id", "created_at"]
    names = {name for name, _ in partitions("ledger_entry")}
    assert "ledger_entry_p_legacy" in names
    first = _legacy_end("ledger_entry")  # this month on a new database; after the newest converted row's month else
    assert first <= add_months(month_start(timezone.now()), 1)
    for n in range(settings.LEDGER_PARTITION_MONTHS_AHEAD):
        assert partition_name("ledger_entry", add_months(first, n)) in names
    # no foreign key points at entries (a partitioned table's rows are not unique by id alone)
    assert _sql("SELECT count(*) FROM pg_constraint WHERE confrelid = 'ledger_entry'::regclass")[0][0] == 0
    # the guards are on the parent, so PostgreSQL clones them onto every partition
    triggers = _sql("SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger_entry'::regclass AND NOT tgisinternal ORDER BY 1")
    assert [t for (t,) in triggers] == ["ledger_entry_append_only", "ledger_entry_transaction_balanced"]


@pytest.fixture
def in_a_future_month(transactional_db):
    """A transfer posted, then one with its entries dated in a month with its own partition."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")
    usd = platform_asset("USD")
    a, b = open_wallet(usd, "10"), open_wallet(usd)
    now = ledger_post(type="transfer", operations=[Transfer(a, b, "4")]).raise_for_error()
    future = add_months(month_start(timezone.now()), 2)
    when = datetime(future.year, future.month, 15, 12, tzinfo=tz.utc)
    return a, b, now, when


@pytest.mark.postgres
def test_entries_of_every_month_are_guarded_in_their_partition(in_a_future_month):
    a, b, posted, when = in_a_future_month
    entry = posted.entries.first()
    this_month = month_start(entry.created_at)
    assert _partition_of(entry.pk) == ("ledger_entry_p_legacy" if this_month < _legacy_end("ledger_entry")
                                       else partition_name("ledger_entry", this_month))
    target = partition_name("ledger_entry", month_start(when))
    # a balanced pair of entries written straight into a future month's partition: accepted
    with transaction.atomic():
        _sql("INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
             " VALUES (%s, %s, 'debit', 1, 5, 1, %s), (%s, %s, 'credit', 1, 5, 1, %s) RETURNING id",
             [posted.pk, a.pk, when, posted.pk, b.pk, when])
    moved = Entry.objects.filter(transaction_id=posted.pk, created_at=when)
    assert moved.count() == 2 and {_partition_of(e.pk) for e in moved} == {target}
    assert min(e.pk for e in moved) > entry.pk, "ids continue the one sequence"
    # append-only on the partition itself, not only through the parent
    for sql in (f"UPDATE {target} SET amount = 100", f"DELETE FROM {target}", "UPDATE ledger_entry SET amount = 100 WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            _sql(sql, [entry.pk] if "%s" in sql else None)
    # the deferred sum-to-zero check fires at commit for a row in the future partition
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        # (a partition has no identity of its own before PostgreSQL 17: the id comes from the parent's sequence)
        _sql(f"INSERT INTO {target} (id, transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
             " VALUES (nextval(pg_get_serial_sequence('ledger_entry', 'id')), %s, %s, 'credit', 3, 8, 2, %s)", [posted.pk, b.pk, when])
    assert Entry.objects.filter(transaction_id=posted.pk).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_beat_task_creates_missing_months_once(settings):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")
    later = timezone.now() + timedelta(days=400)  # months nobody created yet (rolled back with the test)
    created = entry_partitions_ensure(months_ahead=2, now=later)
    expected = [partition_name("ledger_entry", add_months(month_start(later), n)) for n in range(3)]
    assert [name for name in created if name.startswith("ledger_entry")] == expected  # audit events' months come too
    assert entry_partitions_ensure(months_ahead=2, now=later) == []
    from ledger.tasks import ensure_entry_partitions

    assert ensure_entry_partitions() == []  # today's months exist since the migration
    a, b = open_wallet(platform_asset("USD"), "10"), open_wallet(platform_asset("USD"))
    tx = ledger_post(type="transfer", operations=[Transfer(a, b, "1")]).raise_for_error()
    with transaction.atomic():  # an entry of that far month now has somewhere to go
        _sql("INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
             " VALUES (%s, %s, 'debit', 1, 8, 1, %s), (%s, %s, 'credit', 1, 2, 1, %s)", [tx.pk, a.pk, later, tx.pk, b.pk, later])
    assert {_partition_of(e.pk) for e in Entry.objects.filter(created_at=later)} == {expected[0]}


# --- Migration 0010 on a table with rows ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_migration_converts_a_table_with_rows_and_back():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")
    try:
        # The rows are written by today's engine, then the schema goes back to before 0010 with them
        # (later migrations, such as 0011's posting columns, go back too), then forward again.
        usd = platform_asset("USD")
        a, b = open_wallet(usd, "100"), open_wallet(usd)
        for _ in range(5):
            ledger_post(type="transfer", operations=[Transfer(a, b, "3")]).raise_for_error()
        _migrate([("ledger", "0009_reconciliations")])
        assert not is_partitioned("ledger_entry")
        before = list(Entry.objects.order_by("id").values_list("id", "wallet_id", "direction", "amount", "balance_after", "created_at"))
        assert len(before) >= 12

        _migrate(_latest())
        assert is_partitioned("ledger_entry")
        after = list(Entry.objects.order_by("id").values_list("id", "wallet_id", "direction", "amount", "balance_after", "created_at"))
        assert after == before
        assert {_partition_of(pk) for pk, *_ in before} == {"ledger_entry_p_legacy"}
        tx = ledger_post(type="transfer", operations=[Transfer(a, b, "1")]).raise_for_error()  # the engine writes on
        assert min(tx.entries.values_list("id", flat=True)) > before[-1][0]
        assert ledger_check() == []
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            _sql("DELETE FROM ledger_entry_p_legacy")
        call_command("check_ledger")

        _migrate([("ledger", "0009_reconciliations")])  # and back: one plain table with every row
        assert not is_partitioned("ledger_entry")
        assert Entry.objects.count() == len(before) + 2
    finally:
        _migrate(_latest())
    assert is_partitioned("ledger_entry") and Decimal(a.__class__.objects.get(pk=b.pk).balance) == Decimal("16")
    assert ledger_check() == []  # with today's schema (the checker reads today's posting columns)
