"""Celery tasks of accounts and their beat entries (imported by `AccountsConfig.ready`).

- `purge_webhook_deliveries`: hourly, on the `maintenance` queue, applies the retention of webhook
  deliveries and attempts (WEBHOOK_DELIVERY_RETENTION_DAYS, accounts.webhooks.retention): drops
  the PostgreSQL months past it whose deliveries are all finished, deletes finished rows past it
  otherwise. Safe to run twice or concurrently: a partition is detached once, a deleted row
  deleted once, and an interrupted run is finished by the next.
"""

from __future__ import annotations

from typing import Any

from config.celery import app
from accounts.webhooks.retention import webhook_deliveries_purge


@app.task(name="accounts.tasks.purge_webhook_deliveries", ignore_result=True)
def purge_webhook_deliveries() -> dict[str, Any]:
    return webhook_deliveries_purge()


app.conf.beat_schedule["accounts.purge_webhook_deliveries"] = {
    "task": "accounts.tasks.purge_webhook_deliveries",
    "schedule": 3600.0,
    "options": {"expires": 1800},
}
