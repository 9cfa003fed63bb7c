"""Metrics and request ids (issue 15 item 5): the protected Prometheus endpoint and its series,
X-Request-Id on every response and in every JSON log line of the request and of the Celery
tasks it enqueues, the IETF RateLimit fields on successful responses, and
Idempotency-Retention on money responses."""

import io
import json
import logging
import threading
import uuid
from datetime import timedelta

import pytest
from celery import Celery
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.models import OutboxMessage
from core.requestid import JsonFormatter, RequestIdFilter, current_request_id
from tests.factories.wallets import client_for, open_wallet, person

pytestmark = pytest.mark.django_db
TOKEN = "metrics-test-token-0123456789abcdef"


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _transfer(client, source, destination, amount="1.00", key=None):
    return client.post("/api/v1/transfers", {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount,
                                             "currency": "USD"}, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


@pytest.fixture
def pair():
    jane, john = person("jane@example.com"), person("john@example.com")
    return client_for(jane), open_wallet(jane, funded="10.00"), open_wallet(john)


# --- X-Request-Id ---------------------------------------------------------------------------------
def test_every_response_carries_a_request_id_the_callers_when_valid(client):
    generated = client.get("/health")
    assert len(generated["X-Request-Id"]) == 32 and int(generated["X-Request-Id"], 16) >= 0
    assert client.get("/health")["X-Request-Id"] != generated["X-Request-Id"]
    assert client.get("/health", HTTP_X_REQUEST_ID="lb-7f3a:req.42")["X-Request-Id"] == "lb-7f3a:req.42"
    for bad in ("has space", "x" * 129, "-starts-with-dash", "semi;colon", "new\nline"):
        replaced = client.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID=bad)
        assert replaced.status_code == 404 and replaced["X-Request-Id"] != bad and len(replaced["X-Request-Id"]) == 32


def test_log_lines_are_json_with_the_request_id_also_after_the_view(client):
    """Django logs a 4xx after the middleware chain: the id is kept until request_finished."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(), logging.getLogger("django")]  # "django" does not propagate (settings.LOGGING)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        client.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID="trace-404")
        logging.getLogger("coffer.test").warning("outside any request")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    in_request = [x for x in lines if x["logger"] == "django.request"]
    assert in_request and all(x["request_id"] == "trace-404" for x in in_request), lines
    assert in_request[0]["level"] == "WARNING" and in_request[0]["time"].endswith("Z")
    assert lines[-1]["message"] == "outside any request" and lines[-1]["request_id"] is None
    assert current_request_id() == ""


def test_the_console_handler_writes_json_through_the_redaction_filter():
    from django.conf import settings

    console = settings.LOGGING["handlers"]["console"]
    assert console["formatter"] == "json" and console["filters"][0] == "redact" and "request_id" in console["filters"]
    record = logging.LogRecord("coffer.x", logging.INFO, __file__, 1, "password=%s", ("hunter2",), None)
    from core.logging import RedactingFilter

    RedactingFilter().filter(record)
    RequestIdFilter().filter(record)
    assert json.loads(JsonFormatter().format(record))["message"] == "password=[REDACTED]"


def test_celery_tasks_carry_the_request_id_through_a_real_worker(monkeypatch):
    """A task published while a request id is current runs, in a worker, with that id. The
    worker is a real one (a thread consuming kombu's in-memory transport) of an app of its own:
    CELERY_BROKER_URL would override its broker and share the CI queue with other tests, and
    Celery's Django fixup would close this process's database sockets."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app as project_app

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery("scaleout-request-id", broker="memory://", set_as_current=False, fixups=[])
    app.conf.update(task_always_eager=False, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
    assert app.conf.broker_url == "memory://"
    seen: dict[str, str] = {}
    done = threading.Event()

    @app.task(name="scaleout.request_id_probe")
    def probe(tag):
        seen[tag] = current_request_id()
        done.set()

    from core import requestid

    # The test worker sets up Celery's logging (the root logger's level among it): put it back
    # after, or later tests' caplog would miss warnings.
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    monkeypatch.setattr(app.log, "already_setup", True)  # and better: do not let it set logging up at all
    try:
        _run_probe(app, probe, done, requestid, start_worker)
    finally:
        for lg, level, handlers, propagate, disabled in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
        # start_worker made this app the current one: shared tasks would publish to its memory://
        project_app.set_current()
        project_app.set_default()
    assert seen["carried"] == "req-for-celery-1"
    assert len(seen["fresh"]) == 32 and seen["fresh"] != "req-for-celery-1"


def _run_probe(app, probe, done, requestid, start_worker) -> None:
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        token = requestid._request_id.set("req-for-celery-1")
        try:
            probe.delay("carried")
        finally:
            requestid._request_id.reset(token)
        assert done.wait(20)
        done.clear()
        probe.delay("fresh")  # published outside a request: the task gets an id of its own
        assert done.wait(20)


# --- RateLimit and Idempotency-Retention -------------------------------------------------------------
def test_successful_money_responses_carry_the_ratelimit_fields_and_the_retention(settings, pair):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "100/min", "money": "3/min"}}
    client, source, destination = pair
    first = _transfer(client, source, destination)
    assert first.status_code == 201, first.content
    assert first["RateLimit-Policy"] == '"money";q=3;w=60'
    remaining, reset = first["RateLimit"].split(";")[1:]
    assert first["RateLimit"].startswith('"money";') and remaining == "r=2" and 0 <= int(reset[2:]) <= 60
    assert first["Idempotency-Retention"] == str(settings.IDEMPOTENCY_KEY_TTL_HOURS * 3600)
    assert _transfer(client, source, destination)["RateLimit"].split(";")[1] == "r=1"
    assert _transfer(client, source, destination)["RateLimit"].split(";")[1] == "r=0"
    refused = _transfer(client, source, destination)
    assert refused.status_code == 429 and "Retry-After" in refused and "RateLimit" not in refused
    listing = client.get(f"/api/v1/wallets/{source.pk}")  # not a money endpoint, not throttled
    assert listing.status_code == 200 and "Idempotency-Retention" not in listing and "RateLimit" not in listing


