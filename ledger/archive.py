"""Archiving one month of `ledger_entry` (issue 15 item 3): `manage.py archive_entries --month
2026-01 --to /archive/ledger`. PostgreSQL only (the partitions are PostgreSQL's).

What it does, in two steps, each one database transaction:
1. **Dump** (`dumped`): under a SHARE lock on the month's partition (no row can be added to it
   meanwhile; readers and postings of other months go on), the month is checked clean, its rows
   are written with COPY to `<to>/ledger_entry_pYYYY_MM.csv` (a `.part` file, fsynced, then
   renamed) and a manifest `<to>/ledger_entry_pYYYY_MM.manifest.json` (sha256 and row count of
   the CSV, bounds, per-asset sums, and every wallet's totals), and an `ArchivedMonth` row records
   the file and its checksum.
2. **Archive** (`archived`): the CSV is read back and must match its checksum, its row count and
   the manifest; the month's per-wallet totals are recomputed and must equal the manifest's;
   then, in one transaction, the totals are inserted (`ArchivedTotal`, append-only), the
   partition is DETACHed and DROPped, the month marked `archived`, and an audit event written.
   The DETACH takes ledger_entry's ACCESS EXCLUSIVE lock for a catalogue change only; it waits
   at most LEDGER_ARCHIVE_LOCK_TIMEOUT_MS for postings in flight, else nothing changes and the
   command says to run again.

Invariants:
* Nothing leaves the database before it is on disk, checked: a month is dropped only in the
  transaction that records its totals, and only after its file was re-read and matched.
* Resumable and idempotent: killed during step 1, the next run dumps again (a stale `.part` is
  overwritten); killed during step 2, its transaction rolls back and the next run repeats step 2
  (dumping again first if the file is missing or does not match); an archived month is a no-op.
* Only a monthly partition at least LEDGER_ARCHIVE_MIN_AGE_MONTHS months before the current
  month is archived, and only if clean: no transaction with entries both inside and outside the
  month, no pending transaction, each wallet's chain of `balance_after` continuous inside the
  month, each transaction netting to zero per asset, and no entry of another month between a
  wallet's first and last entry of this one (ids and times rise together per wallet).
* After it, `ledger.checks` counts each archived (wallet, month) as one step of the wallet's
  chain (`last_balance_after` at `last_entry_id`, moving by credits - debits), so balances,
  chains and per-asset sums check as before; balances and statements that would need the
  archived entries are refused (`ledger.selectors.wallet_archived_guard`, HISTORY_ARCHIVED).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone as dt_timezone
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.audit import audit_record
from ledger.errors import ArchiveRefused
from ledger.models import ArchivedMonth, ArchivedTotal
from ledger.partitions import LEGACY_SUFFIX, _legacy_end, add_months, month_start, partition_name, partitions

TABLE = "ledger_entry"
COLUMNS = ("id", "transaction_id", "wallet_id", "direction", "amount", "balance_after", "operation_index", "created_at")
TOTAL_FIELDS = ("wallet_id", "asset_id", "entry_count", "debit_sum", "credit_sum", "first_entry_id", "last_entry_id", "last_balance_after")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class ArchiveOutcome:
    month: date
    partition: str
    status: str  # "archived" (this run) or "already archived"
    path: str
    sha256: str
    rows: int
    wallets: int
    dumped_this_run: bool = False  # False: the run reused a dump a previous run had written and verified it


def month_parse(text: str) -> date:
    """`YYYY-MM` to the first of that month."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ArchiveRefused(f"--month must be YYYY-MM, not {text!r}.")
    return date(int(match.group(1)), int(match.group(2)), 1)


def newest_archivable_month(now: datetime | None = None) -> date:
    """The newest month `entries_archive` accepts: LEDGER_ARCHIVE_MIN_AGE_MONTHS full months
    between it and the current month."""
    return add_months(month_start(now or timezone.now()), -(settings.LEDGER_ARCHIVE_MIN_AGE_MONTHS + 1))


