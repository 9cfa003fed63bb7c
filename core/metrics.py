"""Prometheus metrics (issue 15): `GET /metrics` with `Authorization: Bearer <METRICS_TOKEN>`.

Two kinds of series:
- Counted where they happen, in the process that served them (`prometheus-client` counters and
  histograms): HTTP requests and latency by route (the URL name, never the raw path) and status;
  postings by type and outcome (`wallets.pipeline.money_path`); idempotency replays and conflicts;
  webhook attempts by outcome (each saved `WebhookAttempt`); replica routing and fallbacks.
  With several processes per host (gunicorn workers, a Celery pool), set PROMETHEUS_MULTIPROC_DIR
  to an empty directory shared by them (prometheus-client's multiprocess mode; wiped at deploy):
  any process's /metrics then reports the sum. A worker host without web processes can serve its
  own with METRICS_WORKER_PORT (a separate bind, no token: keep it on a private interface).
- Read at scrape time from the database and the broker, so they are right whichever process is
  asked: outbox depth and oldest age per topic, review queue size and oldest age, audit sequencer
  lag (events not chained yet, oldest age), webhook endpoints disabled, replica lag, Celery queue
  lengths. Each source that fails sets `coffer_metrics_source_up{source}` to 0 instead of
  failing the scrape.

Without METRICS_TOKEN the endpoint answers 404: metrics are never public by accident. Counting
costs a few microseconds per request (a label lookup and two increments).
"""

from __future__ import annotations

import hmac
import logging
import os

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger("coffer.metrics")

HTTP_REQUESTS = Counter("coffer_http_requests", "HTTP requests served, by route and status.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "coffer_http_request_duration_seconds", "Time from the first middleware to the response, by route and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POSTINGS = Counter("coffer_postings", "Money movements through the money path, by ledger type and outcome.", ["type", "outcome"])
IDEMPOTENCY_REPLAYS = Counter("coffer_idempotency_replays", "Responses replayed for a repeated Idempotency-Key.", ["route"])
IDEMPOTENCY_CONFLICTS = Counter(
    "coffer_idempotency_conflicts", "Idempotency-Key conflicts: reused with another body (422) or still running (409).", ["route", "code"]
)
WEBHOOK_ATTEMPTS = Counter("coffer_webhook_attempts", "Webhook delivery attempts, by outcome.", ["outcome"])
REPLICA_ROUTED = Counter("coffer_replica_routed", "Lag-tolerant requests, by where their reads went and why.", ["target", "reason"])
REPLICA_FALLBACKS = Counter("coffer_replica_fallbacks", "Lag-tolerant requests served by the primary because the replica was down or lagging.", ["reason"])
REPLICA_LAG = Gauge("coffer_replica_lag_last_check_seconds", "Replica lag at this process's last check.", multiprocess_mode="max")


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


# --- Counting helpers (called from the request middleware, the money path, signals) -------------
def count_posting(ledger_type: str, result) -> None:
    """`result`: a `wallets.pipeline.MovementResult`."""
    if result.error is not None:
        outcome = getattr(result.error, "code", result.error.__class__.__name__).lower()
    elif result.transaction is not None:
        outcome = str(result.transaction.status)
    else:
        outcome = "unknown"
    POSTINGS.labels(type=ledger_type, outcome=outcome).inc()


def _webhook_attempt_saved(sender, instance, created, **kwargs) -> None:
    if not created:
        return
    if instance.succeeded:
        outcome = "delivered"
    elif instance.status_code is not None:
        outcome = "http_error"
    elif (instance.error or "").startswith("refused"):
        outcome = "refused"
    else:
        outcome = "network_error"
    WEBHOOK_ATTEMPTS.labels(outcome=outcome).inc()


def install() -> None:
    """Signal receivers (CoreConfig.ready)."""
    from django.db.models.signals import post_save

    post_save.connect(_webhook_attempt_saved, sender="accounts.WebhookAttempt", dispatch_uid="coffer-metrics-webhook-attempt")


# --- Read at scrape time ------------------------------------------------------------------------------
def _table(label: str) -> str:
    from django.apps import apps
    from django.db import connection

    return connection.ops.quote_name(apps.get_model(label)._meta.db_table)


def _rows(sql: str) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _age(column: str) -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM now() - min({column}))"
    return f"(julianday('now') - julianday(min({column}))) * 86400"


