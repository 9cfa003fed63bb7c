"""Read routing to a streaming replica (issue 15), installed only when DATABASE_REPLICA_URL is set.

Invariants
- Only a lag-tolerant request may read from the replica: a GET or HEAD whose URL name matches
  REPLICA_READ_ROUTES (transaction history, statements, exports, dashboard charts, admin list
  pages; `fnmatch` patterns such as `admin:*_changelist`). Everything else, the money path
  first, reads and writes the primary.
- Who is asking is always read on the primary (PRIMARY_APPS: users, sessions, API keys,
  organizations): a caller created a second ago must not look unknown.
- Read-your-writes. The first write of a request (any `db_for_write`) pins the rest of it to the
  primary. A request that wrote, or used an unsafe method, leaves a marker in the cache for its
  caller (`core.idempotency.caller_scope`) for READ_YOUR_WRITES_SECONDS; a tolerant request of a
  marked caller reads the primary. The marker is one cache write per write request, only when a
  replica is configured.
- The replica serves only while it answers and lags at most REPLICA_MAX_LAG_SECONDS. Lag is
  measured on the replica at most every REPLICA_CHECK_SECONDS per process: 0 when its WAL
  receiver is streaming and it has replayed all it received, else the age of the last replayed
  transaction (`pg_last_xact_replay_timestamp`), so a standby cut off from its primary counts as
  lagging. Otherwise the primary serves, and `coffer_replica_fallbacks_total{reason="lag"|"down"}`
  counts it. The decision is taken once per request, so one response never mixes the two.
- A replica that dies between its check and a query fails that one request (503 from the error
  handler); the next check (within REPLICA_CHECK_SECONDS) routes around it.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.core.signals import request_finished
from django.db import DEFAULT_DB_ALIAS, connections

from core import metrics

logger = logging.getLogger("coffer.routing")

REPLICA = "replica"
PRIMARY_APPS = frozenset({"accounts", "auth", "sessions", "contenttypes"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MARKER = "ryw:{}"


@dataclass
class _RequestRouting:
    request: object = None
    tolerant: bool = False
    wrote: bool = False
    alias: str | None = None  # the read alias chosen for this request (REPLICA or DEFAULT_DB_ALIAS)
    reasons: list = field(default_factory=list)


_state: ContextVar[_RequestRouting | None] = ContextVar("coffer_routing", default=None)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def chosen_alias() -> str | None:
    """The alias this request's tolerant reads went to (None: no tolerant read yet)."""
    state = _state.get()
    return state.alias if state is not None else None


# --- Replica health ------------------------------------------------------------------------------
_LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN (SELECT status FROM pg_stat_wal_receiver) = 'streaming'
                 AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END
"""


@dataclass(frozen=True)
class ReplicaHealth:
    usable: bool
    lag: float | None  # seconds; None when it did not answer
    reason: str  # "ok", "lag" or "down"
    checked: float  # time.monotonic()


_health: ReplicaHealth | None = None
_health_lock = threading.Lock()


def replica_lag() -> float | None:
    """Seconds the replica is behind (see the module docstring), or None if it does not answer."""
    db = connections[REPLICA]
    try:
        with db.cursor() as cursor:
            cursor.execute(_LAG_SQL)
            in_recovery, lag = cursor.fetchone()
    except Exception as exc:  # down, restarting, unreachable: closed, reopened on the next check
        logger.warning("replica unavailable: %s", exc.__class__.__name__)
        try:
            db.close()
        except Exception:  # noqa: BLE001 - a dead connection may refuse to close cleanly
            pass
        return None
    if not in_recovery:  # promoted: it is a primary now, nothing to wait for
        return 0.0
    return float(lag) if lag is not None else float("inf")


def replica_health(*, fresh: bool = False) -> ReplicaHealth:
    """The replica's health, re-measured when older than REPLICA_CHECK_SECONDS (or `fresh`)."""
    global _health
    now = time.monotonic()
    current = _health
    if not fresh and current is not None and now - current.checked < settings.REPLICA_CHECK_SECONDS:
        return current
    with _health_lock:
        current = _health
        if not fresh and current is not None and time.monotonic() - current.checked < settings.REPLICA_CHECK_SECONDS:
            return current
        lag = replica_lag()
        if lag is None:
            current = ReplicaHealth(False, None, "down", time.monotonic())
        elif lag > settings.REPLICA_MAX_LAG_SECONDS:
            current = ReplicaHealth(False, lag, "lag", time.monotonic())
        else:
            current = ReplicaHealth(True, lag, "ok", time.monotonic())
        if lag is not None and lag != float("inf"):
            metrics.REPLICA_LAG.set(lag)
        _health = current
        return current


