"""Request ids, structured logs and the per-request HTTP bookkeeping (issue 15, SPEC 5).

- Every response carries `X-Request-Id`: the caller's own when it sent a valid one (1-128
  characters of letters, digits and `._:-`, starting with a letter or digit; anything else is
  replaced, never echoed), else a new random one. Logs written while serving the request (JSON,
  `JsonFormatter`) and Celery tasks it enqueues (a message header, restored in the worker) carry it.
- Successful responses carry the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
  `RateLimit-Policy: "money";q=100;w=1` and `RateLimit: "money";r=99;t=1` for each throttle the
  request was counted by (`core.ratelimit.hit` reports them).
- Responses of money endpoints (handlers wrapped by `core.idempotency.idempotent`) advertise how
  long a key is kept: `Idempotency-Retention: <seconds>`; replays and key conflicts are counted.
- HTTP requests and latency by route (the URL name) and status go to `core.metrics`.

Cost per request: a contextvar, a clock read, a dict lookup per view, three header writes and two
metric updates (bench/request_cpu.py measures it with the rest).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from contextvars import ContextVar

from django.core.signals import request_finished

from core import metrics, ratelimit

HEADER = "X-Request-Id"
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_CELERY_HEADER = "coffer_request_id"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_request_id: ContextVar[str] = ContextVar("coffer_request_id", default="")


def current_request_id() -> str:
    return _request_id.get()


def valid_request_id(value: str | None) -> bool:
    return bool(value) and _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


# --- The middleware ---------------------------------------------------------------------------------
_idempotent_views: dict[tuple, bool] = {}


def _is_idempotent(view_func, method: str) -> bool:
    key = (view_func, method)
    found = _idempotent_views.get(key)
    if found is None:
        view_class = getattr(view_func, "view_class", None)
        handler = getattr(view_class, method.lower(), None) if view_class is not None else view_func
        found = _idempotent_views[key] = getattr(handler, "idempotent_endpoint", None) is not None
    return found


def _rate_limit_fields(verdicts: list) -> tuple[str, str] | None:
    shown = [v for v in verdicts if v.limit]
    if not shown:
        return None
    policy = ", ".join(f'"{v.policy}";q={v.limit};w={max(int(math.ceil(v.window)), 1)}' for v in shown)
    state = ", ".join(f'"{v.policy}";r={v.remaining};t={max(int(math.ceil(v.reset)), 0)}' for v in shown)
    return policy, state


def _error_code(response) -> str:
    try:
        return json.loads(response.content)["error"]["code"]
    except Exception:  # noqa: BLE001 - not our envelope
        return ""


class RequestMiddleware:
    """First in MIDDLEWARE: sees every response, the error envelope's included."""

    def __init__(self, get_response):
        from core.idempotency import ttl_hours

        self.get_response = get_response
        self.retention = str(ttl_hours() * 3600)

    def __call__(self, request):
        started = time.perf_counter()
        incoming = request.META.get("HTTP_X_REQUEST_ID")
        request_id = incoming if valid_request_id(incoming) else new_request_id()
        request.request_id = request_id
        _request_id.set(request_id)  # until request_finished: Django logs 4xx/5xx after the middleware
        verdicts = ratelimit.collect_verdicts()
        request._coffer_idempotent = False
        response = self.get_response(request)
        response[HEADER] = request_id
        status = response.status_code
        match = request.resolver_match
        route = match.view_name if match is not None else "unmatched"
        if status < 400 and verdicts:
            fields = _rate_limit_fields(verdicts)
            if fields is not None:
                response["RateLimit-Policy"], response["RateLimit"] = fields
        if request._coffer_idempotent:
            response["Idempotency-Retention"] = self.retention
            if response.get("Idempotency-Replayed") == "true":
                metrics.IDEMPOTENCY_REPLAYS.labels(route=route).inc()
            elif status in (409, 422):
                code = _error_code(response)
                if code.startswith("IDEMPOTENCY_KEY"):
                    metrics.IDEMPOTENCY_CONFLICTS.labels(route=route, code=code).inc()
        method = request.method if request.method in _METHODS else "other"
        status_label = str(status)
        metrics.HTTP_REQUESTS.labels(method, route, status_label).inc()
        metrics.HTTP_LATENCY.labels(method, route, status_label).observe(time.perf_counter() - started)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            request._coffer_idempotent = _is_idempotent(view_func, request.method)
        return None


def _request_finished(**kwargs) -> None:
    _request_id.set("")


request_finished.connect(_request_finished, dispatch_uid="coffer-request-id-finished")


# --- Logs -------------------------------------------------------------------------------------------------
class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`record.request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and the
    exception when there is one. Runs after the redaction filter: message and traceback are the
    redacted ones."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get() or None,
        }
        task_id = getattr(record, "task_id", None)
        if task_id:
            payload["task_id"] = task_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, ensure_ascii=False, default=str)


# --- Celery -------------------------------------------------------------------------------------------------
def _before_publish(headers=None, **kwargs) -> None:
    request_id = _request_id.get()
    if request_id and headers is not None:
        headers.setdefault(_CELERY_HEADER, request_id)


_task_tokens: dict[str, object] = {}


def _task_prerun(task_id=None, task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    carried = getattr(request, _CELERY_HEADER, None) or (getattr(request, "headers", None) or {}).get(_CELERY_HEADER)
    if not valid_request_id(carried):
        carried = _request_id.get() or new_request_id()  # eager tasks keep the request's id
    _task_tokens[task_id] = _request_id.set(carried)


def _task_postrun(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _request_id.reset(token)
        except ValueError:  # set in another context
            _request_id.set("")


def install() -> None:
    """Celery signal receivers (CoreConfig.ready)."""
    from celery import signals

    signals.before_task_publish.connect(_before_publish, dispatch_uid="coffer-request-id-publish", weak=False)
    signals.task_prerun.connect(_task_prerun, dispatch_uid="coffer-request-id-prerun", weak=False)
    signals.task_postrun.connect(_task_postrun, dispatch_uid="coffer-request-id-postrun", weak=False)
    signals.worker_ready.connect(lambda **kw: metrics.start_worker_exporter(), dispatch_uid="coffer-metrics-worker", weak=False)
