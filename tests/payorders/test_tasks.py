"""The pay-order tasks' beat entries, retries and the settlement outbox topic."""

from __future__ import annotations

from payorders import tasks
from payorders.services.settlement import PAYORDER_SETTLE_TOPIC


def test_beat_schedule_registers_the_pay_order_tasks():
    from config.celery import app

    entries = {e["task"]: e["schedule"] for e in app.conf.beat_schedule.values()}
    for name in ("poll_confirmations", "watch_addresses", "expire_orders"):
        assert f"payorders.tasks.{name}" in entries and entries[f"payorders.tasks.{name}"] <= 60
    assert tasks.poll_confirmations.retry_backoff
    # settlement is a topic of the one outbox, not a task with a sweeper of its own
    from core.outbox import handlers_for

    assert handlers_for(PAYORDER_SETTLE_TOPIC) == [tasks.payorder_settle_handler]
    assert not hasattr(tasks, "settle_order") and not hasattr(tasks, "settle_completed")
