"""Outbox handlers of the customer wallets API (topics of the one outbox, `core.outbox`; dispatched
after commit and swept by `core.tasks`). Imported by `WalletsConfig.ready`.

- `payout.send` (written with the withdrawal, or when a reviewer approves it): `payout_send`
  claims the payout, calls the provider with no transaction open, records the answer.
- `payout.check` (due when the provider said to ask again): `payout_settle` asks the provider
  where a sent payout stands and follows it in the ledger.

Both are safe to run twice or concurrently: the services lock the payout row to record, and only
move a payout from the state they expect; the provider is idempotent on `Payout.reference`.
"""

from core.models import OutboxMessage
from core.outbox import register_handler
from wallets.movements.payouts import PAYOUT_CHECK_TOPIC, PAYOUT_TOPIC, payout_id_of, payout_send, payout_settle


def payout_send_handler(message: OutboxMessage) -> None:
    payout_id = payout_id_of(message.payload)
    if payout_id is not None:  # written with its payout in one transaction: only a deleted payout is missing
        payout_send(payout_id=payout_id)


def payout_check_handler(message: OutboxMessage) -> None:
    payout_settle(payout_id=int(message.payload["payout_id"]))


register_handler(PAYOUT_TOPIC, payout_send_handler)
register_handler(PAYOUT_CHECK_TOPIC, payout_check_handler)


# --- Recurring payments (wallets.schedules) ----------------------------------------------------------
# `run_schedules` (beat, every SCHEDULE_RUN_SECONDS) pays the due occurrences and retries of every
# schedule, each in its own short transaction; two runs at once pay each occurrence once (row locks
# with SKIP LOCKED, then the occurrence's unique constraint). The failure e-mail of a user's
# schedule is an outbox topic.
from django.conf import settings  # noqa: E402
from django.db import OperationalError  # noqa: E402

from config.celery import app  # noqa: E402
from wallets.schedules import SCHEDULE_EMAIL_TOPIC, occurrence_failed_email, schedules_run_due  # noqa: E402

register_handler(SCHEDULE_EMAIL_TOPIC, occurrence_failed_email)


@app.task(name="wallets.tasks.run_schedules", ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=2,
          retry_backoff_max=300, max_retries=8)
def run_schedules() -> int:
    return schedules_run_due()


_EVERY = float(settings.SCHEDULE_RUN_SECONDS)
app.conf.beat_schedule["wallets.run_schedules"] = {"task": "wallets.tasks.run_schedules", "schedule": _EVERY, "options": {"expires": _EVERY * 2}}
