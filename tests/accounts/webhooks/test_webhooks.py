"""Webhook endpoints and the delivery engine, against a real local HTTP receiver that verifies
every signature with the `standardwebhooks` library."""

import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from accounts.webhooks import WEBHOOK_TOPIC, webhook_publish
from accounts.webhooks.deliver import webhook_deliver, webhook_retry_schedule
from config.celery import app as celery_app
from core.models import OutboxMessage
from core.outbox import handlers_for, outbox_sweep
from core.tasks import dispatch_outbox, sweep_outbox

# Delivery is a topic of the outbox, whose dispatcher runs only outside a transaction: real commits.
pytestmark = pytest.mark.django_db(transaction=True)
ENDPOINTS = "/api/v1/webhook-endpoints"
DELIVERIES = "/api/v1/webhook-deliveries"


def create_endpoint(client, receiver, events=("*",)) -> dict:
    response = client.post(ENDPOINTS, {"url": receiver.url, "events": list(events), "description": "test"}, format="json")
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()


def message_of(delivery) -> OutboxMessage:
    """The newest outbox message that carries this delivery."""
    return OutboxMessage.objects.filter(topic=WEBHOOK_TOPIC, payload__delivery_id=str(delivery.pk)).latest("id")


def deliver(delivery) -> str:
    """One attempt now, the way the after-commit dispatch runs it (the Celery task, in process)."""
    return dispatch_outbox.apply(args=[message_of(delivery).pk]).get()


def sweep() -> dict:
    """The outbox sweeper, once the grace period of fresh messages (their own dispatch) is over."""
    return outbox_sweep(now=timezone.now() + timedelta(seconds=16))


def publish(org, event_type="transaction.completed", data=None, capture=None):
    with capture(execute=True):
        with transaction.atomic():
            return webhook_publish(organization=org.organization, event_type=event_type, payload=data or {"id": 7, "amount": "10.00"})


# --- Endpoints -------------------------------------------------------------------------------------


def test_create_endpoint_shows_secret_once(client_a, receiver):
    body = create_endpoint(client_a, receiver, events=["transaction.completed", "payorder.*"])
    assert body["secret"].startswith("whsec_")
    stored = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"] not in stored.secret_encrypted
    listed = client_a.get(ENDPOINTS).json()["results"]
    assert listed[0]["events"] == ["transaction.completed", "payorder.*"] and "secret" not in listed[0]


@pytest.mark.parametrize("events", [[], ["nope"], ["transaction.completed", 5], "*", ["Transaction.Completed"]])
def test_create_endpoint_validates_events(client_a, events):
    response = client_a.post(ENDPOINTS, {"url": "http://127.0.0.1:9/x", "events": events}, format="json")
    assert response.status_code == 400


@override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://2130706433/hook",
    ],
)
def test_private_targets_refused(client_a, url):
    response = client_a.post(ENDPOINTS, {"url": url, "events": ["*"]}, format="json")
    assert response.status_code == 400, (url, response.content)
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not WebhookEndpoint.objects.exists()


@override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False)
def test_public_address_accepted(client_a):
    response = client_a.post(ENDPOINTS, {"url": "http://93.184.215.14/hook", "events": ["*"]}, format="json")
    assert response.status_code == 201, response.content


@override_settings(WEBHOOK_REQUIRE_HTTPS=True)
def test_https_required_when_configured(client_a):
    assert client_a.post(ENDPOINTS, {"url": "http://93.184.215.14/hook", "events": ["*"]}, format="json").status_code == 400
    assert client_a.post(ENDPOINTS, {"url": "https://93.184.215.14/hook", "events": ["*"]}, format="json").status_code == 201


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://user:pw@93.184.215.14/x", "http:///nohost", "https://no-such-host.invalid/x"])
def test_bad_urls_refused(client_a, url):
    assert client_a.post(ENDPOINTS, {"url": url, "events": ["*"]}, format="json").status_code == 400