def test_idempotent_replays_and_conflicts_are_counted(pair):
    client, source, destination = pair
    route = "transfer-create"
    replays, reused = _value("coffer_idempotency_replays_total", route=route), _value(
        "coffer_idempotency_conflicts_total", route=route, code="IDEMPOTENCY_KEY_REUSED")
    assert _transfer(client, source, destination, key="k-1").status_code == 201
    again = _transfer(client, source, destination, key="k-1")
    assert again["Idempotency-Replayed"] == "true" and again["Idempotency-Retention"]
    other = _transfer(client, source, destination, amount="2.00", key="k-1")
    assert other.status_code == 422 and other["Idempotency-Retention"]
    assert _value("coffer_idempotency_replays_total", route=route) == replays + 1
    assert _value("coffer_idempotency_conflicts_total", route=route, code="IDEMPOTENCY_KEY_REUSED") == reused + 1


# --- Counted series ---------------------------------------------------------------------------------------
def test_postings_and_http_requests_are_counted_by_type_route_and_outcome(pair):
    client, source, destination = pair
    completed = _value("coffer_postings_total", type="transfer", outcome="completed")
    refused = _value("coffer_postings_total", type="transfer", outcome="insufficient_funds")
    created = _value("coffer_http_requests_total", method="POST", route="transfer-create", status="201")
    latency = _value("coffer_http_request_duration_seconds_count", method="POST", route="transfer-create", status="201")
    assert _transfer(client, source, destination).status_code == 201
    assert _transfer(client, source, destination, amount="500.00").status_code == 422
    assert _value("coffer_postings_total", type="transfer", outcome="completed") == completed + 1
    assert _value("coffer_postings_total", type="transfer", outcome="insufficient_funds") == refused + 1
    assert _value("coffer_http_requests_total", method="POST", route="transfer-create", status="201") == created + 1
    assert _value("coffer_http_request_duration_seconds_count", method="POST", route="transfer-create", status="201") == latency + 1


def test_webhook_attempts_are_counted_by_outcome():
    from tests.factories.accounts import OrganizationFactory

    org = OrganizationFactory()
    endpoint = WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", events=["*"], secret_encrypted="x")
    delivery = WebhookDelivery.objects.create(organization=org, endpoint=endpoint, event_id="e1", event_type="t", payload={})
    before = {o: _value("coffer_webhook_attempts_total", outcome=o) for o in ("delivered", "http_error", "network_error")}
    WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url, status_code=200, succeeded=True)
    WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url, status_code=503, error="HTTP 503")
    WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url, error="ConnectError: refused by peer")
    assert {o: _value("coffer_webhook_attempts_total", outcome=o) - before[o] for o in before} == {
        "delivered": 1, "http_error": 1, "network_error": 1}


# --- The endpoint -------------------------------------------------------------------------------------------
def _scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_the_metrics_endpoint_is_protected_by_its_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404  # no token configured: no endpoint
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_scrape_time_series_read_the_database_and_the_broker(client, settings):
    settings.METRICS_TOKEN = TOKEN
    from tests.factories.accounts import OrganizationFactory

    now = timezone.now()
    OutboxMessage.objects.create(topic="scaleout.test", payload={}, created_at=now - timedelta(seconds=90), next_attempt_at=now)
    OutboxMessage.objects.create(topic="scaleout.test", payload={}, created_at=now, next_attempt_at=now)
    OutboxMessage.objects.create(topic="scaleout.done", payload={}, status="done", next_attempt_at=now)
    org = OrganizationFactory()
    WebhookEndpoint.objects.create(organization=org, url="https://example.com/a", events=["*"], secret_encrypted="x", is_enabled=False)
    WebhookEndpoint.objects.create(organization=org, url="https://example.com/b", events=["*"], secret_encrypted="x")
    samples = _scrape(client)
    assert samples[("coffer_outbox_pending", (("topic", "scaleout.test"),))] == 2
    assert samples[("coffer_outbox_oldest_pending_age_seconds", (("topic", "scaleout.test"),))] >= 89
    assert ("coffer_outbox_pending", (("topic", "scaleout.done"),)) not in samples
    assert samples[("coffer_webhook_endpoints_disabled", ())] == 1
    assert samples[("coffer_review_queue_open", ())] == 0
    assert ("coffer_review_queue_oldest_age_seconds", ()) in samples
    assert ("coffer_audit_unchained_events", ()) in samples and ("coffer_audit_sequencer_lag_seconds", ()) in samples
    for queue in ("money", "chain", "webhooks", "email", "maintenance"):  # core.queues: every queue by what it carries
        assert ("coffer_celery_queue_length", (("queue", queue),)) in samples
    sources = {dict(labels)["source"]: v for (name, labels), v in samples.items() if name == "coffer_metrics_source_up"}
    assert sources == {"outbox": 1, "review": 1, "audit": 1, "webhooks": 1, "replica": 1, "celery": 1}
    client.get("/health")
    assert _scrape(client)[("coffer_http_requests_total", (("method", "GET"), ("route", "health"), ("status", "200")))] >= 1
