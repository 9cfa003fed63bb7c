"""Monthly partitions of the append-only history tables (issue 15 item 3): `ledger_entry`,
`compliance_auditevent` (compliance migration 0011, the same shape), the idempotency records
(`core_idempotencyrecord` by `period`: core migration 0003, expired months dropped by
core.idempotency), the outbox (`core_outboxmessage`: core migration 0004, old months dropped by
core.outbox) and the webhook deliveries and attempts (`accounts_webhookdelivery` by `created_at`,
`accounts_webhookattempt` by its delivery's `delivery_created_at`: accounts migration 0011, dropped
past retention by accounts.webhooks.retention), PostgreSQL declarative partitioning; nothing on
SQLite (the development fallback keeps one plain table).

`ledger_entry` is partitioned by RANGE (created_at), one partition a month, named
`ledger_entry_pYYYY_MM` and covering [first of the month, first of the next) in UTC. Migration
0010 converted the table that existed before: that table, rows and indexes as they were, became
the partition `ledger_entry_p_legacy` for everything before the first monthly partition (an
ATTACH, not a copy), so the conversion rewrites nothing.

Invariants:
- The primary key is (id, created_at): PostgreSQL requires the partition key in every unique
  index. `id` still comes from one identity sequence, so ids stay unique and increasing; no
  foreign key points at entries (they are the leaves of the ledger).
- The append-only trigger and the deferred sum-to-zero constraint trigger are defined on the
  partitioned table: PostgreSQL clones them onto every partition, present and future, so a
  partition made by `entry_partitions_ensure` is guarded from its first row.
- The foreign keys (transaction, wallet), the CHECK constraints and the indexes are on the
  partitioned table too, and so on every partition.
- There is no DEFAULT partition: an entry whose month has no partition fails loudly rather than
  landing somewhere nobody archives. `ledger.tasks.ensure_entry_partitions` (beat, daily, on the
  `maintenance` queue) keeps LEDGER_PARTITION_MONTHS_AHEAD months ready, and migration 0010
  created them already.

Archiving (docs/deploy.md, "Partitioned history"): `ledger.archive` (`archive_entries`) dumps an
old month to a checksummed CSV, records its per-wallet totals and detaches and drops its
partition in one transaction; `ledger.checks` counts those totals in place of the entries.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from core.partitions import (  # noqa: F401  (re-exported: the ledger's callers and tests use them from here)
    LEGACY_SUFFIX,
    add_months,
    is_partitioned,
    month_partition_sql,
    month_start,
    partition_name,
    partitions,
)
from core.partitions import legacy_end as _legacy_end

PARTITIONED = {
    "ledger_entry": "created_at",
    "compliance_auditevent": "created_at",
    "core_idempotencyrecord": "period",
    "core_outboxmessage": "created_at",
    "accounts_webhookdelivery": "created_at",
    "accounts_webhookattempt": "delivery_created_at",  # the month of its delivery, created with it
}
# PostgreSQL clones row-level triggers onto every partition, not statement-level ones: what each
# new partition of a table needs besides (the audit chain's TRUNCATE refusal; see compliance 0011).
PER_PARTITION_SQL = {
    "compliance_auditevent": "CREATE OR REPLACE TRIGGER compliance_auditevent_no_truncate BEFORE TRUNCATE ON {name}"
                             " FOR EACH STATEMENT EXECUTE FUNCTION compliance_audit_refuse_truncate()",
}


def create_month_sql(table: str, month) -> str:
    sql = month_partition_sql(table, month)
    extra = PER_PARTITION_SQL.get(table)
    return f"{sql}; {extra.format(name=partition_name(table, month))}" if extra else sql


def entry_partitions_ensure(*, months_ahead: int | None = None, now: datetime | None = None) -> list[str]:
    """Create the monthly partitions of every partitioned history table from the current month
    to `months_ahead` months after it (LEDGER_PARTITION_MONTHS_AHEAD), those missing only; the
    names created. A month already covered (by the legacy partition) is skipped. Safe to run
    twice or concurrently (IF NOT EXISTS, one short transaction per partition). Nothing on SQLite."""
    from django.conf import settings

    if connection.vendor != "postgresql":
        return []
    ahead = settings.LEDGER_PARTITION_MONTHS_AHEAD if months_ahead is None else months_ahead
    first = month_start(now or timezone.now())
    created = []
    for table in PARTITIONED:
        if not is_partitioned(table):
            continue
        legacy_end = _legacy_end(table)
        existing = {name for name, _ in partitions(table)}
        for n in range(ahead + 1):
            month = add_months(first, n)
            name = partition_name(table, month)
            if name in existing or (legacy_end is not None and month < legacy_end):
                continue
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(create_month_sql(table, month))
            created.append(name)
    return created


def index_and_partitions(index: str) -> set[str]:
    """`index` and the indexes PostgreSQL attached to it on each partition (their own names:
    `ledger_entry_p2027_01_wallet_id_created_at_id_idx`); just `index` on a plain table."""
    if connection.vendor != "postgresql":
        return {index}
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)", [index])
        return {index, *(name for (name,) in cursor.fetchall())}