def test_disable_enable_delete(client_a, org, receiver, django_capture_on_commit_callbacks):
    endpoint = create_endpoint(client_a, receiver)
    assert client_a.post(f"{ENDPOINTS}/{endpoint['id']}/disable").json()["is_enabled"] is False
    assert publish(org, capture=django_capture_on_commit_callbacks) == []  # disabled: nothing queued
    assert client_a.post(f"{ENDPOINTS}/{endpoint['id']}/enable").json()["is_enabled"] is True
    with transaction.atomic():
        (pending,) = webhook_publish(organization=org.organization, event_type="wallet.suspended", payload={})
    assert client_a.delete(f"{ENDPOINTS}/{endpoint['id']}").status_code == 204
    assert client_a.get(f"{ENDPOINTS}/{endpoint['id']}").status_code == 404
    assert client_a.get(ENDPOINTS).json()["count"] == 0
    pending.refresh_from_db()
    assert pending.status == "failed" and pending.last_error == "endpoint deleted"
    assert receiver.received == []


# --- Delivery --------------------------------------------------------------------------------------


def test_published_event_is_delivered_signed(client_a, org, receiver, eager_celery, django_capture_on_commit_callbacks):
    endpoint = create_endpoint(client_a, receiver, events=["transaction.*"])
    publish(org, capture=django_capture_on_commit_callbacks, data={"id": 7, "amount": "10.00"})
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.verified, got.error
    assert got.payload["type"] == "transaction.completed" and got.payload["data"] == {"id": 7, "amount": "10.00"}
    assert got.payload["id"].startswith("evt_") and got.payload["created_at"].endswith("Z")
    delivery = WebhookDelivery.objects.get()
    assert got.headers["webhook-id"] == delivery.webhook_id
    assert got.headers["Host"].startswith("127.0.0.1:")
    assert delivery.status == "delivered" and delivery.endpoint_id == endpoint["id"] and delivery.attempt_count == 1
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 200 and attempt.succeeded and attempt.response_excerpt == "ok"
    # the API shows it
    listed = client_a.get(DELIVERIES, {"status": "delivered", "event_type": "transaction.completed"}).json()
    assert listed["count"] == 1 and listed["results"][0]["webhook_id"] == delivery.webhook_id
    assert client_a.get(DELIVERIES, {"status": "failed"}).json()["count"] == 0
    detail = client_a.get(f"{DELIVERIES}/{delivery.pk}").json()
    assert [a["status_code"] for a in detail["attempts"]] == [200]


def test_unsubscribed_events_are_not_queued(client_a, org, receiver, django_capture_on_commit_callbacks):
    create_endpoint(client_a, receiver, events=["transaction.completed"])
    assert publish(org, event_type="wallet.suspended", capture=django_capture_on_commit_callbacks) == []