def _bounds(month: date) -> tuple[str, str]:
    return f"{month.isoformat()} 00:00:00+00", f"{add_months(month, 1).isoformat()} 00:00:00+00"


# --- Checks and totals (one partition, read under its SHARE lock) ------------------------------

def _refuse_unclean(cursor, partition: str, month: date) -> None:
    start, end = _bounds(month)
    checks = [
        ("transactions {} have entries outside this month too",
         f"SELECT DISTINCT e.transaction_id FROM {partition} e WHERE EXISTS (SELECT 1 FROM {TABLE} x"
         " WHERE x.transaction_id = e.transaction_id AND (x.created_at < %s OR x.created_at >= %s)) ORDER BY 1 LIMIT 5", [start, end]),
        ("transactions {} are still pending (their entries may still change): archive after they settle",
         f"SELECT DISTINCT e.transaction_id FROM {partition} e JOIN ledger_transaction t ON t.id = e.transaction_id"
         " WHERE t.status NOT IN ('completed', 'reversed') ORDER BY 1 LIMIT 5", []),
        ("entries {} break their wallet's balance_after chain: run check_ledger",
         "SELECT id FROM (SELECT id, direction, amount, balance_after,"
         " lag(balance_after) OVER (PARTITION BY wallet_id ORDER BY id) AS prev FROM " + partition + ") c"
         " WHERE prev IS NOT NULL AND balance_after <> prev + CASE WHEN direction = 'credit' THEN amount ELSE -amount END"
         " ORDER BY 1 LIMIT 5", []),
        ("transactions {} do not net to zero per asset: run check_ledger",
         f"SELECT e.transaction_id FROM {partition} e JOIN ledger_wallet w ON w.id = e.wallet_id GROUP BY e.transaction_id, w.asset_id"
         " HAVING sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END) <> 0 ORDER BY 1 LIMIT 5", []),
        ("wallets {} have entries of other months between their first and last entry of this one",
         f"SELECT m.wallet_id FROM (SELECT wallet_id, min(id) AS lo, max(id) AS hi FROM {partition} GROUP BY wallet_id) m"
         f" WHERE EXISTS (SELECT 1 FROM {TABLE} x WHERE x.wallet_id = m.wallet_id AND x.id > m.lo AND x.id < m.hi"
         " AND (x.created_at < %s OR x.created_at >= %s)) ORDER BY 1 LIMIT 5", [start, end]),
    ]
    for message, sql, params in checks:
        cursor.execute(sql, params)
        found = [row[0] for row in cursor.fetchall()]
        if found:
            raise ArchiveRefused(f"{month:%Y-%m} is not archived: " + message.format(", ".join(map(str, found))) + ".",
                                 details={"month": f"{month:%Y-%m}", "ids": found})


def _totals(cursor, partition: str) -> list[dict]:
    """Per wallet: its asset, entry count, debit and credit sums, first and last entry id, and
    the last entry's balance_after; in wallet order."""
    cursor.execute(
        "SELECT e.wallet_id, w.asset_id, count(*),"
        " coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0),"
        " coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0),"
        " min(e.id), max(e.id), (array_agg(e.balance_after ORDER BY e.id DESC))[1]"
        f" FROM {partition} e JOIN ledger_wallet w ON w.id = e.wallet_id GROUP BY e.wallet_id, w.asset_id ORDER BY 1"
    )
    return [dict(zip(TOTAL_FIELDS, row)) for row in cursor.fetchall()]


def _same_totals(a: list[dict], b: list[dict]) -> bool:
    def key(rows):
        return [tuple(Decimal(str(r[f])) for f in TOTAL_FIELDS) for r in rows]

    return key(a) == key(b)


# --- Files ---------------------------------------------------------------------------------------