# --- Who is asking --------------------------------------------------------------------------------
def _caller(request) -> str | None:
    from core.idempotency import caller_scope

    try:
        return caller_scope(request)
    except Exception:  # anonymous
        return None


def _recent_writer(request) -> bool:
    caller = _caller(request)
    if caller is None:
        return False
    try:
        return bool(cache.get(_MARKER.format(caller)))
    except Exception:  # the cache is down: assume a recent write (the primary is always right)
        return True


def _choose(state: _RequestRouting) -> str:
    if _recent_writer(state.request):
        metrics.REPLICA_ROUTED.labels(target="primary", reason="recent_write").inc()
        return DEFAULT_DB_ALIAS
    health = replica_health()
    if not health.usable:
        metrics.REPLICA_FALLBACKS.labels(reason=health.reason).inc()
        metrics.REPLICA_ROUTED.labels(target="primary", reason=health.reason).inc()
        return DEFAULT_DB_ALIAS
    metrics.REPLICA_ROUTED.labels(target="replica", reason="ok").inc()
    return REPLICA


class ReplicaRouter:
    """Django database router (settings.DATABASE_ROUTERS when a replica is configured)."""

    def db_for_read(self, model, **hints):
        state = _state.get()
        if state is None or not state.tolerant or state.wrote or model._meta.app_label in PRIMARY_APPS:
            return DEFAULT_DB_ALIAS
        if state.alias is None:
            state.alias = _choose(state)
        return state.alias

    def db_for_write(self, model, **hints):
        state = _state.get()
        if state is not None:
            state.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # one database, two copies of it

    def allow_migrate(self, db, app_label, **hints):
        return db == DEFAULT_DB_ALIAS


# --- The request ----------------------------------------------------------------------------------
_route_cache: dict[str, bool] = {}


def route_is_tolerant(view_name: str) -> bool:
    tolerant = _route_cache.get(view_name)
    if tolerant is None:
        tolerant = _route_cache[view_name] = any(fnmatch.fnmatchcase(view_name, p) for p in settings.REPLICA_READ_ROUTES)
    return tolerant


class ReplicaRoutingMiddleware:
    """Marks lag-tolerant requests, keeps read-your-writes (module docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        state = _RequestRouting(request=request)
        _state.set(state)
        response = self.get_response(request)
        if state.wrote or request.method not in _SAFE_METHODS:
            caller = _caller(request)
            if caller is not None:
                try:
                    cache.set(_MARKER.format(caller), 1, timeout=settings.READ_YOUR_WRITES_SECONDS)
                except Exception as exc:  # the cache is down: the caller's next reads may lag
                    logger.warning("read-your-writes marker not set: %s", exc.__class__.__name__)
        if not getattr(response, "streaming", False):
            _state.set(None)
        return response  # a streamed export keeps its routing until request_finished

    def process_view(self, request, view_func, view_args, view_kwargs):
        state = _state.get()
        match = request.resolver_match
        if state is not None and match is not None and request.method in ("GET", "HEAD"):
            state.tolerant = route_is_tolerant(match.view_name)
        return None


def _request_finished(**kwargs) -> None:
    _state.set(None)


request_finished.connect(_request_finished, dispatch_uid="coffer-routing-finished")
