"""Counted events: failed authentications are counted in the cache per key or client address
and minute (`audit_count`), and audited by `audit_counts_flush` (run with the sequencer) as one
event per group and minute, with the count. A failed write leaves the minute for the next run."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Any

from django.core.cache import cache
from django.db import transaction
from compliance.audit.record import _canonical_value, audit_append


logger = logging.getLogger("coffer.audit")


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
