"""Done outbox messages are deleted after OUTBOX_RETENTION_DAYS (core.outbox.outbox_purge, the
hourly `core.tasks.purge_outbox`): the table stays bounded by retention, never by age, and what an
operator or a retry still needs (dead, pending, leased, recently done messages) stays."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from core.models import OutboxMessage
from core.outbox import outbox_emit, outbox_purge
from core.queues import queue_name
from core.tasks import purge_outbox

pytestmark = pytest.mark.django_db


def _message(status: str, *, done_days_ago: float | None = None, key: str = "") -> OutboxMessage:
    now = timezone.now()
    message = outbox_emit(topic="test.purge", payload={"n": 1}, key=key)
    message.status = status
    message.done_at = now - timedelta(days=done_days_ago) if done_days_ago is not None else None
    message.dead_at = now if status == OutboxMessage.Status.DEAD else None
    message.save(update_fields=["status", "done_at", "dead_at"])
    return message


def test_only_messages_done_before_the_retention_go(settings):
    settings.OUTBOX_RETENTION_DAYS = 30
    old = [_message(OutboxMessage.Status.DONE, done_days_ago=31) for _ in range(3)]
    recent = _message(OutboxMessage.Status.DONE, done_days_ago=29)
    dead = _message(OutboxMessage.Status.DEAD)
    pending = _message(OutboxMessage.Status.PENDING)
    assert outbox_purge(batch_size=2) == 3  # batches until nothing is left
    left = set(OutboxMessage.objects.values_list("pk", flat=True))
    assert left == {recent.pk, dead.pk, pending.pk} and not left & {m.pk for m in old}
    assert outbox_purge() == 0


def test_the_hourly_purge_keeps_the_table_bounded_by_retention(settings):
    settings.OUTBOX_RETENTION_DAYS = 2
    start = timezone.now()
    sizes = []
    for hour in range(0, 24 * 8, 6):  # eight days of traffic, a purge every six hours
        moment = start + timedelta(hours=hour)
        for _ in range(3):
            message = outbox_emit(topic="test.purge", payload={})
            message.status, message.done_at = OutboxMessage.Status.DONE, moment
            message.save(update_fields=["status", "done_at"])
        outbox_purge(now=moment)
        sizes.append(OutboxMessage.objects.count())
    # two days of 3 messages every 6 hours (plus the newest batch), however long it runs
    assert max(sizes[12:]) == min(sizes[12:]) <= 3 * (2 * 4 + 1)


def test_a_purged_key_is_free_again_and_the_task_runs_on_the_maintenance_queue(settings):
    settings.OUTBOX_RETENTION_DAYS = 1
    first = _message(OutboxMessage.Status.DONE, done_days_ago=2, key="k-1")
    assert outbox_emit(topic="test.purge", payload={}, key="k-1").pk == first.pk  # the guard holds while kept
    assert purge_outbox() == 1  # the hourly task
    again = outbox_emit(topic="test.purge", payload={}, key="k-1")
    assert again.pk != first.pk and again.status == OutboxMessage.Status.PENDING
    assert "core.purge_outbox" in app.conf.beat_schedule
    assert app.amqp.router.route({}, "core.tasks.purge_outbox", (), {})["queue"].name == queue_name("maintenance")
