"""Loaded by the real Celery worker in `test_outbox.py` (`--include`): a handler for the topic the
test names in COFFER_OUTBOX_TEST_TOPIC that leaves a row the test can see."""

import os

from accounts.models import Organization
from core.outbox import register_handler


def mark_handled(message) -> None:
    Organization.objects.get_or_create(slug=f"worker-handled-{message.pk}", defaults={"name": "worker handled"})


_topic = os.environ.get("COFFER_OUTBOX_TEST_TOPIC")
if _topic:
    register_handler(_topic, mark_handled)
