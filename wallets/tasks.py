"""Celery tasks of the customer wallets API, and their beat entry.

- `settle_payout(payout_id)`: scheduled after a payout is sent, with a countdown to the time the
  provider said to ask again (the sandbox's settle delay): `wallets.services.payout_settle`.
- `sweep_payouts()`: every PAYOUT_SWEEP_SECONDS (10 s), settles every sent payout whose
  `next_check_at` has passed: the safety net when the broker was down at scheduling time or a
  worker died. Sending is the outbox's job (topic `payout.send`, handler registered by
  `wallets.services`), so a broker outage at request time only delays a payout.

Both are safe to run twice or concurrently: the services lock the payout row and only move a
payout from the state they expect.
"""

from django.conf import settings

from config.celery import app
from wallets.services import payout_settle, payouts_due_ids


@app.task(name="wallets.tasks.settle_payout", ignore_result=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def settle_payout(payout_id: int) -> str | None:
    payout = payout_settle(payout_id=payout_id)
    return payout.status if payout is not None else None


@app.task(name="wallets.tasks.sweep_payouts", ignore_result=True)
def sweep_payouts() -> int:
    done = 0
    for payout_id in payouts_due_ids():
        try:
            payout_settle(payout_id=payout_id)
            done += 1
        except Exception:  # one bad payout must not stop the others; it stays due
            import logging

            logging.getLogger("coffer.wallets").exception("payout %s: settlement failed", payout_id)
    return done


app.conf.beat_schedule["wallets.sweep_payouts"] = {
    "task": "wallets.tasks.sweep_payouts",
    "schedule": float(getattr(settings, "PAYOUT_SWEEP_SECONDS", 10)),
    "options": {"expires": 30},
}
