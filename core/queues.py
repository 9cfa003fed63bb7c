"""Celery queues by what they carry (issue 15 item 4): a webhook storm must not delay a payout.

| queue | carries | why apart |
|---|---|---|
| `money` | payouts (`payout.send`, `payout.check`), pay-order settlements (`payorder.settle`), scheduled payments (`wallets.tasks.run_schedules`), hold expiry | moves or releases money; short, latency-bound |
| `chain` | confirmation polling, address watching, pay-order expiry | waits on chain nodes (slow, may hang on a bad node) |
| `webhooks` | `webhook.deliver` | waits on merchants' servers (slow, bursty, retried for a day) |
| `email` | 2FA codes, account notices (`accounts.*` topics), failed scheduled payment notices | a person waits for a 2FA code; SMTP may be slow |
| `maintenance` | audit chain sequencer, idempotency purge, partitions, webhook delivery retention, sanctions re-import and re-screen, anything not routed | housekeeping |

Two kinds of work are routed:

- Celery tasks by name: `CELERY_TASK_ROUTES` in settings (a table of task names and fnmatch
  patterns, after `route_task` below).
- Outbox messages by topic (`OUTBOX_TOPIC_QUEUES`, longest topic prefix wins): the one dispatcher
  task `core.tasks.dispatch_outbox` is sent with the message's topic, and `route_task` puts it on
  that topic's queue; the sweeper runs once per queue (`sweep_outbox(queue=...)`, one beat entry
  each), claiming only that queue's topics, so a backlog of webhooks is swept by the webhooks
  pool and never holds up a settlement. A topic no prefix matches belongs to the default queue
  (`CELERY_TASK_DEFAULT_QUEUE`, `maintenance`).

`CELERY_QUEUE_PREFIX` (empty by default) is put in front of every queue name, for brokers shared
by several deployments or test runs (`celery -A config worker -Q "${CELERY_QUEUE_PREFIX}money"`).
A worker started without `-Q` consumes every queue (`CELERY_TASK_QUEUES`): the embedded `make run`
does that.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

MONEY, CHAIN, WEBHOOKS, EMAIL, MAINTENANCE = "money", "chain", "webhooks", "email", "maintenance"
QUEUES = (MONEY, CHAIN, WEBHOOKS, EMAIL, MAINTENANCE)
DEFAULT_QUEUE = MAINTENANCE

DISPATCH_TASK = "core.tasks.dispatch_outbox"
SWEEP_TASK = "core.tasks.sweep_outbox"


def queue_name(queue: str) -> str:
    """The broker's name of one of QUEUES (with CELERY_QUEUE_PREFIX)."""
    return f"{getattr(settings, 'CELERY_QUEUE_PREFIX', '')}{queue}"


def _routed_queue(topic: str) -> str | None:
    best, queue = -1, None
    for prefix, target in settings.OUTBOX_TOPIC_QUEUES.items():
        if topic.startswith(prefix) and len(prefix) > best:
            best, queue = len(prefix), target
    return queue


def topic_queue(topic: str) -> str:
    """The queue (unprefixed) an outbox topic is dispatched and swept on: the longest matching
    prefix of OUTBOX_TOPIC_QUEUES, else the default queue."""
    return _routed_queue(topic) or DEFAULT_QUEUE


def topic_filter(queue: str) -> Q:
    """The outbox rows whose topic `topic_queue` routes to `queue`, as a filter: a prefix of this
    queue not overridden by a longer prefix of another; for the default queue also every topic
    that no other queue's prefix matches."""
    table = settings.OUTBOX_TOPIC_QUEUES
    others = [p for p, q in table.items() if q != queue]
    matched = Q(pk__in=[])
    for prefix in (p for p, q in table.items() if q == queue):
        mine = Q(topic__startswith=prefix)
        for longer in (o for o in others if o.startswith(prefix) and len(o) > len(prefix)):
            mine &= ~Q(topic__startswith=longer)
        matched |= mine
    if queue == DEFAULT_QUEUE:
        unrouted = Q()
        for prefix in others:
            unrouted &= ~Q(topic__startswith=prefix)
        matched |= unrouted
    return matched


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router (first in CELERY_TASK_ROUTES): the outbox dispatcher by its message's topic,
    the sweeper by the queue it sweeps. Anything else falls through to the table after it."""
    kwargs = kwargs or {}
    if name == DISPATCH_TASK and kwargs.get("topic"):
        queue = _routed_queue(kwargs["topic"])
        # a topic no prefix routes: the default queue (CELERY_TASK_DEFAULT_QUEUE, read at send time)
        return {"queue": queue_name(queue)} if queue is not None else None
    if name == SWEEP_TASK and kwargs.get("queue"):
        return {"queue": queue_name(kwargs["queue"])}
    return None

