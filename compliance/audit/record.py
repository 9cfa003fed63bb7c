"""Writing the audit chain: `audit_record` / `audit_append` is ONE INSERT in the caller's
transaction (no lock, no read of the chain head); the event is born unchained (`sequence`,
`prev_hash`, `hash` NULL) and commits or rolls back with the caller's money. The sequencer links it
later (`compliance.audit.sequencer`). `hash` = HMAC-SHA256(AUDIT_CHAIN_KEY, canonical JSON of the
event, its id, sequence and `prev_hash`); the key lives in settings, never in the database.
Any layer may call these (this package imports only `core`, `compliance.models` and Django).
docs/audit.md has the design."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone

from compliance.models import AuditEvent

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
