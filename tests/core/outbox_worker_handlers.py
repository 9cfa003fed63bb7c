"""Loaded by the worker processes in `test_outbox.py` (a real Celery worker via `--include`, or a
plain subprocess dispatcher): a handler for the topic the test names in COFFER_OUTBOX_TEST_TOPIC
that leaves a row the test can see. With COFFER_OUTBOX_TEST_HANG set it then hangs forever
(the test kills the process mid-handler)."""

import os
import time

from accounts.models import Organization
from core.outbox import register_handler


def mark_handled(message) -> None:
    Organization.objects.get_or_create(slug=f"worker-handled-{message.pk}", defaults={"name": "worker handled"})
    if os.environ.get("COFFER_OUTBOX_TEST_HANG"):
        while True:
            time.sleep(1)


_topic = os.environ.get("COFFER_OUTBOX_TEST_TOPIC")
if _topic:
    register_handler(_topic, mark_handled)
