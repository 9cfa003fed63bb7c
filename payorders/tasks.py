"""Celery tasks of pay orders and their beat entries (registered here, not in settings).

Each task takes ids, calls a service and is safe to run twice, even at the same moment: every
service re-reads the order under its row lock and does nothing when another run got there first;
payments are unique per transfer and the settlement posting is unique per order by reference.
A chain or price provider that cannot be reached raises; the task is retried with exponential
backoff (`autoretry_for`, `retry_backoff`), and the next beat run covers it anyway.

- `poll_confirmations`: AWAITING_CONFIRMATION orders -> COMPLETED once their payments have
  settings.CHAIN_CONFIRMATIONS[chain] confirmations (the completing transaction writes a
  `payorder.settle` outbox message).
- `watch_addresses`: payments to issued addresses that nobody submitted (and late ones).
- `expire_orders`: PENDING / AWAITING_PAYMENT orders past their window (after a last look).

Settlement is a topic of the one outbox (`core.outbox`, dispatched after commit and swept by
`core.tasks`): `payorder.settle` -> `payorder_settle_handler` settles one completed order into
the merchant's settlement wallet, exactly once (order row lock + unique ledger reference); a
failure is retried on the outbox's backoff. This module is imported by `PayordersConfig.ready`.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import OperationalError

from config.celery import app
from core.models import OutboxMessage
from core.outbox import register_handler
from core.prices import PriceUnavailable
from payorders.chains.base import ChainUnavailable
from payorders.models import PayOrder
from payorders.services.lifecycle import payorder_expire_due
from payorders.services.payments import payorder_refresh_confirmations, payorder_scan, payorders_to_watch
from payorders.services.settlement import PAYORDER_SETTLE_TOPIC, payorder_settle

logger = logging.getLogger("coffer.payorders")

RETRYABLE = (ChainUnavailable, PriceUnavailable, OperationalError)
RETRY = {"autoretry_for": RETRYABLE, "retry_backoff": 2, "retry_backoff_max": 300, "retry_jitter": True, "max_retries": 8}
BATCH = 500


def _each(ids, func, what: str) -> int:
    """Run `func(order_id=...)` for each id; one order's chain trouble does not stop the rest, but
    the task is retried afterwards when any failed."""
    done, failed = 0, None
    for order_id in ids:
        try:
            func(order_id=order_id)
            done += 1
        except RETRYABLE as exc:
            logger.warning("%s: pay order %s postponed (%s)", what, order_id, exc)
            failed = exc
    if failed is not None:
        raise failed
    return done


@app.task(name="payorders.tasks.poll_confirmations", ignore_result=True, **RETRY)
def poll_confirmations() -> int:
    ids = list(
        PayOrder.objects.filter(status__in=[PayOrder.Status.AWAITING_CONFIRMATION, PayOrder.Status.EXECUTING_ORDER])
        .order_by("id")
        .values_list("pk", flat=True)[:BATCH]
    )
    return _each(ids, payorder_refresh_confirmations, "poll_confirmations")


@app.task(name="payorders.tasks.watch_addresses", ignore_result=True, **RETRY)
def watch_addresses() -> int:
    return _each(list(payorders_to_watch()[:BATCH * 4]), payorder_scan, "watch_addresses")


@app.task(name="payorders.tasks.expire_orders", ignore_result=True, **RETRY)
def expire_orders() -> int:
    return payorder_expire_due(limit=BATCH)


def payorder_settle_handler(message: OutboxMessage) -> None:
    payorder_settle(order_id=int(message.payload["order_id"]))


register_handler(PAYORDER_SETTLE_TOPIC, payorder_settle_handler)


BEAT = {
    "payorders.poll_confirmations": ("payorders.tasks.poll_confirmations", settings.PAYORDER_POLL_CONFIRMATIONS_SECONDS),
    "payorders.watch_addresses": ("payorders.tasks.watch_addresses", 30.0),
    "payorders.expire_orders": ("payorders.tasks.expire_orders", 60.0),
}
for _name, (_task, _every) in BEAT.items():
    app.conf.beat_schedule[_name] = {"task": _task, "schedule": _every, "options": {"expires": _every * 2}}
