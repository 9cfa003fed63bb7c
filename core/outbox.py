"""The transactional outbox (SPEC 4, "the money path").

Anything that leaves the database (webhooks, payouts, emails) is written as an `OutboxMessage`
row in the same transaction as the change that caused it, with `outbox_emit`. After that
transaction commits, `core.tasks.dispatch_outbox` is enqueued for the row; if the broker is down
at that moment the enqueue error is swallowed (logged), because the row is already durable: the
`core.tasks.sweep_outbox` beat task picks up every due, undispatched row a little later. A
rollback removes the row with everything else, so nothing is sent for work that never happened.

Dispatch (`outbox_dispatch`) locks the row with `SELECT ... FOR UPDATE SKIP LOCKED`, so two
dispatchers never run the handlers of one message at the same time, runs every handler registered
for a prefix of its topic inside a savepoint, and marks the row dispatched in the same
transaction. A failing handler rolls back its own database writes, and the row gets
`attempts + 1`, `last_error` and `next_attempt_at` with exponential backoff (OUTBOX_BACKOFF_BASE_SECONDS
doubling up to OUTBOX_BACKOFF_MAX_SECONDS); after OUTBOX_MAX_ATTEMPTS it is marked failed and left
for a human (admin).

Handlers must be idempotent. A handler's external effect (an HTTP call) can succeed and the
process die before the row is marked, so the message will be handled again; use the message id
(or `key`) as the idempotency key towards the outside world. Register handlers at import time of a
module the worker loads (an app's `tasks.py` or `AppConfig.ready`):

    register_handler("payorder.", deliver_payorder_webhook)  # func(message: OutboxMessage) -> None

A topic with no registered handler counts as a failure (retried with backoff, then failed), so a
worker that forgot to import a handler module does not silently drop messages.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import OutboxMessage

logger = logging.getLogger("coffer.outbox")

Handler = Callable[[OutboxMessage], Any]
_handlers: list[tuple[str, Handler]] = []

SWEEP_GRACE_SECONDS = 15  # the after-commit dispatch gets the first chance before the sweeper


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


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


def backoff_seconds(attempts: int) -> int:
    """Delay before retry number `attempts` (1-based): base * 2^(attempts-1), capped."""
    base = _setting("OUTBOX_BACKOFF_BASE_SECONDS", 10)
    cap = _setting("OUTBOX_BACKOFF_MAX_SECONDS", 3600)
    return min(base * 2 ** max(attempts - 1, 0), cap)


def _enqueue_dispatch(message_id: int) -> None:
    from core.tasks import dispatch_outbox

    try:
        # retry=False: with the broker down, fail now instead of blocking the request; the
        # sweeper delivers the row later.
        dispatch_outbox.apply_async((message_id,), retry=False)
    except Exception as exc:  # a broker outage only delays the message
        logger.warning("outbox: could not enqueue dispatch of message %s (%s); the sweeper will", message_id, exc)


def outbox_emit(*, topic: str, payload: dict, organization=None, key: str = "") -> OutboxMessage:
    """Write an outbox row in the caller's transaction; dispatch is enqueued after commit.

    With a non-empty `key`, emitting the same (topic, key) again returns the existing row
    instead of a second one (e.g. one "payorder.completed" per order, however often the
    caller's code runs)."""
    if not topic:
        raise ValueError("An outbox message needs a topic.")
    next_attempt_at = timezone.now() + timedelta(seconds=SWEEP_GRACE_SECONDS)
    fields = {"topic": topic, "payload": payload, "organization": organization, "key": key, "next_attempt_at": next_attempt_at}
    if key:
        existing = OutboxMessage.objects.filter(topic=topic, key=key).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():  # savepoint: a lost race must not break the caller's transaction
                message = OutboxMessage.objects.create(**fields)
        except IntegrityError:
            return OutboxMessage.objects.get(topic=topic, key=key)
    else:
        message = OutboxMessage.objects.create(**fields)
    message_id = message.pk
    transaction.on_commit(lambda: _enqueue_dispatch(message_id), robust=True)
    return message


def outbox_dispatch(*, message_id: int) -> str:
    """Run the handlers of one message, at most one dispatcher at a time. Returns what happened:
    'dispatched', 'failed' (will retry), 'gave_up', or 'skipped' (already done, or locked by
    another dispatcher)."""
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, dispatched_at__isnull=True, failed_at__isnull=True)
            .first()
        )
        if message is None:
            return "skipped"
        handlers = handlers_for(message.topic)
        now = timezone.now()
        message.attempts += 1
        try:
            if not handlers:
                raise LookupError(f"no handler registered for topic {message.topic!r}")
            with transaction.atomic():  # a failing handler's own writes roll back
                for handler in handlers:
                    handler(message)
        except Exception as exc:
            logger.warning("outbox: message %s (%s) attempt %s failed: %s", message.pk, message.topic, message.attempts, exc)
            message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if message.attempts >= _setting("OUTBOX_MAX_ATTEMPTS", 30):
                message.failed_at = now
                outcome = "gave_up"
            else:
                message.next_attempt_at = now + timedelta(seconds=backoff_seconds(message.attempts))
                outcome = "failed"
            message.save(update_fields=["attempts", "last_error", "next_attempt_at", "failed_at"])
            return outcome
        message.dispatched_at = now
        message.last_error = ""
        message.save(update_fields=["attempts", "last_error", "dispatched_at"])
        return "dispatched"


def outbox_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(dispatched_at__isnull=True, failed_at__isnull=True, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def outbox_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Dispatch every due, undispatched message (the safety net for a broker outage at commit
    time and for retries after a failure). Returns counts per outcome."""
    counts: dict[str, int] = {}
    for message_id in outbox_due_ids(now=now, limit=limit):
        outcome = outbox_dispatch(message_id=message_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def outbox_retry_now(*, message_ids: list[int]) -> int:
    """Make undispatched messages (pending, or failed after the maximum attempts) due now; the
    next sweep dispatches them. Returns how many were queued."""
    return OutboxMessage.objects.filter(pk__in=message_ids, dispatched_at__isnull=True).update(
        failed_at=None, next_attempt_at=timezone.now()
    )
