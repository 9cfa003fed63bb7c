"""The one outbox (SPEC 4, "the money path"): every side effect that leaves the database.
docs/outbox.md has the design.

Invariants:
- `outbox_emit` writes an `OutboxMessage` in the caller's transaction: it commits or rolls back
  with the caller's money; after commit a dispatch is enqueued (a dead broker only delays it).
- A dispatcher claims a due row (`FOR UPDATE SKIP LOCKED`, a lease, committed), runs its handler
  with NO transaction open and no lock held, and records the outcome: `done`, a retry, or `dead`
  after OUTBOX_MAX_ATTEMPTS / OUTBOX_MAX_AGE_SECONDS. A retry follows the topic's registered
  schedule (`register_retry_schedule`: webhooks, 5 s, 30 s, 2 min, ..., exactly, then it gives
  up) or else the one backoff policy (`backoff_seconds`).
- Retry on time: a recorded failure enqueues its own dispatch for `next_attempt_at` (`_kick`, a
  Celery countdown of at most KICK_MAX_COUNTDOWN_SECONDS; a longer wait is a chain of hops, each
  early dispatch enqueuing the next while the message is still due at that time).
- The sweeper (beat, OUTBOX_SWEEP_SECONDS) runs every due row whose dispatch never came or was
  lost: the safety net, not the schedule.
- Queues. A message is dispatched and swept on the Celery queue of its topic
  (`OUTBOX_TOPIC_QUEUES`, core.queues): webhooks on `webhooks`, payouts and settlements on
  `money`, so a webhook backlog never delays money. One sweep per queue, each claiming only its
  queue's topics.
- Handlers are idempotent (one can run twice) and registered at import time of their app's
  `tasks.py` (`register_handler(topic, func)`); a topic without a handler is a failure.
- Partitions (PostgreSQL; docs/deploy.md "Partitioned history"). The table is partitioned by
  month of `created_at` (core migration 0004; months made ahead by the daily
  `ledger.tasks.ensure_entry_partitions`), its key (id, created_at). The (topic, key) guard is
  global across months: the unpartitioned `OutboxKey`, claimed by a trigger in the message's own
  INSERT (a taken key skips the message: no statement more than before) and released with it.
  Every dispatch the outbox enqueues carries `created_at`, and the claim and the record of its
  outcome read and write the message's month only; a lookup by id alone (admin, re-queue, an
  older task) probes each partition once.
- Size. `outbox_purge` (hourly) drops the old months whose rows are all done past
  OUTBOX_RETENTION_DAYS whole, then deletes the other old done rows in batches;
  `outbox_drop_months` (`manage.py outbox_drop_months --include-dead`) also drops months whose
  dead messages are past it. Dead and unfinished messages stay until then.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from core.db import Insert, insert_all
from core.models import OutboxKey, OutboxMessage
from core.partitions import is_partitioned, partitions, upper_bound

logger = logging.getLogger("coffer.outbox")

Handler = Callable[[OutboxMessage], Any]
_handlers: list[tuple[str, Handler]] = []
_retry_schedules: list[tuple[str, Callable[[], list[float]]]] = []

SWEEP_GRACE_SECONDS = 15  # the after-commit dispatch gets the first chance before the sweeper
KICK_MAX_COUNTDOWN_SECONDS = 600  # the longest countdown of a retry's hop; a longer wait is a chain of hops
EMIT_KICK_MAX_COUNTDOWN_SECONDS = 60  # a message emitted due later than this is left to the sweeper
JITTER = 0.5  # a retry waits between (1 - JITTER) and 1 times the capped exponential delay
PENDING, DONE, DEAD = OutboxMessage.Status.PENDING, OutboxMessage.Status.DONE, OutboxMessage.Status.DEAD


class OutboxInTransaction(RuntimeError):
    """The dispatcher was called inside a database transaction: its claim would not commit and
    its handlers would run under the caller's locks."""


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def lease_seconds() -> int:
    return _setting("OUTBOX_LEASE_SECONDS", 60)


