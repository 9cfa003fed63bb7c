"""The outbox partitioned by month (issue 15 item 3; core migration 0004, core.outbox).

On PostgreSQL: core_outboxmessage is partitioned by month of created_at with (id, created_at) as
primary key, months ready ahead (created by the daily partition task too), the claim's index on
every partition; the (topic, key) guard is global across months (the unpartitioned
core_outboxkey, claimed by a trigger in the message's own INSERT, released with its message);
dispatches name the message's month; an old month whose rows are all done (or dead, when asked)
past the retention is detached and dropped with its keys, one with a pending or recent row stays;
the migration converts a table with rows and back. On SQLite one plain table and its unique index."""

import time
from datetime import datetime, timedelta
from datetime import timezone as tz
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.db import Insert, insert_all
from core.models import OutboxKey, OutboxMessage
from core.outbox import (
    outbox_dispatch,
    outbox_drop_months,
    outbox_emit,
    outbox_message,
    outbox_months,
    outbox_purge,
    register_handler,
    unregister_handler,
)
from ledger.partitions import (
    add_months,
    entry_partitions_ensure,
    index_and_partitions,
    is_partitioned,
    month_start,
    partition_name,
    partitions,
)
from tests.concurrency import run_in_threads
from tests.migrations import latest_migrations as _latest, migrate_to as _migrate

DONE, DEAD, PENDING = OutboxMessage.Status.DONE, OutboxMessage.Status.DEAD, OutboxMessage.Status.PENDING


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _partition_of(message_id: int) -> str:
    return _sql("SELECT tableoid::regclass::text FROM core_outboxmessage WHERE id = %s", [message_id])[0][0]


def _mid(month) -> datetime:
    return datetime(month.year, month.month, 15, 12, tzinfo=tz.utc)


@pytest.fixture
def pg():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")