def _paths(directory: Path, partition: str) -> tuple[Path, Path]:
    return directory / f"{partition}.csv", directory / f"{partition}.manifest.json"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def _file_digest(path: Path) -> tuple[str, int]:
    """(sha256, data rows) of a CSV with a header line."""
    digest, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return digest.hexdigest(), max(lines - 1, 0)


def manifest_read(record: ArchivedMonth) -> dict | None:
    """The manifest beside `record`'s CSV, if its CSV is whole: the file's sha256 and row count
    match both the manifest and the database's record. None otherwise (missing, cut, changed)."""
    data = Path(record.path)
    manifest = data.with_name(data.name[: -len(".csv")] + ".manifest.json")
    try:
        body = json.loads(manifest.read_text())
        sha, rows = _file_digest(data)
    except (OSError, ValueError):
        return None
    if sha != record.sha256 or sha != body.get("sha256") or rows != record.row_count or rows != body.get("rows"):
        return None
    return body


def _dump(*, month: date, partition: str, directory: Path, now: datetime) -> ArchivedMonth:
    directory.mkdir(parents=True, exist_ok=True)
    data, manifest = _paths(directory, partition)
    part = data.with_name(data.name + ".part")
    start, end = _bounds(month)
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {partition} IN SHARE MODE")  # no insert into this month meanwhile
            _refuse_unclean(cursor, partition, month)
            totals = _totals(cursor, partition)
            digest = hashlib.sha256()
            copy_sql = f"COPY (SELECT {', '.join(COLUMNS)} FROM {partition} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)"
            with open(part, "wb") as f:
                with cursor.cursor.copy(copy_sql) as copy:
                    for chunk in copy:
                        f.write(chunk)
                        digest.update(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, data)
            rows = sum(t["entry_count"] for t in totals)
            per_asset: dict[int, dict[str, Decimal]] = {}
            for t in totals:
                sums = per_asset.setdefault(t["asset_id"], {"debit_sum": Decimal(0), "credit_sum": Decimal(0)})
                sums["debit_sum"] += t["debit_sum"]
                sums["credit_sum"] += t["credit_sum"]
            body = {
                "table": TABLE, "partition": partition, "month": f"{month:%Y-%m}", "from": start, "to": end,
                "columns": list(COLUMNS), "format": "csv with header, ordered by id", "rows": rows,
                "sha256": digest.hexdigest(), "database": connection.settings_dict.get("NAME"), "dumped_at": now.isoformat(),
                "assets": {str(a): {k: str(v) for k, v in s.items()} for a, s in sorted(per_asset.items())},
                "wallets": [{k: str(v) for k, v in t.items()} for t in totals],
            }
            _write_atomically(manifest, json.dumps(body, indent=1, sort_keys=True).encode())
            _fsync_dir(directory)
            record, _ = ArchivedMonth.objects.update_or_create(
                month=month,
                defaults={"partition": partition, "status": ArchivedMonth.Status.DUMPED, "path": str(data.resolve()),
                          "sha256": body["sha256"], "row_count": rows, "dumped_at": now},
            )
    return record


def _lock_timed_out(exc: DatabaseError) -> bool:
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None) == "55P03" or "lock timeout" in str(exc)


def _archive(*, record: ArchivedMonth, manifest: dict, actor, now: datetime, lock_timeout_ms: int) -> int:
    """Step 2 (module docstring). The number of wallets whose totals were recorded. Raises
    ArchiveRefused when the partition no longer matches its dump (`changed`), or on lock timeout."""
    partition, month = record.partition, record.month
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            cursor.execute(f"LOCK TABLE {partition} IN SHARE MODE")
            totals = _totals(cursor, partition)
            if not _same_totals(totals, manifest["wallets"]):
                raise _Changed()
            start = datetime(month.year, month.month, 1, tzinfo=dt_timezone.utc)
            nxt = add_months(month, 1)
            end = datetime(nxt.year, nxt.month, 1, tzinfo=dt_timezone.utc)
            ArchivedTotal.objects.bulk_create([
                ArchivedTotal(archive=record, month_start=start, month_end=end, **t) for t in totals
            ])
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition}")
            cursor.execute(f"DROP TABLE {partition}")
        record.status, record.archived_at = ArchivedMonth.Status.ARCHIVED, now
        record.save(update_fields=["status", "archived_at"])
        audit_record(actor=actor, action="ledger.month_archived", target=record, data={
            "month": f"{month:%Y-%m}", "partition": partition, "rows": record.row_count, "sha256": record.sha256,
            "path": record.path, "wallets": len(totals),
        })
    return len(totals)