def celery_queue_names() -> list[str]:
    names = {getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery") or "celery"}
    for queue in getattr(settings, "CELERY_TASK_QUEUES", None) or ():
        names.add(getattr(queue, "name", queue))
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or ()
    for table in [routes] if isinstance(routes, dict) else routes:  # a table, or routers and tables
        for route in table.values() if isinstance(table, dict) else ():
            if isinstance(route, dict) and route.get("queue"):
                names.add(route["queue"])
    return sorted(str(n) for n in names)


def celery_queue_lengths() -> dict[str, int]:
    """Messages waiting per queue, asked of the broker (a passive declare: nothing is created)."""
    from config.celery import app

    lengths = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        for name in celery_queue_names():
            try:
                lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except Exception:  # noqa: BLE001 - a queue nobody declared yet is empty
                lengths[name] = 0
                channel = conn.channel()
    return lengths


class DatabaseCollector:
    """Series read at scrape time (module docstring)."""

    def collect(self):
        up = GaugeMetricFamily("coffer_metrics_source_up", "Whether a scrape-time source answered (1) or not (0).", labels=["source"])
        for source, families in (
            ("outbox", self._outbox),
            ("review", self._review),
            ("audit", self._audit),
            ("webhooks", self._webhooks),
            ("replica", self._replica),
            ("celery", self._celery),
        ):
            try:
                collected = list(families())
            except Exception as exc:  # noqa: BLE001 - one source down must not hide the others
                logger.warning("metrics source %s failed: %s", source, exc.__class__.__name__)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from collected
        yield up

    def _outbox(self):
        depth = GaugeMetricFamily("coffer_outbox_pending", "Outbox messages not dispatched yet, per topic.", labels=["topic"])
        age = GaugeMetricFamily("coffer_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox message, per topic.", labels=["topic"])
        for topic, count, oldest in _rows(
            f"SELECT topic, count(*), {_age('created_at')} FROM {_table('core.OutboxMessage')} WHERE status = 'pending' GROUP BY topic"
        ):
            depth.add_metric([topic], count)
            age.add_metric([topic], float(oldest or 0))
        yield from (depth, age)

    def _review(self):
        ((count, oldest),) = _rows(f"SELECT count(*), {_age('created_at')} FROM {_table('compliance.ReviewCase')} WHERE status = 'open'")
        yield GaugeMetricFamily("coffer_review_queue_open", "Review cases waiting for a decision.", value=count)
        yield GaugeMetricFamily("coffer_review_queue_oldest_age_seconds", "Age of the oldest open review case.", value=float(oldest or 0))

    def _audit(self):
        ((count, oldest),) = _rows(f"SELECT count(*), {_age('created_at')} FROM {_table('compliance.AuditEvent')} WHERE sequence IS NULL")
        yield GaugeMetricFamily("coffer_audit_unchained_events", "Audit events the sequencer has not linked into the chain yet.", value=count)
        yield GaugeMetricFamily("coffer_audit_sequencer_lag_seconds", "Age of the oldest audit event not chained yet (0: caught up).",
                                value=float(oldest or 0))

    def _webhooks(self):
        ((count,),) = _rows(
            f"SELECT count(*) FROM {_table('accounts.WebhookEndpoint')} WHERE NOT is_enabled AND deleted_at IS NULL"
        )
        yield GaugeMetricFamily("coffer_webhook_endpoints_disabled", "Webhook endpoints disabled (by their owner or after failures).", value=count)

    def _replica(self):
        from core import routing

        if not routing.replica_configured():
            return
        lag = routing.replica_lag()
        yield GaugeMetricFamily("coffer_replica_up", "Whether the read replica answers.", value=0 if lag is None else 1)
        if lag is not None:
            yield GaugeMetricFamily("coffer_replica_lag_seconds", "How far the read replica is behind the primary.", value=lag)

    def _celery(self):
        lengths = celery_queue_lengths()
        family = GaugeMetricFamily("coffer_celery_queue_length", "Messages waiting in a Celery queue.", labels=["queue"])
        for name, length in lengths.items():
            family.add_metric([name], length)
        yield family


def exposition() -> bytes:
    """What one scrape reports: this process's series (or every process's, in multiprocess mode)
    and the scrape-time ones, in Prometheus' text format."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        counted = CollectorRegistry()
        mp.MultiProcessCollector(counted)
    else:
        from prometheus_client import REGISTRY as counted
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(DatabaseCollector())
    return generate_latest(counted) + generate_latest(scraped)


class _Exposition:
    """A registry-like object for prometheus-client's own HTTP server (worker exporter)."""

    def collect(self):
        if multiprocess():
            from prometheus_client import multiprocess as mp

            counted = CollectorRegistry()
            mp.MultiProcessCollector(counted)
        else:
            from prometheus_client import REGISTRY as counted
        yield from counted.collect()
        yield from DatabaseCollector().collect()


def metrics_view(request):
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponseNotFound()
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def start_worker_exporter() -> None:
    """A Celery worker's own /metrics on METRICS_WORKER_PORT (worker_ready signal)."""
    port = getattr(settings, "METRICS_WORKER_PORT", 0)
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=settings.METRICS_WORKER_BIND, registry=_Exposition())
