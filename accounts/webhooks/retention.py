"""Retention of webhook deliveries and their attempts (issue 15 item 3): they are kept
WEBHOOK_DELIVERY_RETENTION_DAYS (90) after the delivery's `created_at`, then go, by the hourly
beat task `accounts.tasks.purge_webhook_deliveries` (`maintenance` queue).

Invariants:
- Only finished deliveries go: `delivered`, or `failed` (the state the engine gives up in, and
  the one a disabled or deleted endpoint's deliveries get). A `pending` delivery stays whatever
  its age (its outbox message is still working on it, or an operator has to), and so does its
  month's partition. A delivery always goes with its attempts.
- PostgreSQL, partitioned (accounts migration 0011): a month goes whole, once its partition's
  upper bound is past the retention and none of its deliveries is pending: the attempts'
  partition of that month first (the composite foreign key points from it), then the
  deliveries', each DETACHed CONCURRENTLY (a SHARE UPDATE EXCLUSIVE lock: the money path keeps
  inserting deliveries meanwhile; a plain DETACH when called inside a transaction) and DROPped,
  waiting at most WEBHOOK_RETENTION_LOCK_TIMEOUT_MS for a lock. So a delivery is kept between the
  retention and the retention plus one month: deleting rows as each passes the retention would
  make DELETE and VACUUM do the work the partitions are there to spare. The legacy partition
  (everything before the partitioning) goes the same way once its bound is past the retention.
- A month past the retention that still holds a pending delivery loses its finished deliveries
  row by row (in batches; the foreign key's ON DELETE CASCADE takes their attempts), so one stuck
  delivery keeps only itself.
- SQLite, or tables not partitioned: finished deliveries created before the cutoff are deleted
  row by row, in batches, with their attempts.
- Resumable: a concurrent detach that was interrupted is finalized and a partition this task
  detached but did not drop (marked by a table comment) is dropped by the next run. A month an
  operator detached himself, to archive it (docs/deploy.md), is no partition any more and is left
  alone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import WebhookAttempt, WebhookDelivery
from core.partitions import is_partitioned, upper_bound

logger = logging.getLogger("coffer.webhooks")

DELIVERIES, ATTEMPTS = WebhookDelivery._meta.db_table, WebhookAttempt._meta.db_table
FINISHED = (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED)
MARK = "coffer: detached by the webhook delivery retention, to be dropped"


def retention_cutoff(now: datetime | None = None) -> datetime:
    """Deliveries created before this are past retention (WEBHOOK_DELIVERY_RETENTION_DAYS, at least 1)."""
    return (now or timezone.now()) - timedelta(days=max(int(settings.WEBHOOK_DELIVERY_RETENTION_DAYS), 1))


def _rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def _partitions(table: str) -> dict[str, str]:
    """{partition name: bound expression} of `table` (attached, not being detached)."""
    return dict(_rows(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(%s) AND NOT i.inhdetachpending",
        [table],
    ))


def _execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _detach_and_drop(table: str, partition: str) -> None:
    quote = connection.ops.quote_name
    concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
    timeout = int(getattr(settings, "WEBHOOK_RETENTION_LOCK_TIMEOUT_MS", 5000))
    _execute(f"SET{' LOCAL' if connection.in_atomic_block else ''} lock_timeout = {timeout}")
    try:
        _execute(f"COMMENT ON TABLE {quote(partition)} IS '{MARK}'")
        _execute(f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(partition)}{concurrently}")
        _execute(f"DROP TABLE {quote(partition)}")
    finally:
        if not connection.in_atomic_block:
            _execute("RESET lock_timeout")


def _finish_interrupted() -> list[str]:
    """What an interrupted run left: a concurrent detach to finalize, a detached month to drop."""
    quote = connection.ops.quote_name
    finished = []
    if not connection.in_atomic_block:  # FINALIZE, as CONCURRENTLY, runs outside a transaction
        for parent, child in _rows(
            "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE i.inhdetachpending AND p.relname IN (%s, %s)", [DELIVERIES, ATTEMPTS],
        ):
            _execute(f"ALTER TABLE {quote(parent)} DETACH PARTITION {quote(child)} FINALIZE")
    marked = _rows(
        "SELECT c.relname, c.relispartition FROM pg_class c WHERE c.relkind = 'r' AND obj_description(c.oid, 'pg_class') = %s"
        " AND (c.relname LIKE %s OR c.relname LIKE %s) ORDER BY c.relname LIKE %s DESC",
        [MARK, f"{DELIVERIES}_p%", f"{ATTEMPTS}_p%", f"{ATTEMPTS}_p%"],
    )
    for name, attached in marked:  # attempts' first: they point at the deliveries
        if attached:  # marked, then the run died before its detach: judged again below
            _execute(f"COMMENT ON TABLE {quote(name)} IS NULL")
        else:
            _execute(f"DROP TABLE {quote(name)}")
            finished.append(name)
    return finished


def _delete_finished_in(partition: str, batch_size: int) -> int:
    """Finished deliveries of one partition past the retention, in batches (their attempts go by
    the foreign key's ON DELETE CASCADE)."""
    table = connection.ops.quote_name(partition)
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE status IN (%s, %s) LIMIT %s)",
                [*FINISHED, batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted


def _delete_finished(cutoff: datetime, batch_size: int) -> int:
    """Unpartitioned tables: finished deliveries created before `cutoff`, attempts first, in batches."""
    finished = WebhookDelivery.objects.filter(status__in=FINISHED, created_at__lt=cutoff).order_by()
    deleted = 0
    while True:
        keys = list(finished.values_list("pk", flat=True)[:batch_size])
        if not keys:
            return deleted
        with transaction.atomic():
            WebhookAttempt.objects.filter(delivery_id__in=keys).delete()
            deleted += finished.filter(pk__in=keys).delete()[1].get(WebhookDelivery._meta.label, 0)


def webhook_deliveries_purge(*, now: datetime | None = None, batch_size: int = 1000) -> dict[str, Any]:
    """Apply the retention (module docstring): {"dropped": partitions dropped, "deleted":
    deliveries deleted row by row}. Safe to run twice or concurrently with the engine."""
    cutoff = retention_cutoff(now)
    if not (is_partitioned(DELIVERIES) and is_partitioned(ATTEMPTS)):
        return {"dropped": [], "deleted": _delete_finished(cutoff, batch_size)}
    dropped = _finish_interrupted()
    deleted = 0
    attempts = _partitions(ATTEMPTS)
    for name, bound in sorted(_partitions(DELIVERIES).items()):
        end = upper_bound(bound)  # the first month it no longer covers (monthly bounds, UTC midnight)
        if end is None or datetime(end.year, end.month, 1, tzinfo=dt_timezone.utc) > cutoff:
            continue
        if _rows(f"SELECT EXISTS (SELECT 1 FROM {connection.ops.quote_name(name)} WHERE status = %s)", [WebhookDelivery.Status.PENDING])[0][0]:
            deleted += _delete_finished_in(name, batch_size)
            continue
        twin = ATTEMPTS + name[len(DELIVERIES):]  # accounts_webhookattempt_p2026_01, ..._p_legacy
        if twin in attempts and attempts[twin] != bound:
            logger.error("webhook retention: %s and %s have different bounds; left alone", name, twin)
            continue
        if twin in attempts:
            _detach_and_drop(ATTEMPTS, twin)
            dropped.append(twin)
        _detach_and_drop(DELIVERIES, name)
        dropped.append(name)
        logger.info("webhook retention: dropped the month %s (%s) and its attempts", name, bound)
    return {"dropped": dropped, "deleted": deleted}
