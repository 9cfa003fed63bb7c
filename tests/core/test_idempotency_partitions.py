"""Idempotency records partitioned by month (issue 15 item 3; core 0003): a key still runs once
when its retry, or its racing twin, falls in another month, the claim sees a twin that committed
while the claim's statement was already running, and the hourly purge drops expired months whole.
PostgreSQL only: the partitions, the claim function and the advisory lock are PostgreSQL's."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from core import idempotency
from core.idempotency import _advisory_lock_id, idempotency_partitions_drop, idempotency_records_purge
from core.models import IdempotencyRecord
from core.partitions import add_months, is_partitioned, partition_name, partitions
from tests.concurrency import in_background, run_in_threads, side_connection
from tests.core.test_idempotency import URL, _assert_one_effect, _client, _effects, _post, _user
from tests.core.idempotency_urls import Controls
from tests.migrations import latest_migrations, migrate_to as _migrate

pytestmark = [pytest.mark.postgres, pytest.mark.urls("tests.core.idempotency_urls")]

TABLE = "core_idempotencyrecord"
# A month boundary between two monthly partitions the migration created (the legacy partition
# covers everything before the month after the migration ran).
JAN = datetime(2027, 1, 1, tzinfo=UTC).date()
LAST_SECOND_OF_JAN = datetime(2027, 1, 31, 23, 59, 59, 500000, tzinfo=UTC)
FIRST_SECOND_OF_FEB = datetime(2027, 2, 1, 0, 0, 0, 500000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _controls():
    Controls.reset()
    yield
    Controls.reset()


class _Clock:
    """`core.idempotency`'s clock, settable per thread (the module reads `timezone.now()`)."""

    def __init__(self, default: datetime):
        self.default, self.local = default, threading.local()

    def now(self) -> datetime:
        return getattr(self.local, "value", self.default)

    def set(self, value: datetime) -> None:
        self.local.value = value


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock(LAST_SECOND_OF_JAN)
    monkeypatch.setattr(idempotency, "timezone", clock)
    return clock


