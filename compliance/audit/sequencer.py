"""The sequencer: the one writer that links unchained events into the chain, in order.

Invariants (docs/audit.md): singleton by a transaction-scoped advisory lock (works behind
PgBouncer); links only events of transactions below the watermark (the lowest transaction id
still in flight in its snapshot), numbering them 1, 2, 3 ... without gaps; each run that links
events writes a signed checkpoint (table, log, AUDIT_CHECKPOINT_PATH) and refuses to extend a
chain that is behind its last checkpoint."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from compliance.models import GENESIS_HASH, AuditCheckpoint, AuditEvent
from compliance.audit.record import AUDIT_CHAIN_LOCK_KEY, _CHECKPOINT_DOMAIN, _canonical_value, _chain_key, _hash_of, _mac

logger = logging.getLogger("coffer.audit")


# --- The sequencer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    created_at: str
    head_sequence: int
    head_id: int
    head_hash: str
    count: int
    signature: str

    def fields(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "head_sequence": self.head_sequence,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "count": self.count,
        }

    def signature_ok(self, key: bytes) -> bool:
        return hmac.compare_digest(self.signature, _mac(_CHECKPOINT_DOMAIN, self.fields(), key))

    def as_json(self) -> str:
        # "mac", not "signature": the log's redaction filter masks values of keys named like secrets.
        return json.dumps({**self.fields(), "mac": self.signature}, sort_keys=True, separators=(",", ":"))


def _checkpoint_sign(*, head_sequence: int, head_id: int, head_hash: str, now: dt.datetime) -> Checkpoint:
    fields = {
        "created_at": _canonical_value(now),
        "head_sequence": head_sequence,
        "head_id": head_id,
        "head_hash": head_hash,
        "count": head_sequence,  # sequences are gapless from 1
    }
    return Checkpoint(**fields, signature=_mac(_CHECKPOINT_DOMAIN, fields))


def _checkpoint_path() -> Path | None:
    path = getattr(settings, "AUDIT_CHECKPOINT_PATH", "")
    return Path(path) if path else None


def _checkpoint_publish(checkpoint: Checkpoint) -> None:
    """The copies outside the table: the log, and one JSON line appended (and fsynced) to the file."""
    logger.info("audit checkpoint %s", checkpoint.as_json())
    path = _checkpoint_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as handle:
        handle.write(checkpoint.as_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _checkpoint_from(raw: dict[str, Any]) -> Checkpoint | None:
    try:
        return Checkpoint(
            created_at=str(raw["created_at"]), head_sequence=int(raw["head_sequence"]), head_id=int(raw["head_id"]),
            head_hash=str(raw["head_hash"]), count=int(raw["count"]), signature=str(raw["mac"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _file_checkpoint_last() -> tuple[Checkpoint | None, bool]:
    """(the last checkpoint in AUDIT_CHECKPOINT_PATH or None, whether its last line was readable).
    Reads only the file's tail."""
    path = _checkpoint_path()
    if path is None or not path.exists():
        return None, True
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        lines = handle.read().splitlines()
    lines = [line for line in lines if line.strip()]
    if not lines:
        return None, True
    try:
        checkpoint = _checkpoint_from(json.loads(lines[-1]))
    except ValueError:
        checkpoint = None
    return checkpoint, checkpoint is not None


def _table_checkpoint_last() -> Checkpoint | None:
    # The newest row is the furthest along (one sequencer, heads only grow): a primary-key lookup.
    row = AuditCheckpoint.objects.order_by("-id").first()
    if row is None:
        return None
    return Checkpoint(
        created_at=row.created_at if isinstance(row.created_at, str) else _canonical_value(row.created_at),
        head_sequence=row.head_sequence, head_id=row.head_id, head_hash=row.head_hash, count=row.count,
        signature=row.signature,
    )


def audit_checkpoint_last() -> tuple[Checkpoint | None, str | None]:
    """The newest checkpoint (the file's last line or the table's newest row, whichever is
    further along) and a problem with the checkpoints themselves, if any."""
    key = _chain_key()
    from_file, readable = _file_checkpoint_last()
    if not readable:
        return None, "checkpoint: the last line of the checkpoint file is not a checkpoint"
    candidates = [c for c in (from_file, _table_checkpoint_last()) if c is not None]
    for checkpoint in candidates:
        if not checkpoint.signature_ok(key) or checkpoint.count != checkpoint.head_sequence:
            return None, f"checkpoint: the checkpoint at sequence {checkpoint.head_sequence} is not signed with the chain key (forged or altered)"
    if not candidates:
        return None, None
    return max(candidates, key=lambda c: c.head_sequence), None


@dataclass(frozen=True)
class ChainAdvance:
    linked: int
    head_sequence: int
    head_hash: str | None
    skipped: bool = False  # another sequencer holds the lock
    halted: str | None = None  # the chain is behind its last checkpoint: nothing linked


# The watermark: the lowest transaction id still in flight in this statement's snapshot (its
# xmax when none is), leaving out transactions that hold their xid lock from a backend connected
# to another database (a backend writes only its own database, so their events cannot be ours):
# another application's long transaction on a shared cluster does not stall the chain. A
# transaction of the snapshot that has ended since (no lock left) still counts as in flight, so
# the watermark never passes an event this snapshot cannot see. Plus the sequencer's own events.
_SAFE_SQL = """(
    txid < (
        SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))
        FROM pg_snapshot_xip(pg_current_snapshot()) AS x
        WHERE x::xid NOT IN (
            SELECT l.transactionid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'transactionid' AND l.granted AND l.transactionid IS NOT NULL
              AND a.datname <> current_database()
        )
    )
    OR txid = pg_current_xact_id_if_assigned()
)"""