@pytest.mark.django_db
def test_sqlite_keeps_one_plain_table_with_its_unique_key():
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite fallback (the PostgreSQL behaviour is tested below)")
    assert not is_partitioned("core_outboxmessage") and outbox_months() == [] and outbox_drop_months() == []
    first = outbox_emit(topic="test.part", payload={}, key="k")
    assert outbox_emit(topic="test.part", payload={}, key="k").pk == first.pk and OutboxMessage.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_outbox_is_partitioned_by_month_with_months_ready_ahead(pg, settings):
    assert is_partitioned("core_outboxmessage")
    key = _sql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
               " WHERE i.indrelid = 'core_outboxmessage'::regclass AND i.indisprimary ORDER BY a.attnum")
    assert [k for (k,) in key] == ["id", "created_at"]
    names = {name for name, _ in partitions("core_outboxmessage")}
    this_month = month_start(timezone.now())
    for n in range(1, settings.LEDGER_PARTITION_MONTHS_AHEAD + 1):
        assert partition_name("core_outboxmessage", add_months(this_month, n)) in names
    # the claim's index on every partition; no (topic, key) unique index on the messages any more
    assert len(index_and_partitions("outbox_message_due")) == len(names) + 1
    assert _sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'outbox_message_unique_key'")[0][0] == 0
    triggers = _sql("SELECT tgname FROM pg_trigger WHERE tgrelid = 'core_outboxmessage'::regclass AND NOT tgisinternal ORDER BY 1")
    assert [t for (t,) in triggers] == ["core_outboxmessage_key_claim", "core_outboxmessage_key_release"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_daily_partition_task_creates_the_outbox_months_too(pg):
    later = timezone.now() + timedelta(days=400)  # months nobody created yet (rolled back with the test)
    created = entry_partitions_ensure(months_ahead=1, now=later)
    expected = [partition_name("core_outboxmessage", add_months(month_start(later), n)) for n in range(2)]
    assert [name for name in created if name.startswith("core_outboxmessage")] == expected
    assert entry_partitions_ensure(months_ahead=1, now=later) == []
    message = OutboxMessage.objects.create(topic="test.part", payload={}, created_at=later, next_attempt_at=later)
    assert _partition_of(message.pk) == expected[0]
    assert len(index_and_partitions("outbox_message_due")) == len(partitions("core_outboxmessage")) + 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_key_guard_holds_across_months(pg):
    now = timezone.now()
    later = _mid(add_months(month_start(now), 2))  # a month with its own partition
    first = outbox_emit(topic="test.part", payload={"n": 1}, key="order-1")
    with mock.patch("django.utils.timezone.now", return_value=later):
        again = outbox_emit(topic="test.part", payload={"n": 2}, key="order-1")
        other = outbox_emit(topic="test.part", payload={"n": 3}, key="order-2")
    assert again.pk == first.pk and again.created_at == first.created_at and again.payload == {"n": 1}
    assert _partition_of(other.pk) == partition_name("core_outboxmessage", month_start(later)) != _partition_of(first.pk)
    # the other way round: a key first taken in the later month keeps this month's emit out
    assert outbox_emit(topic="test.part", payload={"n": 4}, key="order-2").pk == other.pk
    # the same key on another topic is another message
    assert outbox_emit(topic="test.other", payload={}, key="order-1").pk not in (first.pk, other.pk)
    assert OutboxMessage.objects.filter(topic="test.part").count() == 2
    assert set(OutboxKey.objects.filter(topic="test.part").values_list("key", "message_id", "message_created_at")) == {
        ("order-1", first.pk, first.created_at), ("order-2", other.pk, other.created_at)}
    # written with other rows in one statement (the money path's insert_all): skipped all the same
    row, fresh = outbox_message(topic="test.part", payload={}, key="order-1"), outbox_message(topic="test.part", payload={}, key="order-3")
    with CaptureQueriesContext(connection) as queries:
        insert_all([row, fresh])
    assert len(queries) == 1 and row.instance._state.adding and not fresh.instance._state.adding
    assert OutboxMessage.objects.filter(topic="test.part").count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_transactions_racing_for_one_key_in_two_months_write_one_message(pg):
    later = _mid(add_months(month_start(timezone.now()), 2))

    def emit(i: int) -> int | None:
        with transaction.atomic():
            if i == 0:
                message = outbox_emit(topic="test.race", payload={"i": i}, key="race-1")
                pk = message.pk
            else:  # the same key, written in a later month's partition
                row = Insert(OutboxMessage(topic="test.race", payload={"i": i}, key="race-1", created_at=later, next_attempt_at=later))
                insert_all([row])
                pk = None if row.instance._state.adding else row.instance.pk
            time.sleep(0.3)  # hold the key's claim while the other transaction tries it
            return pk

    results = run_in_threads(2, emit)
    assert not any(isinstance(r, BaseException) for r in results), results
    assert OutboxMessage.objects.filter(topic="test.race").count() == 1
    winner = OutboxMessage.objects.get(topic="test.race")
    assert winner.pk in results and OutboxKey.objects.get(topic="test.race", key="race-1").message_id == winner.pk
    assert outbox_emit(topic="test.race", payload={}, key="race-1").pk == winner.pk


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_deleted_message_frees_its_key_and_a_purged_old_one_too(pg, settings):
    settings.OUTBOX_RETENTION_DAYS = 1
    message = outbox_emit(topic="test.part", payload={}, key="k")
    OutboxMessage.objects.filter(pk=message.pk).update(status=DONE, done_at=timezone.now() - timedelta(days=2))
    assert OutboxKey.objects.filter(topic="test.part").count() == 1
    assert outbox_purge() == 1
    assert not OutboxKey.objects.filter(topic="test.part").exists()
    assert outbox_emit(topic="test.part", payload={}, key="k").pk != message.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_dispatch_reads_the_month_of_its_message(pg, django_capture_on_commit_callbacks):
    calls = []

    def record(message):
        calls.append(message.pk)

    register_handler("test.month.", record)
    try:
        with mock.patch("core.tasks.dispatch_outbox.apply_async") as enqueue:
            with django_capture_on_commit_callbacks(execute=True):
                message = outbox_emit(topic="test.month.event", payload={})
        (args, kwargs, *_), options = enqueue.call_args
        assert args == (message.pk,) and datetime.fromisoformat(kwargs["created_at"]) == message.created_at
        elsewhere = message.created_at + timedelta(days=40)
        assert outbox_dispatch(message_id=message.pk, created_at=elsewhere) == "skipped"  # only that month is read
        with CaptureQueriesContext(connection) as queries:
            assert outbox_dispatch(message_id=message.pk, created_at=message.created_at) == "dispatched"
        claim = next(q["sql"] for q in queries if "FOR UPDATE" in q["sql"])
        assert '"created_at" =' in claim
        assert calls == [message.pk]
        second = outbox_emit(topic="test.month.event", payload={})
        assert outbox_dispatch(message_id=second.pk) == "dispatched"  # by id alone (an older task): every partition probed
        assert OutboxMessage.objects.get(pk=second.pk).status == DONE  # the admin loads by id alone too
    finally:
        unregister_handler("test.month.", record)


# --- Dropping old months ----------------------------------------------------------------------------


@pytest.fixture
def old_months(pg, settings):
    """Three months far ahead (created for the test, rolled back with it) and a `now` when all
    are past the retention: A all done with a key, B done and one dead, C one still pending."""
    settings.OUTBOX_RETENTION_DAYS = 30
    start = add_months(month_start(timezone.now()), 14)
    entry_partitions_ensure(months_ahead=2, now=_mid(start))
    months = {}
    for n, label in enumerate("ABC"):
        when = _mid(add_months(start, n))
        rows = [OutboxMessage.objects.create(topic="test.old", payload={}, key=f"{label}-{i}" if i == 0 else "", created_at=when,
                                             next_attempt_at=when, status=DONE, done_at=when + timedelta(hours=1)) for i in range(3)]
        months[label] = (partition_name("core_outboxmessage", add_months(start, n)), rows)
    OutboxMessage.objects.filter(pk=months["B"][1][1].pk).update(status=DEAD, done_at=None, dead_at=_mid(add_months(start, 1)))
    OutboxMessage.objects.filter(pk=months["C"][1][2].pk).update(status=PENDING, done_at=None)
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # the rows' deferred checks run now, as at a commit: a table with pending ones cannot go
    return months, _mid(add_months(start, 5))


def _attached() -> set[str]:
    return {name for name, _ in outbox_months()}


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_old_month_all_done_is_dropped_with_its_keys(old_months):
    months, now = old_months
    (a, a_rows), (b, _), (c, _) = months["A"], months["B"], months["C"]
    assert [n for n, _ in outbox_drop_months(now=now, dry_run=True) if n in (a, b, c)] == [a]
    assert {a, b, c} <= _attached()
    a_end = add_months(month_start(a_rows[0].created_at), 1)
    recent = datetime(a_end.year, a_end.month, 1, tzinfo=tz.utc) + timedelta(days=20)  # A ended within the retention: stays
    assert [n for n, _ in outbox_drop_months(now=recent) if n in (a, b, c)] == []
    assert (a, 3) in outbox_drop_months(now=now)
    assert a not in _attached() and {b, c} <= _attached()
    assert _sql("SELECT to_regclass(%s)", [a])[0][0] is None  # dropped, not only detached
    assert not OutboxMessage.objects.filter(pk__in=[m.pk for m in a_rows]).exists()
    assert not OutboxKey.objects.filter(key="A-0").exists() and OutboxKey.objects.filter(key__in=["B-0", "C-0"]).count() == 2
    # the dead message's month goes only when an operator asks; the pending one's never
    assert [n for n, _ in outbox_drop_months(now=now, include_dead=True) if n in (b, c)] == [b]
    assert c in _attached() and OutboxMessage.objects.filter(topic="test.old").count() == 3
    entry_partitions_ensure(months_ahead=0, now=now)
    with mock.patch("django.utils.timezone.now", return_value=now):  # A's key is free again
        assert outbox_emit(topic="test.old", payload={}, key="A-0").pk not in [m.pk for m in a_rows]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_hourly_purge_drops_all_done_months_and_the_command_the_rest(old_months):
    months, now = old_months
    (a, _), (b, _), (c, _) = months["A"], months["B"], months["C"]
    assert outbox_purge(now=now) == 3 + 2 + 2  # A as a month; B's and C's done rows one by one (B's dead, C's pending stay)
    assert a not in _attached() and {b, c} <= _attached()
    with mock.patch("django.utils.timezone.now", return_value=now):
        call_command("outbox_drop_months", "--include-dead", "--detach-only")
    assert b not in _attached() and c in _attached()
    assert _sql(f"SELECT count(*), count(*) FILTER (WHERE status = 'dead') FROM {b}")[0] == (1, 1)  # kept to archive
    assert not OutboxKey.objects.filter(key="B-0").exists()


# --- Migration 0004 on a table with rows --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_migration_converts_a_table_with_rows_and_back(pg):
    columns = ("id", "topic", "key", "status", "payload", "created_at", "done_at")
    try:
        kept = outbox_emit(topic="test.mig", payload={"n": 1}, key="k-1")
        outbox_emit(topic="test.mig", payload={"n": 2})
        old = timezone.now() - timedelta(days=70)
        OutboxMessage.objects.create(topic="test.mig", payload={}, key="k-old", created_at=old, next_attempt_at=old, status=DONE, done_at=old)
        _migrate([("core", "0003_partition_idempotency_records")])
        assert not is_partitioned("core_outboxmessage")
        assert _sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'outbox_message_unique_key'")[0][0] == 1
        before = list(OutboxMessage.objects.order_by("id").values_list(*columns))
        assert len(before) == 3

        _migrate(_latest())
        assert is_partitioned("core_outboxmessage")
        assert list(OutboxMessage.objects.order_by("id").values_list(*columns)) == before
        assert {_partition_of(row[0]) for row in before} == {"core_outboxmessage_p_legacy"}
        assert set(OutboxKey.objects.values_list("key", "message_id")) == {("k-1", kept.pk), ("k-old", before[2][0])}
        assert outbox_emit(topic="test.mig", payload={}, key="k-1").pk == kept.pk  # the guard kept the converted keys
        fresh = outbox_emit(topic="test.mig", payload={}, key="k-2")
        assert fresh.pk > before[-1][0]  # ids continue the one sequence
        assert len(index_and_partitions("outbox_message_due")) == len(partitions("core_outboxmessage")) + 1

        _migrate([("core", "0003_partition_idempotency_records")])  # and back: one plain table with every row
        assert not is_partitioned("core_outboxmessage")
        assert OutboxMessage.objects.count() == 4
        assert _sql("SELECT to_regclass('core_outboxkey')")[0][0] is None
    finally:
        _migrate(_latest())
    assert is_partitioned("core_outboxmessage")
    assert outbox_emit(topic="test.mig", payload={}, key="k-2").pk == fresh.pk
