"""Celery tasks of accounts: webhook delivery. Tasks take ids and call `accounts.webhooks`."""

from config.celery import app

from accounts.webhooks import webhook_deliver, webhook_sweep

SWEEP_INTERVAL_SECONDS = 15.0


@app.task(name="accounts.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    webhook_deliver(delivery_id=delivery_id)


@app.task(name="accounts.tasks.sweep_webhooks", ignore_result=True)
def sweep_webhooks() -> int:
    return webhook_sweep()


# Registered from here, not settings (each app owns its periodic tasks). Beat imports the task
# modules before it reads the schedule, so setting it at import time is enough.
app.conf.beat_schedule["accounts.sweep_webhooks"] = {
    "task": "accounts.tasks.sweep_webhooks",
    "schedule": SWEEP_INTERVAL_SECONDS,
    "options": {"expires": SWEEP_INTERVAL_SECONDS * 2},
}