def _unchained_safe(limit: int) -> list[AuditEvent]:
    queryset = AuditEvent.objects.filter(sequence__isnull=True)
    if connection.vendor == "postgresql":
        # One statement, so the watermark and the rows read come from the same snapshot.
        queryset = queryset.filter(RawSQL(_SAFE_SQL, [], output_field=BooleanField()))
    return list(queryset.order_by("id")[:limit])


def _links_write(links: list[tuple[int, int, str, str]]) -> None:
    """(id, sequence, prev_hash, hash) for each event: NULL -> value, the one UPDATE the
    database's trigger allows."""
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = ", ".join(["(%s::bigint, %s::bigint, %s, %s)"] * len(links))
            cursor.execute(
                f"UPDATE {table} AS e SET sequence = v.sequence, prev_hash = v.prev_hash, hash = v.hash "
                f"FROM (VALUES {values}) AS v(id, sequence, prev_hash, hash) "
                "WHERE e.id = v.id AND e.sequence IS NULL",
                [item for link in links for item in link],
            )
            updated = cursor.rowcount
        else:
            cursor.executemany(
                f"UPDATE {table} SET sequence = %s, prev_hash = %s, hash = %s WHERE id = %s AND sequence IS NULL",
                [(sequence, prev, digest, pk) for pk, sequence, prev, digest in links],
            )
            updated = len(links)
    if updated != len(links):
        raise RuntimeError(f"audit sequencer: linked {updated} of {len(links)} events (a second sequencer?)")


def _chain_head() -> tuple[int, int | None, str]:
    head = AuditEvent.objects.filter(sequence__isnull=False).order_by("-sequence").values_list("sequence", "id", "hash").first()
    return head if head is not None else (0, None, GENESIS_HASH)


def _behind_checkpoint(head_sequence: int, head_hash: str) -> str | None:
    checkpoint, problem = audit_checkpoint_last()
    if problem:
        return problem
    if checkpoint is None or checkpoint.head_sequence < head_sequence:
        return None
    if checkpoint.head_sequence > head_sequence:
        return f"the chain ends at sequence {head_sequence} but the last checkpoint is at sequence {checkpoint.head_sequence}"
    if checkpoint.head_hash != head_hash:
        return f"the chain head at sequence {head_sequence} is not the last checkpoint's"
    return None


def _advance_once(*, batch_size: int) -> ChainAdvance:
    key = _chain_key()
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return ChainAdvance(linked=0, head_sequence=0, head_hash=None, skipped=True)
        sequence, head_id, prev_hash = _chain_head()
        halted = _behind_checkpoint(sequence, prev_hash)
        if halted:
            logger.error(
                "audit sequencer halted: %s; run verify_audit_chain (if this database was recreated on purpose, "
                "move AUDIT_CHECKPOINT_PATH aside)", halted,
            )
            return ChainAdvance(linked=0, head_sequence=sequence, head_hash=prev_hash, halted=halted)
        events = _unchained_safe(batch_size)
        if not events:
            return ChainAdvance(linked=0, head_sequence=sequence, head_hash=None if sequence == 0 else prev_hash)
        links = []
        for event in events:
            sequence += 1
            digest = _hash_of(event, sequence=sequence, prev_hash=prev_hash, key=key)
            links.append((event.pk, sequence, prev_hash, digest))
            prev_hash, head_id = digest, event.pk
        _links_write(links)
        checkpoint = _checkpoint_sign(head_sequence=sequence, head_id=head_id, head_hash=prev_hash, now=timezone.now())
        AuditCheckpoint.objects.create(
            created_at=dt.datetime.fromisoformat(checkpoint.created_at), head_sequence=checkpoint.head_sequence,
            head_id=checkpoint.head_id, head_hash=checkpoint.head_hash, count=checkpoint.count, signature=checkpoint.signature,
        )
        # Outside copies only once the links are committed (immediately when this was the
        # outermost transaction).
        transaction.on_commit(lambda: _checkpoint_publish(checkpoint))
    return ChainAdvance(linked=len(links), head_sequence=sequence, head_hash=prev_hash)


def audit_chain_advance(*, batch_size: int | None = None, max_batches: int = 100) -> ChainAdvance:
    """Link committed, unchained events into the chain (see the module docstring), in batches of
    `batch_size` (AUDIT_CHAIN_BATCH), each its own short transaction with its own checkpoint,
    until the safe events run out or `max_batches` ran. Returns the total linked and the head;
    `skipped` when another sequencer is running, `halted` when the chain is behind its last
    checkpoint (it is then left alone, as evidence)."""
    batch_size = batch_size or int(getattr(settings, "AUDIT_CHAIN_BATCH", 1000))
    linked = 0
    result = ChainAdvance(linked=0, head_sequence=0, head_hash=None)
    for _ in range(max_batches):
        result = _advance_once(batch_size=batch_size)
        linked += result.linked
        if result.skipped or result.halted or result.linked < batch_size:
            break
    return ChainAdvance(
        linked=linked, head_sequence=result.head_sequence, head_hash=result.head_hash, skipped=result.skipped, halted=result.halted
    )