def _where(record: IdempotencyRecord) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [record.pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
class TestMonths:
    def test_the_table_is_partitioned_and_a_record_lands_in_its_month(self, clock):
        assert is_partitioned(TABLE)
        assert {partition_name(TABLE, JAN), partition_name(TABLE, add_months(JAN, 1))} <= {name for name, _ in partitions(TABLE)}
        response = _post(_client(_user()), key="k-jan")
        assert response.status_code == 201
        record = IdempotencyRecord.objects.get(key="k-jan")
        assert record.period == JAN and record.created_at == LAST_SECOND_OF_JAN
        assert _where(record) == partition_name(TABLE, JAN)

    def test_a_retry_in_the_next_month_replays_the_record_of_the_month_before(self, clock):
        user = _user()
        first = _post(_client(user), key="k-boundary", body={"n": 7})
        assert first.status_code == 201
        clock.set(FIRST_SECOND_OF_FEB)
        retry = _post(_client(user), key="k-boundary", body={"n": 7})
        assert retry.status_code == 201 and retry["Idempotency-Replayed"] == "true"
        assert retry.content == first.content
        assert _effects() == 1 and IdempotencyRecord.objects.count() == 1
        changed = _post(_client(user), key="k-boundary", body={"n": 8})
        assert changed.status_code == 422 and changed.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    def test_an_expired_record_of_last_month_frees_the_key(self, clock):
        user = _user()
        assert _post(_client(user), key="k-old").status_code == 201
        clock.set(LAST_SECOND_OF_JAN + timedelta(hours=49))  # past the 48 h retention, in February
        again = _post(_client(user), key="k-old")
        assert again.status_code == 201 and "Idempotency-Replayed" not in again
        assert _effects() == 2
        # January's expired record is no longer read (its month is past the retention) and goes
        # with the purge; February's is the key's record now.
        assert sorted(IdempotencyRecord.objects.values_list("period", flat=True)) == [JAN, add_months(JAN, 1)]
        idempotency_records_purge(now=clock.now())  # January's partition is dropped whole
        assert partition_name(TABLE, JAN) not in {name for name, _ in partitions(TABLE)}
        assert list(IdempotencyRecord.objects.values_list("period", flat=True)) == [add_months(JAN, 1)]


@pytest.mark.django_db(transaction=True)
class TestRacingAcrossMonths:
    def test_16_twins_half_in_each_month_move_once(self, clock):
        """Half the threads' clocks read the last half-second of January, half the first of
        February: their records would go to two partitions, where UNIQUE (..., period) cannot see
        both. The claim's lock and fresh lookup still let exactly one run."""
        user = _user()
        Controls.delay = 0.2

        def worker(i):
            clock.set(LAST_SECOND_OF_JAN if i % 2 else FIRST_SECOND_OF_FEB)
            response = _post(_client(user), key="k-race-months", body={"n": 9})
            return (response.status_code, response.content, response.get("Idempotency-Replayed"))

        results = run_in_threads(16, worker)
        originals, replays, in_progress = _assert_one_effect(results)
        assert len(originals) == 1
        assert _effects() == 1 and IdempotencyRecord.objects.count() == 1
        # Whichever month the winner wrote in, a retry from either month replays it.
        for moment in (LAST_SECOND_OF_JAN, FIRST_SECOND_OF_FEB):
            clock.set(moment)
            again = _post(_client(user), key="k-race-months", body={"n": 9})
            assert again.status_code == 201 and again["Idempotency-Replayed"] == "true"
        assert _effects() == 1

    def test_the_claim_sees_a_twin_that_committed_while_its_statement_ran(self):
        """The claim statement starts (its snapshot is taken) while a twin holds the key; the twin
        commits before the claim asks for the lock. A lookup in the statement's own snapshot would
        miss the twin's record and run the request again; the claim's lookup runs after the lock,
        with a fresh snapshot, and finds it."""
        scope, endpoint, key, month = "user:1", "tests.effect", "k-snapshot", JAN
        lock = _advisory_lock_id(scope, endpoint, key)
        claim = "SELECT pg_sleep(0.6), core_idempotency_claim(%s, %s, %s, %s, %s)"
        plain = f"SELECT pg_sleep(0.6), (SELECT id FROM {TABLE} WHERE scope = %s AND endpoint = %s AND key = %s)"
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT core_idempotency_claim(%s, %s, %s, %s, %s)", [lock, scope, endpoint, key, month])
                assert cursor.fetchone()[0] is None  # free, and now locked by this transaction
            record = IdempotencyRecord.objects.create(
                scope=scope, endpoint=endpoint, key=key, fingerprint="f" * 64, method="POST", path=URL, response_status=201,
                response_body="{}", created_at=LAST_SECOND_OF_JAN, expires_at=LAST_SECOND_OF_JAN + timedelta(hours=48), period=month,
            )
            seen = {}

            def look(name, sql, params):
                with connections["default"].cursor() as cursor:
                    cursor.execute(sql, params)
                    seen[name] = cursor.fetchone()[1]

            threads = [
                in_background(lambda: look("claim", claim, [lock, scope, endpoint, key, month]))[0],
                in_background(lambda: look("plain", plain, [scope, endpoint, key]))[0],
            ]
            for thread in threads:
                thread.start()
            time.sleep(0.25)  # both statements are running, their snapshots taken
        # committed here, before either statement's sleep ends
        for thread in threads:
            thread.join(timeout=10)
        assert seen["plain"] is None, "the statement's own snapshot predates the commit"
        assert seen["claim"] == record.pk, "the claim looks up after the lock, in a fresh snapshot"

    def test_the_claim_refuses_a_key_whose_twin_is_running(self):
        scope, endpoint, key = "user:1", "tests.effect", "k-busy"
        lock = _advisory_lock_id(scope, endpoint, key)
        sql = "SELECT core_idempotency_claim(%s, %s, %s, %s, %s)"
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [lock, scope, endpoint, key, JAN])
            seen = {}

            def other():
                with connections["default"].cursor() as cursor:
                    cursor.execute(sql, [lock, scope, endpoint, key, JAN])
                    seen["claim"] = cursor.fetchone()[0]

            thread, _ = in_background(other)
            thread.start()
            thread.join(timeout=10)
        assert seen["claim"] == -1


