"""Which shared service an exception says is unavailable: the database, the cache or the broker.

The API answers such a failure with 503 `SERVICE_UNAVAILABLE` and `Retry-After` (SPEC 5), logs
one line naming the service (the traceback at debug level), and nothing is committed: a money
request runs in one transaction with its idempotency record, so a retry with the same key after
the outage either replays the committed outcome or runs the request afresh.

Only a lost or refused connection counts as an outage. A deadlock, a serialization failure, a
lock or statement timeout are errors of that request (PostgreSQL answered), not of the service.
"""

from __future__ import annotations

from django.conf import settings
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError

# SQLSTATEs of a server that cannot serve: class 08 (connection exception) and these.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}  # admin/crash shutdown, starting up, too many connections


def _database_unavailable(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a requirement
        return False
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    return False


def _cache_unavailable(exc: BaseException) -> bool:
    try:
        import redis
        from django_redis.exceptions import ConnectionInterrupted
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionInterrupted))


def _broker_unavailable(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError

    return isinstance(exc, KombuOperationalError)


def unavailable_service(exc: BaseException) -> str | None:
    """"database", "cache" or "broker" if `exc` (or what it wraps) is that service being out of
    reach, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _database_unavailable(current):
            return "database"
        if isinstance(current, DjangoInterfaceError) and current.__cause__ is None:
            return "database"  # Django's own "connection already closed"
        if isinstance(current, DjangoOperationalError) and current.__cause__ is None and "connection" in str(current).lower():
            return "database"
        if _cache_unavailable(current):
            return "cache"
        if _broker_unavailable(current):
            return "broker"
        current = current.__cause__  # Django's database errors wrap the driver's this way
    return None


def retry_after_seconds() -> int:
    return max(int(getattr(settings, "SERVICE_UNAVAILABLE_RETRY_AFTER", 5)), 1)