def register_handler(topic_prefix: str, func: Handler) -> Handler:
    """Run `func(message)` for every message whose topic starts with `topic_prefix`.
    Registering the same (prefix, func) twice is a no-op, so module reloads are harmless."""
    if (topic_prefix, func) not in _handlers:
        _handlers.append((topic_prefix, func))
    return func


def unregister_handler(topic_prefix: str, func: Handler) -> None:
    if (topic_prefix, func) in _handlers:
        _handlers.remove((topic_prefix, func))


def handlers_for(topic: str) -> list[Handler]:
    return [func for prefix, func in _handlers if topic.startswith(prefix)]


def register_retry_schedule(topic_prefix: str, delays: Callable[[], list[float]]) -> None:
    """Retry messages of topics starting with `topic_prefix` after exactly `delays()[n - 1]`
    seconds following failed attempt n (no jitter), giving up after the last delay (still within
    OUTBOX_MAX_ATTEMPTS and OUTBOX_MAX_AGE_SECONDS). `delays` is called each time, so a setting
    it reads can change. Registering a prefix again replaces its schedule."""
    _retry_schedules[:] = [(prefix, func) for prefix, func in _retry_schedules if prefix != topic_prefix]
    _retry_schedules.append((topic_prefix, delays))


def retry_schedule_for(topic: str) -> list[float] | None:
    for prefix, delays in _retry_schedules:
        if topic.startswith(prefix):
            return [float(d) for d in delays()]
    return None


# --- The one retry policy ------------------------------------------------------------------------


def backoff_seconds(attempts: int, *, seed: Any = 0) -> float:
    """Delay before retrying after failed attempt number `attempts` (1-based): the capped
    exponential delay base * 2^(attempts-1) <= max, less a jitter of up to JITTER of it (so
    messages that failed together do not retry together). The jitter is seeded by `seed` (the
    message id) and the attempt, so the same message and attempt always give the same delay."""
    base = _setting("OUTBOX_BACKOFF_BASE_SECONDS", 10)
    cap = _setting("OUTBOX_BACKOFF_MAX_SECONDS", 3600)
    ceiling = float(min(base * 2 ** max(attempts - 1, 0), cap))
    return ceiling * (1 - JITTER * random.Random(f"{seed}:{attempts}").random())


def outbox_retry_at(message: OutboxMessage, *, now: datetime | None = None) -> datetime | None:
    """When `message`, whose attempt number `message.attempts` just failed, is tried again; None
    when the outbox gives up on it (dead): after OUTBOX_MAX_ATTEMPTS attempts, or when the retry
    would come later than OUTBOX_MAX_AGE_SECONDS after the message was written."""
    now = now or timezone.now()
    if message.attempts >= _setting("OUTBOX_MAX_ATTEMPTS", 30):
        return None
    schedule = retry_schedule_for(message.topic)
    if schedule is not None:
        if message.attempts > len(schedule):
            return None
        delay = schedule[max(message.attempts, 1) - 1]
    else:
        delay = backoff_seconds(message.attempts, seed=message.pk)
    retry_at = now + timedelta(seconds=delay)
    if retry_at > message.created_at + timedelta(seconds=_setting("OUTBOX_MAX_AGE_SECONDS", 3 * 24 * 3600)):
        return None
    return retry_at


# --- Emit ------------------------------------------------------------------------------------------


def _enqueue_dispatch(
    message_id: int, countdown: float = 0, topic: str = "", due_at: datetime | None = None, created_at: datetime | None = None
) -> None:
    from core.tasks import dispatch_outbox

    args = (message_id, due_at.isoformat()) if due_at is not None else (message_id,)
    kwargs = {"topic": topic} if topic else {}
    if created_at is not None:  # the message's partition: its claim reads one month, not every one
        kwargs["created_at"] = created_at.isoformat()
    try:
        # retry=False: with the broker down, fail now instead of blocking the request; the
        # sweeper dispatches the row later. The topic routes it to its queue (core.queues).
        dispatch_outbox.apply_async(args, kwargs or None, countdown=countdown or None, retry=False)
    except Exception as exc:  # a broker outage only delays the message
        logger.warning("outbox: could not enqueue dispatch of message %s (%s); the sweeper will", message_id, exc)


