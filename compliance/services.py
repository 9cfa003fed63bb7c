"""Writers of the audit chain.

`audit_record` appends one event inside the caller's database transaction. Appends are
serialised so concurrent writers never fork the chain:

- PostgreSQL: `pg_advisory_xact_lock(AUDIT_CHAIN_LOCK_KEY)`, then read the head (the latest event
  by id), then insert. The lock is transaction-scoped, so it is held until the caller's
  transaction commits or rolls back. Consequence for callers: every other audit append in the
  system waits for you from this call until your commit, so make `audit_record` the LAST write
  of your service (after ledger posting, row locks and outbox rows), and commit promptly.
- SQLite: write transactions are IMMEDIATE (config.settings.base), so a transaction that writes
  at all already holds the database's single writer lock.

If no transaction is open, the append opens one of its own (`atomic(savepoint=False)` is a plain
`atomic` then), so the lock covers exactly the read-head-and-insert.

Ids are allocated under the lock, so id order is chain order and `audit_verify` walks by id.
A transaction that rolls back after appending takes its event with it; the next append links to
the committed head, so the chain stays whole.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from compliance.models import GENESIS_HASH, AuditEvent

# "Coffer audit" as an int64-sized key; any constant works as long as only this lock uses it.
AUDIT_CHAIN_LOCK_KEY = 0x436F66_666572_A1


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


def audit_event_hash(
    *,
    created_at: dt.datetime,
    actor_id: int | None,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    data: dict[str, Any],
    prev_hash: str,
) -> str:
    body = canonical_json(
        {
            "created_at": created_at,
            "actor_id": actor_id,
            "actor_label": actor_label,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "data": data,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def _hash_of(event: AuditEvent) -> str:
    return audit_event_hash(
        created_at=event.created_at,
        actor_id=event.actor_id,
        actor_label=event.actor_label,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        data=event.data,
        prev_hash=event.prev_hash,
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


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK_KEY])


def audit_append(
    *,
    actor: Any = None,
    action: str,
    target_type: str = "",
    target_id: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append with an explicit target type/id (for targets that are not loaded instances, such
    as admin log entries). Prefer `audit_record`."""
    if not action:
        raise ValueError("an audit event needs an action")
    user, label = _actor_fields(actor)
    clean_data = _canonical_value(data or {})
    if not isinstance(clean_data, dict):
        raise TypeError("audit data must be a dict")
    with transaction.atomic(savepoint=False):
        _lock_chain()
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev_hash = head or GENESIS_HASH
        # Python and both databases keep microseconds, so the stored value hashes the same
        # when read back.
        created_at = timezone.now().astimezone(dt.timezone.utc)
        event = AuditEvent(
            created_at=created_at,
            actor=user,
            actor_label=label[:254],
            action=action[:100],
            target_type=target_type[:100],
            target_id=str(target_id)[:100],
            data=clean_data,
            prev_hash=prev_hash,
        )
        event.hash = _hash_of(event)
        event.save(force_insert=True)
    return event


def audit_record(*, actor: Any = None, action: str, target: Any = None, data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event to the audit chain inside the caller's transaction.

    `actor`: the User who acted (or None for the system / an anonymous caller); `target`: any
    saved model instance or None; `data`: JSON-able details (Decimals, datetimes and UUIDs are
    stored as strings). Call it as the last write before your transaction commits: it holds the
    chain's lock until then (see the module docstring).
    """
    target_type, target_id = _target_fields(target)
    return audit_append(actor=actor, action=action, target_type=target_type, target_id=target_id, data=data)


def audit_verify() -> dict[str, Any]:
    """Walk the chain in id order, recomputing every hash and checking every link.

    Returns {valid, checked, head_hash, first_invalid_id}: `checked` counts the events examined
    (up to and including the first invalid one), `head_hash` is the hash of the latest event
    (None for an empty chain), `first_invalid_id` the first event whose hash or link is wrong.
    """
    expected_prev = GENESIS_HASH
    checked = 0
    first_invalid_id = None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        checked += 1
        if event.prev_hash != expected_prev or _hash_of(event) != event.hash:
            first_invalid_id = event.pk
            break
        expected_prev = event.hash
    head_hash = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    return {
        "valid": first_invalid_id is None,
        "checked": checked,
        "head_hash": head_hash,
        "first_invalid_id": first_invalid_id,
    }


# --------------------------------------------------------------------------------------------
# The compliance steps of the money path (limits, risk) and the review queue
# --------------------------------------------------------------------------------------------


def money_path_checks(
    *,
    customer,
    wallet,
    asset,
    movement_type: str,
    direction: str | None = None,
    amount: Decimal,
    beneficiary_name: str | None = None,
    now: dt.datetime | None = None,
    counterparty=None,
    step_up=None,
    raise_on_reject: bool = True,
    actor=None,
):
    """The compliance part of SPEC 4 "The money path", for the money path to call inside the
    posting's database transaction, before `ledger_post`:

        lock customer -> limits -> 2FA step-up -> risk -> post, or hold for review

    1. `customer_lock`: the customer row (and `counterparty`, a transfer's recipient customer)
       FOR UPDATE in id order, before any wallet lock (STYLE 4).
    2. `limits_enforce` for the customer (`direction` defaults to incoming for deposits and
       settlements, outgoing otherwise); for a transfer with `counterparty`, also the
       recipient's incoming transfer limit. Raises LIMIT_EXCEEDED.
    3. `step_up()` if given: the 2FA step-up (`accounts.twofactor.twofactor_require`), which
       belongs between limits and risk; it raises 2FA_REQUIRED / 2FA_VERIFICATION_FAILED.
    4. `risk_evaluate`. A reject is recorded in the audit chain and raised as
       TRANSACTION_REJECTED (with `raise_on_reject=False` it is returned instead, for a caller
       that must close its savepoint before raising: see compliance.risk).

    Returns the `RiskDecision`. On `decision.needs_review` the caller posts with
    `ledger_post(..., hold_for_review=True)` and calls `review_case_open(transaction=...,
    decision=decision)` in the same transaction; otherwise it posts normally.
    """
    from compliance.limits import customer_lock, default_direction, limits_enforce
    from compliance.risk import risk_evaluate, risk_reject_record

    direction = direction or default_direction(movement_type)
    now = now or timezone.now()
    locked = customer_lock(customer, counterparty)
    limits_enforce(customer=locked, asset=asset, movement_type=movement_type, direction=direction, amount=amount, now=now)
    if counterparty is not None and movement_type == "transfer" and direction == "outgoing":
        recipient = type(locked).objects.get(pk=counterparty.pk if hasattr(counterparty, "pk") else counterparty)
        if recipient.pk != locked.pk:
            limits_enforce(customer=recipient, asset=asset, movement_type=movement_type, direction="incoming", amount=amount, now=now)
    if step_up is not None:
        step_up()
    decision = risk_evaluate(
        customer=locked, wallet=wallet, movement_type=movement_type, amount=amount, asset=asset,
        beneficiary_name=beneficiary_name, now=now, direction=direction,
    )
    if decision.rejected:
        risk_reject_record(
            decision=decision, customer=locked, wallet=wallet, asset=asset, movement_type=movement_type,
            direction=direction, amount=amount, beneficiary_name=beneficiary_name, actor=actor,
        )
        if raise_on_reject:
            raise decision.error()
    return decision


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
