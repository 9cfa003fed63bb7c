"""Verifying the audit chain: every linked event re-hashed under the key, sequences without
gaps, each `prev_hash` the previous `hash`, and the head checked against the newest signed
checkpoint (which catches a deleted newest event or a TRUNCATE)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from compliance.models import GENESIS_HASH, AuditEvent
from compliance.audit.record import _chain_key, _hash_of
from compliance.audit.sequencer import Checkpoint, audit_checkpoint_last

logger = logging.getLogger("coffer.audit")


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