def _kick(message_id: int, due_at: datetime, *, topic: str, now: datetime | None = None, created_at: datetime | None = None) -> None:
    """Enqueue a dispatch of the message for `due_at`: one hop of at most
    KICK_MAX_COUNTDOWN_SECONDS (see "Retry on time" in the module docstring)."""
    from config.celery import app

    wait = (due_at - (now or timezone.now())).total_seconds()
    if wait > 0 and app.conf.task_always_eager:
        return  # eager tasks run at once, ignoring countdowns: no timer to wait on, the sweeper runs it
    _enqueue_dispatch(message_id, min(max(wait, 0.0), KICK_MAX_COUNTDOWN_SECONDS), topic, due_at, created_at)


def outbox_message(
    *, topic: str, payload: dict, organization=None, key: str = "", available_at: datetime | None = None
) -> Insert:
    """An outbox row to insert with other rows of the caller's transaction (`core.db.insert_all`:
    the money path writes its side rows in one statement); its dispatch is enqueued after commit
    once it is inserted. A keyed row whose (topic, key) exists is skipped: on PostgreSQL by the
    key claim trigger (`OutboxKey`, global across the monthly partitions), elsewhere by the
    unique index (ON CONFLICT)."""
    if not topic:
        raise ValueError("An outbox message needs a topic.")
    now = timezone.now()
    due = max(available_at or now, now)
    organization_id = getattr(organization, "pk", organization)  # an Organization, its id, or None
    message = OutboxMessage(topic=topic, payload=payload, organization_id=organization_id, key=key, created_at=now, next_attempt_at=due)
    countdown = (due - now).total_seconds()

    def kick(saved: OutboxMessage) -> None:
        if countdown <= EMIT_KICK_MAX_COUNTDOWN_SECONDS:
            message_id = saved.pk
            transaction.on_commit(lambda: _enqueue_dispatch(message_id, countdown, topic, created_at=now), robust=True)

    if not key or connection.vendor == "postgresql":  # the trigger skips a taken key: no ON CONFLICT
        return Insert(message, on_saved=kick)
    return Insert(message, conflict=("topic", "key"), where="NOT (key = '')", on_saved=kick)


def outbox_emit(
    *, topic: str, payload: dict, organization=None, key: str = "", available_at: datetime | None = None
) -> OutboxMessage:
    """Write an outbox row in the caller's transaction; its dispatch is enqueued after commit.

    With a non-empty `key`, emitting the same (topic, key) again returns the existing row
    instead of a second one (e.g. one "payout.send" per payout, however often the caller's code
    runs): one statement, no savepoint. `available_at` delays the message (e.g. the next status
    check of a payout)."""
    row = outbox_message(topic=topic, payload=payload, organization=organization, key=key, available_at=available_at)
    insert_all([row])
    if row.instance._state.adding:  # skipped: the key's row exists
        if connection.vendor != "postgresql":
            return OutboxMessage.objects.get(topic=topic, key=key)
        holder = OutboxKey.objects.filter(topic=topic, key=key)  # one statement, one partition read
        return OutboxMessage.objects.get(pk=Subquery(holder.values("message_id")), created_at=Subquery(holder.values("message_created_at")))
    return row.instance


# --- Claim, handle, record -------------------------------------------------------------------------


def _require_no_transaction() -> None:
    if connection.in_atomic_block or not connection.get_autocommit():
        raise OutboxInTransaction("The outbox dispatcher runs outside any database transaction (no atomic block open).")


