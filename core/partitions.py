"""Month arithmetic and catalogue reads for tables partitioned by month (PostgreSQL declarative
partitioning, RANGE on a date or timestamp column, one partition a month named
`<table>_pYYYY_MM`, the converted pre-existing table attached as `<table>_p_legacy`).

Plumbing shared by the partitioned tables of every layer: `ledger.partitions` keeps the registry
of partitioned tables and creates months ahead; `core.idempotency` drops its expired months.
Nothing here writes; nothing here runs on SQLite (`is_partitioned` is False there).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from django.db import connection

LEGACY_SUFFIX = "_p_legacy"
_UPPER_BOUND = re.compile(r"TO \('(\d{4})-(\d{2})-01")


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def month_partition_sql(table: str, month: date) -> str:
    """CREATE the partition of `table` for `month`: [first of the month, first of the next), UTC
    midnight (a date partition key reads the same literal as that date)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} PARTITION OF {table}"
        f" FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{add_months(month, 1).isoformat()} 00:00:00+00')"
    )


def is_partitioned(table: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))", [table])
        return cursor.fetchone()[0]


def partitions(table: str) -> list[tuple[str, str]]:
    """(partition name, bound expression) of `table`, in name order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [table],
        )
        return list(cursor.fetchall())


def upper_bound(bound: str) -> date | None:
    """The first month a partition's bound expression no longer covers (`... TO ('2027-01-01 ...')`)."""
    match = _UPPER_BOUND.search(bound)
    return date(int(match.group(1)), int(match.group(2)), 1) if match else None


def legacy_end(table: str) -> date | None:
    """The first month not covered by the legacy partition (its upper bound), if it has one."""
    for name, bound in partitions(table):
        if name == table + LEGACY_SUFFIX:
            return upper_bound(bound)
    return None