class _Changed(Exception):
    """The partition's totals differ from its dump's manifest: dump again."""


def entries_archive(*, month: date, to: str | Path, actor=None, now: datetime | None = None,
                    lock_timeout_ms: int | None = None) -> ArchiveOutcome:
    """Archive `month` of ledger_entry into the directory `to` (module docstring). Raises
    ArchiveRefused, having changed nothing in the database, when it cannot."""
    if connection.vendor != "postgresql":
        raise ArchiveRefused("Archiving months of entries needs PostgreSQL (its partitions); this database has none.")
    now = now or timezone.now()
    month = month_start(month)
    timeout = settings.LEDGER_ARCHIVE_LOCK_TIMEOUT_MS if lock_timeout_ms is None else lock_timeout_ms
    label = f"{month:%Y-%m}"
    newest = newest_archivable_month(now)
    if month > newest:
        raise ArchiveRefused(
            f"{label} is the current month or one of the {settings.LEDGER_ARCHIVE_MIN_AGE_MONTHS} before it; the newest month"
            f" that can be archived is {newest:%Y-%m}.", details={"month": label, "newest_archivable": f"{newest:%Y-%m}"})
    partition = partition_name(TABLE, month)
    record = ArchivedMonth.objects.filter(month=month).first()
    if record is not None and record.status == ArchivedMonth.Status.ARCHIVED:
        return ArchiveOutcome(month=month, partition=partition, status="already archived", path=record.path,
                              sha256=record.sha256, rows=record.row_count, wallets=record.totals.count())
    if partition not in {name for name, _ in partitions(TABLE)}:
        legacy_end = _legacy_end(TABLE)
        if legacy_end is not None and month < legacy_end:
            raise ArchiveRefused(
                f"{label} lies in {TABLE}{LEGACY_SUFFIX}, the history from before partitioning (up to {legacy_end:%Y-%m}),"
                " which is not archived month by month.", details={"month": label})
        raise ArchiveRefused(f"{label} has no partition ({partition}).", details={"month": label})

    directory = Path(to)
    dumped = False
    for _ in range(2):
        manifest = manifest_read(record) if record is not None else None
        if manifest is None or Path(record.path).parent.resolve() != directory.resolve():
            record = _dump(month=month, partition=partition, directory=directory, now=now)
            manifest = manifest_read(record)
            dumped = True
            if manifest is None:
                raise ArchiveRefused(f"{label}: the dump at {record.path} does not read back as written; nothing was dropped.")
        try:
            wallets = _archive(record=record, manifest=manifest, actor=actor, now=now, lock_timeout_ms=timeout)
        except _Changed:
            record = None  # rows were added to the month since its dump: dump again
            continue
        except DatabaseError as exc:
            if _lock_timed_out(exc):
                raise ArchiveRefused(
                    f"{label}: {TABLE}'s lock was not free within {timeout} ms (postings in flight); nothing was dropped."
                    " Run the command again.", details={"month": label}) from None
            raise
        return ArchiveOutcome(month=month, partition=partition, status="archived", path=record.path, sha256=record.sha256,
                              rows=record.row_count, wallets=wallets, dumped_this_run=dumped)
    raise ArchiveRefused(f"{label} kept changing while it was dumped; nothing was dropped.", details={"month": label})