def _lease_owner() -> str:
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _claim(
    *, message_id: int | None, now: datetime, exclude: set[int] = frozenset(), topics: Q | None = None, created_at: datetime | None = None
) -> OutboxMessage | None:
    """Claim one due message (the given one, or the most overdue, of `topics` if given) in a short
    transaction that commits before any handler runs. A message that already used up its attempts
    or age (its workers kept dying) is marked dead here instead of being run again. `created_at`
    (of the given message, when known) confines the read to its month's partition."""
    while True:
        with transaction.atomic():
            due = OutboxMessage.objects.select_for_update(skip_locked=True).filter(status=PENDING, next_attempt_at__lte=now)
            if message_id is not None:
                due = due.filter(pk=message_id, **({"created_at": created_at} if created_at is not None else {}))
            else:  # a fresh message first gets its own after-commit dispatch
                due = due.filter(Q(attempts__gt=0) | Q(created_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS)))
                if exclude:
                    due = due.exclude(pk__in=exclude)
                if topics is not None:
                    due = due.filter(topics)
            message = due.order_by("next_attempt_at", "id").first()
            if message is None:
                return None
            if message.attempts > 0 and outbox_retry_at(message, now=now) is None and message.lease_owner:
                # its last lease ran out without a recorded result: the worker died on it, again
                message.status, message.dead_at = DEAD, now
                message.last_error = (message.last_error or f"lease of {message.lease_owner} expired without a result")[:2000]
                message.lease_owner, message.lease_expires_at = "", None
                _save(message, "status", "dead_at", "last_error", "lease_owner", "lease_expires_at")
                logger.error("outbox: message %s (%s) is dead: its workers kept dying", message.pk, message.topic)
                if message_id is not None:
                    return None
                continue
            message.attempts += 1
            message.lease_owner = _lease_owner()
            message.lease_expires_at = message.next_attempt_at = now + timedelta(seconds=lease_seconds())
            _save(message, "attempts", "lease_owner", "lease_expires_at", "next_attempt_at")
            return message


def _mine(message: OutboxMessage):
    """The message's row, found in its own month's partition (the key is (id, created_at))."""
    return OutboxMessage.objects.filter(pk=message.pk, created_at=message.created_at)


def _save(message: OutboxMessage, *fields: str) -> None:
    _mine(message).update(**{name: getattr(message, name) for name in fields})


def _handle(message: OutboxMessage) -> None:
    handlers = handlers_for(message.topic)
    if not handlers:
        raise LookupError(f"no handler registered for topic {message.topic!r}")
    for handler in handlers:
        _require_no_transaction()  # no claim transaction, no row lock, while the outside world is called
        handler(message)


def _record_done(message: OutboxMessage) -> None:
    _mine(message).filter(status=PENDING).update(
        status=DONE, done_at=timezone.now(), last_error="", lease_owner="", lease_expires_at=None
    )


def _record_failure(message: OutboxMessage, exc: BaseException) -> str:
    now = timezone.now()
    error = f"{type(exc).__name__}: {exc}"[:2000]
    retry_at = outbox_retry_at(message, now=now)
    mine = _mine(message).filter(status=PENDING, lease_owner=message.lease_owner)
    lease = {"lease_owner": "", "lease_expires_at": None, "last_error": error}
    if retry_at is None:
        mine.update(status=DEAD, dead_at=now, **lease)
        logger.error("outbox: message %s (%s) is dead after %s attempts: %s", message.pk, message.topic, message.attempts, error)
        return "gave_up"
    if mine.update(next_attempt_at=retry_at, **lease):
        _kick(message.pk, retry_at, topic=message.topic, now=now, created_at=message.created_at)  # the retry runs when it is due, not when a sweep passes
    logger.warning("outbox: message %s (%s) attempt %s failed: %s", message.pk, message.topic, message.attempts, error)
    return "failed"


def _run(message: OutboxMessage) -> str:
    try:
        _handle(message)
    except OutboxInTransaction:
        raise
    except Exception as exc:
        return _record_failure(message, exc)
    _record_done(message)
    return "dispatched"


