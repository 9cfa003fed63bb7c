"""Celery tasks for the shared plumbing, and their beat entries.

- `dispatch_outbox(message_id)`: enqueued after commit by `core.outbox.outbox_emit` (the low-latency
  path): claims that message with a lease and runs its handlers with no transaction open.
- `sweep_outbox(queue)`: THE sweeper, every OUTBOX_SWEEP_SECONDS (10 s) once per Celery queue
  (core.queues), on that queue: claims and runs every due outbox message of the topics routed
  there (retries, expired leases of dead workers, first attempts whose dispatch never came).
  The safety net: a retry is dispatched on time by a countdown (`dispatch_outbox` with
  `due_at`). Webhooks, payouts, e-mails and settlement kicks have no sweeper of their own.
- `purge_idempotency_records()`: hourly, deletes idempotency records past their expiry
  (kept IDEMPOTENCY_KEY_TTL_HOURS, never less than 24 h).
- `purge_outbox()`: hourly, deletes outbox messages done more than OUTBOX_RETENTION_DAYS ago
  (core.outbox.outbox_purge): whole monthly partitions first (PostgreSQL), then rows; dead ones
  stay for an operator (`manage.py outbox_drop_months --include-dead`).

Every task is safe to run twice or concurrently: a claim takes a row with SKIP LOCKED and a
lease; the purge only deletes expired rows.
"""

from datetime import datetime

from django.conf import settings

from config.celery import app
from core.idempotency import idempotency_records_purge
from core.outbox import outbox_dispatch, outbox_purge, outbox_sweep
from core.queues import QUEUES


@app.task(name="core.tasks.dispatch_outbox", ignore_result=True)
def dispatch_outbox(message_id: int, due_at: str | None = None, topic: str = "", created_at: str | None = None) -> str:
    """`due_at` (ISO 8601): a retry's hop, see core.outbox "Retry on time". `topic` only routes
    the task to its queue (core.queues.route_task); the row is the truth. `created_at` (ISO 8601)
    names the message's monthly partition; a task enqueued without it still finds the message."""
    return outbox_dispatch(
        message_id=message_id,
        due_at=datetime.fromisoformat(due_at) if due_at else None,
        created_at=datetime.fromisoformat(created_at) if created_at else None,
    )


@app.task(name="core.tasks.sweep_outbox", ignore_result=True)
def sweep_outbox(queue: str | None = None) -> dict[str, int]:
    return outbox_sweep(queue=queue)


@app.task(name="core.tasks.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records() -> int:
    return idempotency_records_purge()


@app.task(name="core.tasks.purge_outbox", ignore_result=True)
def purge_outbox() -> int:
    return outbox_purge()


for _queue in QUEUES:  # each queue's pool sweeps its own topics
    app.conf.beat_schedule[f"core.sweep_outbox.{_queue}"] = {
        "task": "core.tasks.sweep_outbox",
        "schedule": float(getattr(settings, "OUTBOX_SWEEP_SECONDS", 10)),
        "kwargs": {"queue": _queue},
        "options": {"expires": 30},
    }
app.conf.beat_schedule["core.purge_idempotency_records"] = {
    "task": "core.tasks.purge_idempotency_records",
    "schedule": 3600.0,
    "options": {"expires": 1800},
}
app.conf.beat_schedule["core.purge_outbox"] = {
    "task": "core.tasks.purge_outbox",
    "schedule": 3600.0,
    "options": {"expires": 1800},
}
