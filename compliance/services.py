"""Writers of the audit chain (SPEC 4 "The money path": no platform-wide lock on the request path).

Invariants:
- Write: `audit_record` / `audit_append` is ONE INSERT in the caller's transaction: no lock, no
  read of the chain head. The event is born unchained (`sequence`, `prev_hash`, `hash` NULL) and
  commits or rolls back with the caller's money.
- Commit order and watermark: ids are allocated at INSERT, before commit, so a lower id may still
  commit after a higher one is visible. One sequencer (`audit_chain_advance`; singleton by
  `pg_try_advisory_xact_lock`, transaction-scoped so it works behind PgBouncer's transaction
  pooling) links only events whose inserting transaction (`txid`, xid8, a column default) is
  below the watermark: the lowest transaction id still in flight in its snapshot (the snapshot's
  xmin, ignoring transactions of other databases on the cluster). Below it every visible event
  is committed for good and no new one can appear (rolled-back events are never visible), so
  each run links exactly the committed events of transactions that ended before it, and an
  event of a transaction still open (and every event of a transaction that began after it) is
  linked by a later run. Linked events get `sequence` 1, 2, 3 ... without gaps, in (run, id)
  order: one total order. On SQLite writers are serialised, so every committed event is safe.
  Events inserted by the sequencer's own transaction are safe too: they commit with their links.
- Chain: `hash` = HMAC-SHA256(AUDIT_CHAIN_KEY, canonical JSON of the event, its id, sequence and
  `prev_hash`); sequence 1 links to GENESIS_HASH. The key lives in settings, never in the
  database: whoever can edit the table cannot re-hash it.
- Checkpoint: each sequencer transaction that links events also writes a signed checkpoint
  (head sequence, head id, head hash, count, time, HMAC) to `AuditCheckpoint`, and after commit
  to the log ("coffer.audit") and to AUDIT_CHECKPOINT_PATH (one JSON line). `audit_verify`
  checks the chain against the newest checkpoint, which catches a deleted newest event or a
  TRUNCATE; the sequencer refuses to extend a chain that is behind its last checkpoint.
- Failed authentications are counted in the cache and audited by `audit_counts_flush` (run with
  the sequencer) as one event per key or client address per minute, with the count.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from compliance.models import GENESIS_HASH, AuditCheckpoint, AuditEvent

logger = logging.getLogger("coffer.audit")

# "Coffer audit" as an int64-sized key; only the sequencer takes it.
AUDIT_CHAIN_LOCK_KEY = 0x436F66_666572_A1
_HASH_DOMAIN = b"coffer-audit-event-v1\n"
_CHECKPOINT_DOMAIN = b"coffer-audit-checkpoint-v1\n"


def _canonical_value(value: Any) -> Any:
    """Reduce `value` to plain JSON types, the same before hashing and after a database round
    trip: Decimals and floats become strings (JSON numbers are not exact, and jsonb may
    re-render them), datetimes ISO 8601 UTC, keys strings, NUL characters dropped (jsonb refuses
    them)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return _canonical_value(value.value)
    if isinstance(value, models.Model):
        return _canonical_value(value.pk)
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical_value(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def canonical_json(payload: dict[str, Any]) -> str:
    return json.dumps(_canonical_value(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _chain_key() -> bytes:
    key = getattr(settings, "AUDIT_CHAIN_KEY", "")
    if not key:
        raise ImproperlyConfigured("AUDIT_CHAIN_KEY is not set: the audit chain cannot be linked or verified")
    return key.encode()


def _mac(domain: bytes, payload: dict[str, Any], key: bytes | None = None) -> str:
    message = domain + canonical_json(payload).encode("ascii")
    return hmac.new(key if key is not None else _chain_key(), message, hashlib.sha256).hexdigest()


def audit_event_hash(
    *,
    id: int,
    sequence: int,
    created_at: dt.datetime,
    actor_id: int | None,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    data: dict[str, Any],
    prev_hash: str,
    key: bytes | None = None,
) -> str:
    """HMAC-SHA256 with AUDIT_CHAIN_KEY (or `key`) over the event's canonical JSON. The id and
    sequence are inside, so moving an event (or its content to another row) breaks it."""
    return _mac(
        _HASH_DOMAIN,
        {
            "id": id,
            "sequence": sequence,
            "created_at": created_at,
            "actor_id": actor_id,
            "actor_label": actor_label,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "data": data,
            "prev_hash": prev_hash,
        },
        key,
    )


def _hash_of(event: AuditEvent, *, sequence: int, prev_hash: str, key: bytes | None = None) -> str:
    return audit_event_hash(
        id=event.pk,
        sequence=sequence,
        created_at=event.created_at,
        actor_id=event.actor_id,
        actor_label=event.actor_label,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        data=event.data,
        prev_hash=prev_hash,
        key=key,
    )


def _actor_fields(actor: Any) -> tuple[Any, str]:
    """(User or None, label). Non-user actors (e.g. an organization's API key) are kept by label."""
    if actor is None:
        return None, ""
    if isinstance(actor, get_user_model()):
        return (actor, actor.email) if actor.pk else (None, actor.email or "")
    if getattr(actor, "is_anonymous", False):
        return None, ""
    meta = getattr(actor, "_meta", None)
    if meta is not None:
        return None, f"{meta.label_lower}:{actor.pk}"[:254]
    return None, str(actor)[:254]


def _target_fields(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    meta = getattr(target, "_meta", None)
    if meta is None:
        raise TypeError(f"audit target must be a model instance, not {type(target).__name__}")
    return meta.label_lower, "" if target.pk is None else str(target.pk)


def audit_append(
    *,
    actor: Any = None,
    action: str,
    target_type: str = "",
    target_id: str = "",
    data: dict[str, Any] | None = None,
    save: bool = True,
) -> AuditEvent:
    """Insert one unchained event with an explicit target type/id (for targets that are not
    loaded instances, such as admin log entries). Prefer `audit_record`. `save=False` builds it
    only (`audit_event`)."""
    if not action:
        raise ValueError("an audit event needs an action")
    user, label = _actor_fields(actor)
    clean_data = _canonical_value(data or {})
    if not isinstance(clean_data, dict):
        raise TypeError("audit data must be a dict")
    # Python and both databases keep microseconds, so the stored value hashes the same when the
    # sequencer reads it back.
    event = AuditEvent(
        created_at=timezone.now().astimezone(dt.timezone.utc),
        actor=user,
        actor_label=label[:254],
        action=action[:100],
        target_type=target_type[:100],
        target_id=str(target_id)[:100],
        data=clean_data,
    )
    if not save:
        return event
    # One INSERT (no atomic block of its own: a single statement is atomic already).
    event.save(force_insert=True)
    return event


def audit_event(*, actor: Any = None, action: str, target: Any = None, data: dict[str, Any] | None = None) -> AuditEvent:
    """`audit_record`'s event, not yet saved: for a caller that inserts it together with its
    other rows in one statement (the money path, `core.db.insert_all`)."""
    target_type, target_id = _target_fields(target)
    return audit_append(actor=actor, action=action, target_type=target_type, target_id=target_id, data=data, save=False)


def audit_record(*, actor: Any = None, action: str, target: Any = None, data: dict[str, Any] | None = None) -> AuditEvent:
    """Write one audit event inside the caller's transaction: a single INSERT, no lock; the
    sequencer links it into the chain within seconds of its commit.

    `actor`: the User who acted (or None for the system / an anonymous caller); `target`: any
    saved model instance or None; `data`: JSON-able details (Decimals, datetimes and UUIDs are
    stored as strings).
    """
    target_type, target_id = _target_fields(target)
    return audit_append(actor=actor, action=action, target_type=target_type, target_id=target_id, data=data)


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


# --- Verification ----------------------------------------------------------------------------


def _verdict(*, checked: int, head_hash: str | None, first_invalid_id: int | None = None, reason: str | None = None) -> dict[str, Any]:
    return {
        "valid": reason is None,
        "checked": checked,
        "head_hash": head_hash,
        "first_invalid_id": first_invalid_id,
        "reason": reason,
    }


def _label(event: AuditEvent) -> str:
    return f"event {event.pk} (sequence {event.sequence})"


def _hash_problem(event: AuditEvent, key: bytes, checkpoint: Checkpoint | None) -> str:
    """Why `event`'s hash is not the HMAC of its content. Its stored hash is genuine when the next
    event links to it and is itself genuine (nobody without the key can forge that), or when the
    checkpoint signed it: then the content was edited. Otherwise the hash was replaced."""
    successor = AuditEvent.objects.filter(sequence=event.sequence + 1).first()
    if successor is not None:
        genuine = successor.prev_hash == event.hash and hmac.compare_digest(
            _hash_of(successor, sequence=successor.sequence, prev_hash=successor.prev_hash, key=key), successor.hash
        )
    else:
        genuine = checkpoint is not None and (checkpoint.head_sequence, checkpoint.head_hash) == (event.sequence, event.hash)
    if genuine:
        return f"edited: {_label(event)} no longer matches its keyed hash (its content was changed)"
    return f"rehashed: {_label(event)} carries a hash that is not the chain key's HMAC (re-hashed without the key)"


def audit_verify() -> dict[str, Any]:
    """Walk the chain in sequence order, recomputing every keyed hash and checking every link and
    sequence number, then compare the head with the newest checkpoint.

    Returns {valid, checked, head_hash, first_invalid_id, reason}: `checked` counts the chained
    events examined (up to and including the first invalid one), `head_hash` is the hash of the
    highest-sequence event (None for an empty chain), `first_invalid_id` the first event whose
    sequence, link or hash is wrong (for a chain cut short, the checkpoint's head id), `reason`
    what is wrong, starting with one word: deleted, reordered, relinked, edited, rehashed,
    truncated, rewritten or checkpoint. Events not chained yet are not examined.
    """
    key = _chain_key()
    checkpoint, checkpoint_problem = audit_checkpoint_last()
    head_hash = AuditEvent.objects.filter(sequence__isnull=False).order_by("-sequence").values_list("hash", flat=True).first()
    expected_sequence, expected_prev = 1, GENESIS_HASH
    checked = 0
    at_checkpoint: AuditEvent | None = None
    chained = AuditEvent.objects.filter(sequence__isnull=False).order_by("sequence")
    for event in chained.iterator(chunk_size=2000):
        checked += 1
        if event.sequence != expected_sequence:
            missing = f"{expected_sequence}" if event.sequence == expected_sequence + 1 else f"{expected_sequence} to {event.sequence - 1}"
            reason = f"deleted: sequence {missing} is missing before {_label(event)}"
            return _verdict(checked=checked, head_hash=head_hash, first_invalid_id=event.pk, reason=reason)
        if event.prev_hash != expected_prev:
            linked_to = AuditEvent.objects.filter(hash=event.prev_hash).exclude(pk=event.pk).first()
            if linked_to is not None:
                reason = (
                    f"reordered: {_label(event)} links to {_label(linked_to)}, not to sequence {event.sequence - 1} "
                    "(events swapped or moved)"
                )
            else:
                reason = f"relinked: {_label(event)} links to a hash no event has (the chain before it was rewritten)"
            return _verdict(checked=checked, head_hash=head_hash, first_invalid_id=event.pk, reason=reason)
        if not hmac.compare_digest(_hash_of(event, sequence=event.sequence, prev_hash=event.prev_hash, key=key), event.hash or ""):
            return _verdict(checked=checked, head_hash=head_hash, first_invalid_id=event.pk, reason=_hash_problem(event, key, checkpoint))
        if checkpoint is not None and event.sequence == checkpoint.head_sequence:
            at_checkpoint = event
        expected_sequence, expected_prev = event.sequence + 1, event.hash
    if checkpoint_problem:
        return _verdict(checked=checked, head_hash=head_hash, reason=checkpoint_problem)
    if checkpoint is not None:
        table_head = expected_sequence - 1
        if at_checkpoint is None:
            if table_head == 0:
                reason = (
                    f"truncated: the table holds no chained event but the checkpoint of {checkpoint.created_at} "
                    f"has {checkpoint.count} (head event {checkpoint.head_id})"
                )
            else:
                reason = (
                    f"deleted: the newest events are gone: the chain ends at sequence {table_head} but the checkpoint "
                    f"of {checkpoint.created_at} has its head at sequence {checkpoint.head_sequence} (event {checkpoint.head_id})"
                )
            return _verdict(checked=checked, head_hash=head_hash, first_invalid_id=checkpoint.head_id, reason=reason)
        if (at_checkpoint.pk, at_checkpoint.hash) != (checkpoint.head_id, checkpoint.head_hash):
            reason = f"rewritten: {_label(at_checkpoint)} is not the head the checkpoint of {checkpoint.created_at} signed"
            return _verdict(checked=checked, head_hash=head_hash, first_invalid_id=at_checkpoint.pk, reason=reason)
    return _verdict(checked=checked, head_hash=head_hash)


# --- Counted events (failed authentications) -------------------------------------------------

_COUNT_PREFIX = "audit:count"
_COUNT_TTL_SECONDS = 2 * 3600
_COUNT_WINDOW_SECONDS = 60
# A minute is flushed this long after it ends, so a writer that read the clock just before the
# rollover has landed its increment.
_COUNT_GRACE_SECONDS = 5
_COUNT_LOOKBACK_MINUTES = 60


def _count_keys(minute: int) -> tuple[str, str]:
    return f"{_COUNT_PREFIX}:{minute}:n", f"{_COUNT_PREFIX}:{minute}:claimed"


def audit_count(
    *, action: str, group: str, target_type: str = "", target_id: str = "", data: dict[str, Any] | None = None, now: float | None = None
) -> int:
    """Count one occurrence of `action` for `group` (an API key, a client address) in the
    current minute, in the cache (no database write); `audit_counts_flush` later writes one audit
    event per (action, group, minute) with the count and the first occurrence's `data`. Returns
    the count so far. If the cache is down, the occurrence is audited directly."""
    now = time.time() if now is None else now
    minute = int(now // _COUNT_WINDOW_SECONDS)
    digest = hashlib.sha256(f"{action}\x00{group}".encode()).hexdigest()[:32]
    count_key = f"{_COUNT_PREFIX}:{minute}:c:{digest}"
    try:
        if not cache.add(count_key, 1, _COUNT_TTL_SECONDS):
            try:
                return int(cache.incr(count_key))
            except ValueError:  # expired between add and incr
                cache.set(count_key, 1, _COUNT_TTL_SECONDS)
                return 1
        # First occurrence for this group in this minute: register it for the flusher.
        slots_key, _ = _count_keys(minute)
        cache.add(slots_key, 0, _COUNT_TTL_SECONDS)
        slot = int(cache.incr(slots_key))
        cache.set(
            f"{_COUNT_PREFIX}:{minute}:s:{slot}",
            {"action": action, "count_key": count_key, "target_type": target_type, "target_id": target_id, "data": _canonical_value(data or {})},
            _COUNT_TTL_SECONDS,
        )
        return 1
    except Exception:  # a cache outage must not hide the occurrence
        logger.exception("audit count: cache unavailable, auditing %s directly", action)
        audit_append(action=action, target_type=target_type, target_id=target_id, data={**(data or {}), "count": 1})
        return 1


def audit_counts_flush(*, now: float | None = None) -> int:
    """Write one audit event per (action, group) for every minute that ended at least
    `_COUNT_GRACE_SECONDS` ago (looking back an hour), each with its `count`. A minute is claimed
    in the cache first, so two flushers never write it twice; if writing fails, the claim is
    released for the next run. Returns the number of events written."""
    now = time.time() if now is None else now
    last_due = int((now - _COUNT_GRACE_SECONDS) // _COUNT_WINDOW_SECONDS) - 1
    minutes = range(last_due - _COUNT_LOOKBACK_MINUTES + 1, last_due + 1)
    slot_counts = cache.get_many([_count_keys(m)[0] for m in minutes])
    written = 0
    for minute in minutes:
        slots_key, claim_key = _count_keys(minute)
        slots = int(slot_counts.get(slots_key) or 0)
        if not slots or not cache.add(claim_key, 1, _COUNT_TTL_SECONDS):
            continue
        try:
            written += _count_minute_write(minute, slots)
        except Exception:
            cache.delete(claim_key)
            raise
        # Released with the rest, so an occurrence that still lands in this minute (a clock
        # skewed past the grace) is written by a later run rather than lost.
        cache.delete_many([slots_key, claim_key] + [f"{_COUNT_PREFIX}:{minute}:s:{slot}" for slot in range(1, slots + 1)])
    return written


def _count_minute_write(minute: int, slots: int) -> int:
    entries = cache.get_many([f"{_COUNT_PREFIX}:{minute}:s:{slot}" for slot in range(1, slots + 1)])
    counts = cache.get_many([entry["count_key"] for entry in entries.values()])
    started = dt.datetime.fromtimestamp(minute * _COUNT_WINDOW_SECONDS, tz=dt.timezone.utc)
    written = 0
    with transaction.atomic():
        for entry in entries.values():
            count = int(counts.get(entry["count_key"]) or 1)
            audit_append(
                action=entry["action"], target_type=entry["target_type"], target_id=entry["target_id"],
                data={**entry["data"], "count": count, "window_start": started, "window_seconds": _COUNT_WINDOW_SECONDS},
            )
            written += 1
    cache.delete_many(list(counts))
    return written


# --------------------------------------------------------------------------------------------
# The review queue (compliance.risk owns it; these names are kept for the admin and tests)
# --------------------------------------------------------------------------------------------


def review_case_open(*, transaction, decision, customer=None, actor=None):
    """See `compliance.risk.review_case_open`."""
    from compliance.risk import review_case_open as _open

    return _open(transaction=transaction, decision=decision, customer=customer, actor=actor)


def review_approve(*, case, actor, reason: str):
    """See `compliance.risk.review_approve` (reason required)."""
    from compliance.risk import review_approve as _approve

    return _approve(case=case, actor=actor, reason=reason)


def review_reject(*, case, actor, reason: str):
    """See `compliance.risk.review_reject` (reason required)."""
    from compliance.risk import review_reject as _reject

    return _reject(case=case, actor=actor, reason=reason)