def outbox_dispatch(*, message_id: int, now: datetime | None = None, due_at: datetime | None = None, created_at: datetime | None = None) -> str:
    """Claim one message if it is due and not leased, run its handlers with no transaction
    open, record the outcome. Returns 'dispatched', 'failed' (will retry), 'gave_up' (dead) or
    'skipped' (done, dead, not due, or leased by another dispatcher).

    `due_at`: this dispatch is a hop of a retry's chain for that time. If it arrives before the
    message is due, and the message is still due exactly then (not rescheduled, not leased), it
    enqueues the next hop ('waiting').

    `created_at`: the message's, passed along by every dispatch the outbox enqueues, so the reads
    touch its month's partition only; without it (a dispatch enqueued before the table was
    partitioned, a caller with only the id) each partition's primary key is probed once."""
    _require_no_transaction()
    now = now or timezone.now()
    message = _claim(message_id=message_id, now=now, created_at=created_at)
    if message is not None:
        return _run(message)
    if due_at is not None and due_at > now:
        same = {"created_at": created_at} if created_at is not None else {}
        found = OutboxMessage.objects.filter(
            pk=message_id, status=PENDING, lease_owner="", next_attempt_at=due_at, **same
        ).values_list("topic", "created_at").first()
        if found is not None:
            _kick(message_id, due_at, topic=found[0], now=now, created_at=found[1])
            return "waiting"
    return "skipped"