@pytest.mark.django_db
class TestPurgeByMonth:
    def _record(self, key, period, expires_at):
        return IdempotencyRecord.objects.create(
            scope="user:1", endpoint="tests.effect", key=key, fingerprint="f" * 64, method="POST", path=URL,
            response_status=201, response_body="{}", created_at=expires_at - timedelta(hours=48), expires_at=expires_at, period=period,
        )

    @override_settings(IDEMPOTENCY_KEY_TTL_HOURS=48)
    def test_a_month_whose_records_all_expired_is_dropped_whole(self):
        feb, mar = add_months(JAN, 1), add_months(JAN, 2)
        self._record("jan-1", JAN, datetime(2027, 1, 20, tzinfo=UTC))
        self._record("jan-2", JAN, datetime(2027, 2, 2, tzinfo=UTC))
        self._record("feb-1", feb, datetime(2027, 2, 10, tzinfo=UTC))
        # 1 February: January's records may still be live (a 48 h retention reaches back into it).
        assert partition_name(TABLE, JAN) not in idempotency_partitions_drop(now=datetime(2027, 2, 1, 12, tzinfo=UTC))
        assert partition_name(TABLE, JAN) in {name for name, _ in partitions(TABLE)}
        # 4 February: every January record has expired -> January goes, February (live, current) stays.
        dropped = idempotency_partitions_drop(now=datetime(2027, 2, 4, tzinfo=UTC))
        assert partition_name(TABLE, JAN) in dropped
        names = {name for name, _ in partitions(TABLE)}
        assert partition_name(TABLE, JAN) not in names
        assert {partition_name(TABLE, feb), partition_name(TABLE, mar)} <= names
        assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"feb-1"}

    @override_settings(IDEMPOTENCY_KEY_TTL_HOURS=48)
    def test_a_month_still_holding_a_live_record_is_kept(self):
        """A record kept longer than today's retention (stored under an earlier, longer one)
        keeps its month; the purge deletes the month's expired rows one by one instead."""
        self._record("jan-expired", JAN, datetime(2027, 1, 20, tzinfo=UTC))
        self._record("jan-long", JAN, datetime(2027, 3, 1, tzinfo=UTC))
        now = datetime(2027, 2, 10, tzinfo=UTC)
        assert partition_name(TABLE, JAN) not in idempotency_partitions_drop(now=now)
        assert idempotency_records_purge(now=now) == 1
        assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"jan-long"}
        assert partition_name(TABLE, JAN) in {name for name, _ in partitions(TABLE)}

    def test_the_current_and_coming_months_are_never_dropped(self):
        before = {name for name, _ in partitions(TABLE)}
        idempotency_partitions_drop()  # now: nothing has expired in this month or the next ones
        after = {name for name, _ in partitions(TABLE)}
        assert before == after


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_table_with_records_and_back():
    latest = latest_migrations()
    columns = ("id", "scope", "endpoint", "key", "fingerprint", "response_status", "response_body", "expires_at")
    try:
        _migrate([("core", "0002_outbox_lease")])
        assert not is_partitioned(TABLE)
        with connection.cursor() as cursor:
            for n in range(3):
                cursor.execute(
                    f"INSERT INTO {TABLE} (scope, endpoint, key, fingerprint, method, path, response_status, response_body,"
                    " response_headers, created_at, expires_at) VALUES ('user:1', 'e', %s, 'f', 'POST', '/p', 201, '{}', '{}', now(), now() + interval '2 days')",
                    [f"k{n}"],
                )
            cursor.execute(f"SELECT {', '.join(columns)} FROM {TABLE} ORDER BY id")
            before = cursor.fetchall()
        _migrate(latest)
        assert is_partitioned(TABLE)
        assert list(IdempotencyRecord.objects.order_by("id").values_list(*columns)) == before
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {TABLE}")
            assert cursor.fetchall() == [(f"{TABLE}_p_legacy",)]
        # The claim finds a converted record; a new one gets the next id.
        response = _post(_client(_user()), key="k-after")
        assert response.status_code == 201
        assert IdempotencyRecord.objects.get(key="k-after").pk > before[-1][0]
        # And back: a plain table with every record, the new one too.
        _migrate([("core", "0002_outbox_lease")])
        assert not is_partitioned(TABLE)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            assert cursor.fetchone()[0] == 4
    finally:
        _migrate(latest)
    assert is_partitioned(TABLE)


@pytest.mark.django_db(transaction=True)
@override_settings(IDEMPOTENCY_KEY_TTL_HOURS=48, IDEMPOTENCY_DROP_LOCK_TIMEOUT_MS=200)
def test_a_busy_table_keeps_its_expired_month_for_the_next_run():
    """A request's transaction holds the table's lock (every money request inserts a record): the
    drop waits IDEMPOTENCY_DROP_LOCK_TIMEOUT_MS, leaves the month and raises nothing; once the
    table is free the next run drops it."""
    IdempotencyRecord.objects.create(
        scope="user:1", endpoint="tests.effect", key="jan-old", fingerprint="f" * 64, method="POST", path=URL, response_status=201,
        response_body="{}", created_at=datetime(2027, 1, 10, tzinfo=UTC), expires_at=datetime(2027, 1, 12, tzinfo=UTC), period=JAN,
    )
    IdempotencyRecord.objects.create(  # a live record before January keeps the months before it
        scope="user:1", endpoint="tests.effect", key="kept", fingerprint="f" * 64, method="POST", path=URL, response_status=201,
        response_body="{}", created_at=datetime(2026, 12, 1, tzinfo=UTC), expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        period=add_months(JAN, -1),
    )
    now = datetime(2027, 2, 10, tzinfo=UTC)
    with side_connection() as request:  # a money request, mid-transaction
        request.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")
        started = time.monotonic()
        assert partition_name(TABLE, JAN) not in idempotency_partitions_drop(now=now)
        assert time.monotonic() - started < 5
        request.rollback()
    assert partition_name(TABLE, JAN) in {name for name, _ in partitions(TABLE)}
    try:
        assert idempotency_partitions_drop(now=now) == [partition_name(TABLE, JAN)]
    finally:  # later tests (and clocks set in January) need the month back
        from ledger.partitions import entry_partitions_ensure

        entry_partitions_ensure()
    assert partition_name(TABLE, JAN) in {name for name, _ in partitions(TABLE)}
