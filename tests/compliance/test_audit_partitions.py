"""Audit events partitioned by month (issue 15 item 3; compliance migration 0011, ledger/partitions.py).

On PostgreSQL: the table is partitioned with (id, created_at) as primary key and months ready
ahead; events of any month land in their partition; the guard (no UPDATE but the sequencer's one
fill, no DELETE) holds on every partition, raw SQL on the partition itself included, and so does
the TRUNCATE refusal (a statement trigger PostgreSQL does not clone: put on each partition); the
sequencer links events across months and the verifier proves the chain; a tampered event in an
old month is still caught; the daily partition task creates the audit months too; the migration
converts a table with events and back."""

from datetime import datetime, timedelta, timezone as tz

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.audit import audit_chain_advance, audit_record, audit_verify
from compliance.models import AuditEvent
from ledger.partitions import _legacy_end, add_months, entry_partitions_ensure, is_partitioned, month_start, partition_name, partitions
from tests.factories.ledger import clock_at
from tests.migrations import latest_migrations, migrate_to as _migrate

TABLE = "compliance_auditevent"
pytestmark = [pytest.mark.postgres]


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _partition_of(event_id: int) -> str:
    return _sql(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [event_id])[0][0]


@pytest.fixture
def pg():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")


@pytest.mark.django_db
def test_audit_events_are_partitioned_by_month_with_months_ready_ahead(pg, settings):
    assert is_partitioned(TABLE)
    key = _sql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
               f" WHERE i.indrelid = '{TABLE}'::regclass AND i.indisprimary ORDER BY a.attnum")
    assert [k for (k,) in key] == ["id", "created_at"]
    names = {name for name, _ in partitions(TABLE)}
    first = _legacy_end(TABLE)
    assert f"{TABLE}_p_legacy" in names and first <= add_months(month_start(timezone.now()), 1)
    for n in range(settings.LEDGER_PARTITION_MONTHS_AHEAD):
        assert partition_name(TABLE, add_months(first, n)) in names
    for name in names:  # the TRUNCATE refusal on every partition, the guard cloned onto every one
        triggers = {t for (t,) in _sql("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [name])}
        assert triggers == {"compliance_auditevent_append_only", "compliance_auditevent_no_truncate"}, name


@pytest.mark.django_db(transaction=True)
def test_a_chain_across_months_is_linked_verified_and_guarded_in_every_partition(pg):
    future = add_months(month_start(timezone.now()), 2)
    when = datetime(future.year, future.month, 3, 12, tzinfo=tz.utc)
    now_event = audit_record(action="this.month")
    with clock_at(when):
        later_event = audit_record(action="later.month")
    target = partition_name(TABLE, future)
    assert _partition_of(later_event.pk) == target and _partition_of(now_event.pk) != target
    assert later_event.pk > now_event.pk, "ids continue the one identity sequence"

    assert audit_chain_advance().linked == 2
    chained = {e.pk: e for e in AuditEvent.objects.all()}
    assert {chained[now_event.pk].sequence, chained[later_event.pk].sequence} == {1, 2}
    assert audit_verify()["valid"] is True

    for sql in (f"UPDATE {target} SET action = 'edited'", f"DELETE FROM {target}",
                f"UPDATE {TABLE} SET sequence = NULL, prev_hash = NULL, hash = NULL WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            _sql(sql, [later_event.pk] if "%s" in sql else None)
    for table in (TABLE, target, f"{TABLE}_p_legacy", _partition_of(now_event.pk)):
        with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL coffer.allow_audit_truncate = 'off'")  # the test settings' own flush allowance, off
            cursor.execute(f"TRUNCATE {table}")
    assert AuditEvent.objects.count() == 2

    # someone able to switch the guard off rewrites the event of the later month: verify says so
    with transaction.atomic():
        _sql(f"ALTER TABLE {target} DISABLE TRIGGER compliance_auditevent_append_only")
        _sql(f"UPDATE {target} SET action = 'rewritten'")
        _sql(f"ALTER TABLE {target} ENABLE TRIGGER compliance_auditevent_append_only")
    verdict = audit_verify()
    assert verdict["valid"] is False and verdict["first_invalid_id"] == later_event.pk


@pytest.mark.django_db
def test_the_daily_task_creates_audit_months_too(pg):
    later = timezone.now() + timedelta(days=500)
    created = entry_partitions_ensure(months_ahead=1, now=later)
    expected = [partition_name(t, add_months(month_start(later), n)) for t in ("ledger_entry", TABLE) for n in range(2)]
    assert set(expected) <= set(created)  # with the other partitioned tables' months
    assert entry_partitions_ensure(months_ahead=1, now=later) == []
    name = partition_name(TABLE, month_start(later))
    assert {t for (t,) in _sql("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [name])} == {
        "compliance_auditevent_append_only", "compliance_auditevent_no_truncate"}
    with clock_at(later):
        event = audit_record(action="far.month")
    assert _partition_of(event.pk) == name


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_table_with_events_and_back(pg):
    latest = latest_migrations()
    try:
        for n in range(3):
            audit_record(action=f"before.{n}")
        audit_chain_advance()
        _migrate([("compliance", "0010_reference_currency_defaults")])
        assert not is_partitioned(TABLE)
        before = list(AuditEvent.objects.order_by("id").values_list("id", "sequence", "hash", "action"))
        _migrate(latest)
        assert is_partitioned(TABLE)
        assert list(AuditEvent.objects.order_by("id").values_list("id", "sequence", "hash", "action")) == before
        assert {_partition_of(pk) for pk, *_ in before} == {f"{TABLE}_p_legacy"}
        new = audit_record(action="after")
        assert new.pk > before[-1][0] and audit_chain_advance().linked == 1 and audit_verify()["valid"] is True
    finally:
        _migrate(latest)
    assert is_partitioned(TABLE)