def outbox_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(status=PENDING, next_attempt_at__lte=now)
        .filter(Q(attempts__gt=0) | Q(created_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS)))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def outbox_sweep(*, now: datetime | None = None, limit: int = 500, time_budget: float = 50.0, queue: str | None = None) -> dict[str, int]:
    """Claim and run due messages one at a time (retries, expired leases, first attempts whose
    dispatch never came), each at most once per sweep, until none is due, `limit` were run or
    the time budget is spent. Several sweeps may run at once: each claim takes a different row.
    With `queue`, only the topics routed to that Celery queue (core.queues): each queue's pool
    sweeps its own backlog. Returns counts per outcome."""
    _require_no_transaction()
    topics = None
    if queue is not None:
        from core.queues import topic_filter

        topics = topic_filter(queue)
    started = timezone.now()
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for _ in range(limit):
        if (timezone.now() - started).total_seconds() > time_budget:
            break
        message = _claim(message_id=None, now=now or timezone.now(), exclude=seen, topics=topics)
        if message is None:
            break
        seen.add(message.pk)
        outcome = _run(message)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def outbox_purge(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """Delete `done` messages delivered more than OUTBOX_RETENTION_DAYS ago (default 30), in
    batches; returns how many went. `dead` and unfinished messages stay (an operator acts on the
    dead ones). What a purge gives up is the (topic, key) guard for those rows: a producer
    emitting the same key again after the retention would get a new message. Every keyed producer
    emits from a one-time state transition (a payout approved, an order completed, an e-mail code
    created) and every handler checks its object's state first (a sent payout is not sent again,
    a settled order not settled twice), so the guard is only needed for as long as a retry of the
    emitting request can run: hours, never a month.

    On PostgreSQL it first drops the monthly partitions whose rows are all done before the
    retention (`outbox_drop_months`; an emptied old month goes at the next run), then deletes the
    rest row by row; a keyed message's `OutboxKey` goes with it (the delete trigger)."""
    now = now or timezone.now()
    cutoff = _retention_cutoff(now)
    deleted = sum(rows for _, rows in outbox_drop_months(now=now))  # whole old months first: no row-by-row delete
    done = Q(status=OutboxMessage.Status.DONE, done_at__lt=cutoff)
    while True:
        ids = list(OutboxMessage.objects.filter(done).order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += OutboxMessage.objects.filter(done, pk__in=ids).delete()[0]


def _retention_cutoff(now: datetime) -> datetime:
    return now - timedelta(days=max(_setting("OUTBOX_RETENTION_DAYS", 30), 1))


def outbox_months() -> list[tuple[str, datetime | None]]:
    """The partitions of the outbox (PostgreSQL; [] elsewhere) and the end of each one's range
    (exclusive, UTC midnight of a first of the month; None for an unbounded one), oldest first."""
    if not is_partitioned("core_outboxmessage"):
        return []
    found = []
    for name, bound in partitions("core_outboxmessage"):
        end = upper_bound(bound)
        found.append((name, datetime(end.year, end.month, 1, tzinfo=dt_timezone.utc) if end else None))
    return sorted(found, key=lambda month: (month[1] is None, month[1] or datetime.min))


class _Keep(Exception):
    """A month changed between its scan and its detach: it stays attached (rolled back)."""


def outbox_drop_months(
    *, now: datetime | None = None, include_dead: bool = False, detach_only: bool = False, dry_run: bool = False
) -> list[tuple[str, int]]:
    """Detach and drop the monthly partitions of the outbox whose whole range ended before the
    retention (OUTBOX_RETENTION_DAYS) and whose rows are all done before it, or also dead before
    it with `include_dead` (an operator's decision: the hourly purge never drops a dead message).
    Their keys (`OutboxKey`) are deleted with them: a dropped message's key is free again, as
    after the row purge. `detach_only` leaves each month as a plain table of its own name for
    an archive (pg_dump -t, then DROP TABLE); `dry_run` only names them. Returns (partition,
    rows) per month dropped (or that would be). PostgreSQL only ([] elsewhere).

    Each month is scanned without a lock; then, in one transaction, its keys are deleted, it is
    detached (the outbox's ACCESS EXCLUSIVE lock, waited for at most OUTBOX_DROP_LOCK_TIMEOUT_MS,
    5 s, else the month stays for the next run), re-checked for a pending row (a dead message
    re-queued meanwhile: the month stays, its keys too) and dropped."""
    now = now or timezone.now()
    cutoff = _retention_cutoff(now)
    dropped = []
    for name, upper in outbox_months():
        if upper is None or upper > cutoff:
            continue
        blocking = "status = 'pending' OR (status = 'done' AND done_at >= %s) OR (status = 'dead' AND dead_at >= %s)"
        if not include_dead:
            blocking += " OR status = 'dead'"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE {blocking})", [cutoff, cutoff])
            if cursor.fetchone()[0]:
                continue
            cursor.execute(f"SELECT count(*) FROM {name}")
            rows = cursor.fetchone()[0]
        if dry_run:
            dropped.append((name, rows))
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # the keys first, before the table lock (a month kept after all gets them back: rolled back)
                cursor.execute(
                    f"DELETE FROM core_outboxkey k USING {name} m"
                    " WHERE m.key <> '' AND k.topic = m.topic AND k.key = m.key AND k.message_id = m.id"
                )
                cursor.execute(f"SET LOCAL lock_timeout = {_setting('OUTBOX_DROP_LOCK_TIMEOUT_MS', 5000)}")
                cursor.execute(f"ALTER TABLE core_outboxmessage DETACH PARTITION {name}")
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE status = 'pending')")
                if cursor.fetchone()[0]:
                    raise _Keep(name)
                if not detach_only:
                    cursor.execute(f"DROP TABLE {name}")
        except _Keep:
            continue
        except OperationalError as exc:  # the lock timeout: the outbox was busy; the next run tries again
            logger.warning("outbox: month %s not detached (%s); kept", name, exc)
            continue
        logger.info("outbox: month %s %s (%s rows)", name, "detached" if detach_only else "dropped", rows)
        dropped.append((name, rows))
    return dropped


def outbox_retry_now(*, message_ids: list[int]) -> int:
    """Make pending or dead messages due now; the next sweep runs them. A message leased right
    now is left to its dispatcher. The attempts and age are kept, so a dead message gets one more
    attempt per re-queue. Returns how many were queued. (By id alone: an operator's action, each
    partition's primary key probed.)"""
    return (
        OutboxMessage.objects.filter(pk__in=message_ids)
        .filter(Q(status=DEAD) | Q(status=PENDING, lease_owner=""))
        .update(status=PENDING, dead_at=None, next_attempt_at=timezone.now())
    )
