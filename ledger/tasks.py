"""Celery tasks of the ledger and their beat entries (registered here, as every app does).

- `expire_holds`: every LEDGER_HOLD_EXPIRY_SECONDS (30 s), releases the authorization holds past
  their `expires_at` (`wallets.movements.holds.holds_expire_due`). Each hold is expired in its own short
  transaction under its row lock and only while still `held`, so two runs, or a run racing a
  capture or a void, act on a hold exactly once. This module is imported by `LedgerConfig.ready`.
- `ensure_entry_partitions`: daily, creates the monthly partitions of `ledger_entry`,
  `compliance_auditevent` and the webhook deliveries and attempts (`ledger.partitions.PARTITIONED`) for
  LEDGER_PARTITION_MONTHS_AHEAD months ahead (`ledger.partitions`; PostgreSQL only, the
  `maintenance` queue). Idempotent: a partition that exists is left alone.
"""

from __future__ import annotations

from django.conf import settings
from django.db import OperationalError

from config.celery import app
from ledger.partitions import entry_partitions_ensure
from wallets.movements.holds import holds_expire_due

BATCH = 500


@app.task(name="ledger.tasks.expire_holds", ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=2,
          retry_backoff_max=300, max_retries=8)
def expire_holds() -> int:
    return holds_expire_due(limit=BATCH)


_EVERY = float(getattr(settings, "LEDGER_HOLD_EXPIRY_SECONDS", 30))
app.conf.beat_schedule["ledger.expire_holds"] = {"task": "ledger.tasks.expire_holds", "schedule": _EVERY, "options": {"expires": _EVERY * 2}}


@app.task(name="ledger.tasks.ensure_entry_partitions", ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=60,
          max_retries=5)
def ensure_entry_partitions() -> list[str]:
    return entry_partitions_ensure()


app.conf.beat_schedule["ledger.ensure_entry_partitions"] = {
    "task": "ledger.tasks.ensure_entry_partitions", "schedule": 24 * 3600.0, "options": {"expires": 12 * 3600.0},
}
