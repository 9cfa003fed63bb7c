"""Issue 12 item 15: an endpoint answering 410 Gone is disabled (why and when on the endpoint, its
pending deliveries cancelled, the organization's owners e-mailed through the outbox, the state
shown in the API and the dashboard) and can be enabled again; retries run on their own schedule
(5 s, 30 s, 2 min, ...) at the time each is due, dispatched by a real Celery worker (in this
process, on the test broker) with no sweeper running. Real local HTTP receivers throughout
(tests/accounts/conftest.py `receiver`)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.core import mail
from django.db import connections
from django.test import Client
from django.utils import timezone

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from accounts.webhooks.deliver import webhook_retry_schedule
from accounts.webhooks.services import ENDPOINT_DISABLED_TOPIC
from compliance.models import AuditEvent
from config.celery import app as celery_app
from core.models import OutboxMessage
from core.outbox import outbox_dispatch, outbox_retry_at
from tests.accounts.webhooks.test_webhooks import DELIVERIES, ENDPOINTS, create_endpoint, deliver, message_of, publish, sweep

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_410_disables_the_endpoint_cancels_its_deliveries_and_tells_the_owners(client_a, org, receiver, django_capture_on_commit_callbacks):
    """The bug: a 410 was retried like any failure, and the endpoint kept receiving."""
    endpoint = create_endpoint(client_a, receiver)
    first, = publish(org, capture=django_capture_on_commit_callbacks)
    second, = publish(org, event_type="transaction.failed", capture=django_capture_on_commit_callbacks)
    receiver.statuses = [410]

    assert deliver(first) == "dispatched"  # final: the outbox does not retry it
    first.refresh_from_db()
    assert first.status == "failed" and first.last_status_code == 410 and first.next_attempt_at is None
    assert message_of(first).status == "done"

    stored = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert not stored.is_enabled and stored.disabled_reason == "gone"
    assert stored.disabled_at is not None and (timezone.now() - stored.disabled_at).total_seconds() < 30
    assert "410 Gone" in stored.disabled_detail and str(first.pk) in stored.disabled_detail

    second.refresh_from_db()
    assert second.status == "failed" and second.last_error == "endpoint disabled" and second.next_attempt_at is None
    assert deliver(second) == "dispatched" and len(receiver.received) == 1  # nothing more went out
    assert sweep() == {"dispatched": 1}  # only the owners' e-mail was due
    assert len(receiver.received) == 1

    event = AuditEvent.objects.filter(action="webhook_endpoint.disabled").get()
    assert event.data["reason"] == "gone" and event.data["status_code"] == 410 and event.data["cancelled_deliveries"] == 1

    notice = OutboxMessage.objects.get(topic=ENDPOINT_DISABLED_TOPIC)
    assert notice.status == "done" and notice.organization_id == org.organization.pk
    (mail_sent,) = mail.outbox
    assert mail_sent.to == [org.owner.email] and receiver.url in mail_sent.subject
    assert "410 Gone" in mail_sent.body and f"/api/v1/webhook-endpoints/{endpoint['id']}/enable" in mail_sent.body

    shown = client_a.get(f"{ENDPOINTS}/{endpoint['id']}").json()
    assert shown["is_enabled"] is False and shown["disabled_reason"] == "gone" and "410 Gone" in shown["disabled_detail"]
    assert shown["disabled_at"] is not None

    dashboard = Client()
    dashboard.force_login(org.owner)
    page = dashboard.get("/dashboard/webhooks/").content.decode()
    assert "Disabled: 410 Gone" in page and 'data-disabled-reason="gone"' in page
    assert f"/dashboard/webhooks/{endpoint['id']}/enable/" in page  # the button

    # The organization enables it again (here through the dashboard's button) and events flow.
    assert dashboard.post(f"/dashboard/webhooks/{endpoint['id']}/enable/").status_code == 302
    stored.refresh_from_db()
    assert stored.is_enabled and stored.disabled_reason == "" and stored.disabled_detail == "" and stored.disabled_at is None
    third, = publish(org, capture=django_capture_on_commit_callbacks)
    assert deliver(third) == "dispatched"
    third.refresh_from_db()
    assert third.status == "delivered" and receiver.received[-1].verified
    # the cancelled one can be sent again by hand
    assert client_a.post(f"{DELIVERIES}/{second.pk}/redeliver").status_code == 202


def test_the_api_enables_an_endpoint_disabled_by_a_410(client_a, org, receiver, django_capture_on_commit_callbacks):
    endpoint = create_endpoint(client_a, receiver)
    delivery, = publish(org, capture=django_capture_on_commit_callbacks)
    receiver.statuses = [410]
    deliver(delivery)
    assert client_a.get(f"{ENDPOINTS}/{endpoint['id']}").json()["disabled_reason"] == "gone"
    response = client_a.post(f"{ENDPOINTS}/{endpoint['id']}/enable")
    assert response.status_code == 200, response.content
    assert response.json()["is_enabled"] is True and response.json()["disabled_reason"] == ""
    assert AuditEvent.objects.filter(action="webhook_endpoint.enabled").get().data["previous_reason"] == "gone"


def test_a_410_after_the_endpoint_was_enabled_again_mails_only_for_the_new_disabling(client_a, org, receiver, django_capture_on_commit_callbacks):
    """The owners' e-mail is about one disabling: if the endpoint was enabled before the mail went
    out, nothing is sent."""
    endpoint = create_endpoint(client_a, receiver)
    delivery, = publish(org, capture=django_capture_on_commit_callbacks)
    receiver.statuses = [410]
    deliver(delivery)
    client_a.post(f"{ENDPOINTS}/{endpoint['id']}/enable")
    assert outbox_dispatch(message_id=OutboxMessage.objects.get(topic=ENDPOINT_DISABLED_TOPIC).pk) == "dispatched"
    assert mail.outbox == []


def test_a_manual_disable_records_why_and_cancels_pending_deliveries(client_a, org, receiver, django_capture_on_commit_callbacks):
    endpoint = create_endpoint(client_a, receiver)
    delivery, = publish(org, capture=django_capture_on_commit_callbacks)
    body = client_a.post(f"{ENDPOINTS}/{endpoint['id']}/disable").json()
    assert body["disabled_reason"] == "organization" and body["disabled_at"] is not None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error == "endpoint disabled"
    assert not OutboxMessage.objects.filter(topic=ENDPOINT_DISABLED_TOPIC).exists() and mail.outbox == []


def test_the_default_schedule_is_the_documented_one_about_a_day_in_all(client_a, org, receiver, django_capture_on_commit_callbacks):
    schedule = webhook_retry_schedule()
    assert schedule == [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]  # README "Webhooks"
    assert 22 * 3600 <= sum(schedule) <= 26 * 3600
    create_endpoint(client_a, receiver)
    delivery, = publish(org, capture=django_capture_on_commit_callbacks)
    message = message_of(delivery)
    now = timezone.now()
    for attempt, delay in enumerate(schedule, start=1):  # exactly, no jitter
        message.attempts = attempt
        assert outbox_retry_at(message, now=now) == now + timedelta(seconds=delay)
    message.attempts = len(schedule) + 1
    assert outbox_retry_at(message, now=now) is None  # then the delivery has failed


# --- Retries on time, with a real worker and no sweeper ----------------------------------------------------


@contextlib.contextmanager
def celery_worker():
    """A real Celery worker in this process (a thread), consuming the test broker; no beat, so no
    sweeper: whatever runs, runs because its own dispatch was due."""

    if not celery_app.conf.broker_url.startswith("memory://"):
        # scripts/test.sh runs these again with the in-process memory transport (no CELERY_BROKER_URL)
        pytest.skip("times the outbox with a worker thread on kombu's in-process memory transport; "
                    "a shared broker (RabbitMQ in CI) also holds other runs' messages")

    def close_connections(**_):
        connections.close_all()

    task_postrun.connect(close_connections, weak=False)
    try:
        with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30):
            yield
    finally:
        task_postrun.disconnect(close_connections)


def attempt_gaps(delivery) -> list[float]:
    times = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("attempted_at").values_list("attempted_at", flat=True))
    return [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]


def wait_for_status(delivery, status: str, timeout: float) -> WebhookDelivery:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery.refresh_from_db()
        if delivery.status == status:
            return delivery
        time.sleep(0.1)
    raise AssertionError(f"delivery still {delivery.status} after {timeout} s: attempts {delivery.attempt_count}")


TOLERANCE = 2.0  # the request, the record and the worker's wake-up; far less than a 10-15 s sweep


def test_a_failed_delivery_is_retried_5_seconds_later_by_the_default_schedule(client_a, org, receiver, django_capture_on_commit_callbacks):
    """The bug: a retry waited for the next 15 s sweep. Fails once, then succeeds, on time."""
    create_endpoint(client_a, receiver)
    receiver.statuses = [500]
    with celery_worker():
        delivery, = publish(org, capture=django_capture_on_commit_callbacks)  # its dispatch goes to the worker
        delivery = wait_for_status(delivery, "delivered", timeout=30)
    assert delivery.attempt_count == 2
    (gap,) = attempt_gaps(delivery)
    assert 5 <= gap < 5 + TOLERANCE, gap
    assert [r.verified for r in receiver.received] == [True, True]


def test_each_retry_runs_when_its_step_of_the_schedule_is_due(client_a, org, receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE_SECONDS = [1, 3, 2]
    create_endpoint(client_a, receiver)
    receiver.statuses = [502, 503, 500]
    with celery_worker():
        delivery, = publish(org, capture=django_capture_on_commit_callbacks)
        delivery = wait_for_status(delivery, "delivered", timeout=40)
    assert delivery.attempt_count == 4
    gaps = attempt_gaps(delivery)
    assert all(d <= g < d + TOLERANCE for g, d in zip(gaps, [1, 3, 2])), gaps


def test_a_delivery_that_keeps_failing_fails_after_the_last_step(client_a, org, receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE_SECONDS = [1, 1]
    create_endpoint(client_a, receiver)
    receiver.statuses = [500, 500, 500, 500]
    with celery_worker():
        delivery, = publish(org, capture=django_capture_on_commit_callbacks)
        delivery = wait_for_status(delivery, "failed", timeout=30)
    assert delivery.attempt_count == 3 and message_of(delivery).status == "dead"