def test_rolled_back_change_sends_nothing(client_a, org, receiver, eager_celery, django_capture_on_commit_callbacks):
    create_endpoint(client_a, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                webhook_publish(organization=org.organization, event_type="transaction.failed", payload={})
                raise RuntimeError("the change failed")
    assert WebhookDelivery.objects.count() == 0 and receiver.received == []


def test_retried_after_500_then_delivered(client_a, org, receiver, eager_celery, django_capture_on_commit_callbacks):
    create_endpoint(client_a, receiver)
    receiver.statuses = [500]
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempt_count == 1 and delivery.last_status_code == 500
    message = message_of(delivery)
    assert message.status == "pending" and message.attempts == 1 and "HTTP 500" in message.last_error
    # the delivery shows when the outbox tries again (the webhook schedule's first step: 5 s)
    assert abs((delivery.next_attempt_at - message.next_attempt_at).total_seconds()) < 1
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 5 - 2 < wait <= 5
    assert outbox_sweep() == {}  # not due yet
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # time passes
    assert sweep_outbox.apply().get() == {"dispatched": 1}
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempt_count == 2
    assert [r.verified for r in receiver.received] == [True, True]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # same id: receivers can deduplicate
    first, second = WebhookAttempt.objects.order_by("id")
    assert (first.status_code, second.status_code) == (500, 200)
    assert first.error == "HTTP 500" and len(first.response_excerpt.encode()) <= 1024 and first.duration_ms >= 0


def test_gives_up_after_the_last_attempt(client_a, org, receiver, django_capture_on_commit_callbacks, settings):
    create_endpoint(client_a, receiver)
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    settings.OUTBOX_MAX_ATTEMPTS = 1  # this attempt is the last
    receiver.statuses = [503]
    assert deliver(delivery) == "gave_up"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.next_attempt_at is None and delivery.last_status_code == 503
    assert message_of(delivery).status == "dead"  # visible in the admin
    settings.OUTBOX_MAX_ATTEMPTS = 30
    assert sum(webhook_retry_schedule()) > 20 * 3600  # the default: about a day of retries
    # redeliver queues it again with the same webhook-id
    receiver.statuses = []
    with django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(f"{DELIVERIES}/{delivery.pk}/redeliver")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert sweep() == {"dispatched": 1}
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert receiver.received[-1].verified and receiver.received[-1].headers["webhook-id"] == delivery.webhook_id
    assert client_a.post(f"{DELIVERIES}/{delivery.pk}/redeliver").status_code == 202  # delivered ones too


def test_redeliver_pending_is_409(client_a, org, receiver, django_capture_on_commit_callbacks):
    create_endpoint(client_a, receiver)
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    assert client_a.post(f"{DELIVERIES}/{delivery.pk}/redeliver").status_code == 409


def test_connection_errors_are_logged_attempts(client_a, org, django_capture_on_commit_callbacks):
    response = client_a.post(ENDPOINTS, {"url": "http://127.0.0.1:9/closed-port", "events": ["*"]}, format="json")
    assert response.status_code == 201
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    assert deliver(delivery) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempt_count == 1 and delivery.last_status_code is None
    assert "ConnectError" in WebhookAttempt.objects.get().error


def test_not_lost_when_the_broker_is_down_at_commit(client_a, org, receiver, django_capture_on_commit_callbacks, caplog):
    create_endpoint(client_a, receiver)
    # Celery reads CELERY_BROKER_URL from the environment into broker_write_url too (CI sets it),
    # so both must point at the dead port.
    previous = celery_app.conf.broker_url, celery_app.conf.broker_write_url
    celery_app.conf.broker_url = celery_app.conf.broker_write_url = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    try:
        with caplog.at_level(logging.WARNING, logger="coffer.outbox"):
            (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)  # commits; enqueue fails
    finally:
        celery_app.conf.broker_url, celery_app.conf.broker_write_url = previous
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
    assert "could not enqueue dispatch" in caplog.text
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempt_count == 0 and receiver.received == []
    assert sweep() == {"dispatched": 1}
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert receiver.received[0].verified


def test_private_address_refused_again_at_delivery_time(client_a, org, receiver, django_capture_on_commit_callbacks):
    """DNS rebinding: the endpoint was fine when created, the target is private when sending."""
    create_endpoint(client_a, receiver)
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False):
        assert deliver(delivery) == "failed"
    delivery.refresh_from_db()
    assert receiver.received == []
    assert delivery.status == "pending" and delivery.attempt_count == 1
    assert WebhookAttempt.objects.get().error.startswith("refused:")


def test_two_sweeps_never_send_one_delivery_twice(client_a, org, receiver, django_capture_on_commit_callbacks):
    create_endpoint(client_a, receiver)
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    assert sweep() == {"dispatched": 1}
    assert sweep() == {}
    assert deliver(delivery) == "skipped"
    webhook_deliver(message_of(delivery))  # the handler itself, run again (a crash before the record): nothing sent
    assert len(receiver.received) == 1


def test_disabled_endpoint_stops_pending_deliveries(client_a, org, receiver, django_capture_on_commit_callbacks):
    endpoint = create_endpoint(client_a, receiver)
    (delivery,) = publish(org, capture=django_capture_on_commit_callbacks)
    client_a.post(f"{ENDPOINTS}/{endpoint['id']}/disable")
    assert sweep() == {"dispatched": 1}
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error == "endpoint disabled" and receiver.received == []
    assert client_a.post(f"{DELIVERIES}/{delivery.pk}/redeliver").status_code == 409


def test_delivery_is_a_topic_of_the_one_outbox():
    assert handlers_for(WEBHOOK_TOPIC) == [webhook_deliver]
    tasks = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    # no sweeper of its own: the only accounts task on beat is the deliveries' retention
    assert "core.tasks.sweep_outbox" in tasks and {t for t in tasks if t.startswith("accounts.")} == {"accounts.tasks.purge_webhook_deliveries"}
