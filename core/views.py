"""Liveness and readiness probes (outside /api/v1/)."""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger("coffer.health")


def health(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set("coffer:ready-probe", "1", timeout=5)
    if cache.get("coffer:ready-probe") != "1":
        raise RuntimeError("cache did not return what was written")


def _check_broker() -> None:
    from config.celery import app

    # The URL is read from settings on every probe (the Celery app caches its config), and the
    # connection is tried twice with no back-off so a dead broker answers within the timeout.
    with app.connection_for_write(url=settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def ready(request):
    checks = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # report, never raise: this is a probe
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = "down"
    down = [name for name, state in results.items() if state != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": results}
    if down:
        body["down"] = down
    return JsonResponse(body, status=200 if not down else 503)
