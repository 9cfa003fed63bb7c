"""Idempotent money-moving requests (SPEC 5 "Idempotency", invariant 6: one request, one effect).

Use it on every endpoint that moves money:

    class DepositCreateApi(APIView):
        @idempotent(endpoint="deposits.create")
        def post(self, request): ...

(function views: put `@idempotent(...)` under `@api_view`). DRF has already authenticated,
checked permissions and throttled the request when the wrapper runs.

Protocol
- Header `Idempotency-Key` (or the seed's `X-Idempotency-Key`): 1-255 printable ASCII
  characters. Missing -> 400 IDEMPOTENCY_KEY_REQUIRED; malformed -> 400 VALIDATION_ERROR.
- The merchant dashboard's refund form carries its key as a form token instead of the header
  (`idempotent_execute(key=..., data=...)`): same scope, endpoint, records and guarantees.
- A key is scoped to the caller (`caller_scope`: the organization for API-key callers, else the
  user) and to the endpoint name, so two callers, or one caller on two endpoints, never collide.
- Fingerprint: SHA-256 over method, path, sorted query parameters and the canonical JSON of the
  parsed body (keys sorted). Decision on numbers: JSON numbers compare by value (`100.5`, `100.50`
  and `1.005e2`... are one number; an int `100` equals `100.0`), strings compare exactly, and a
  number never equals a string (`100.5` != `"100.50"`). A retry is the same client re-sending the
  same request, so it sends the same representation; being strict can only turn a doubtful case
  into a 422, never into a wrong replay.
- Same key, same fingerprint, finished -> the stored status and body, byte for byte, with
  `Idempotency-Replayed: true`. Same key, other fingerprint -> 422 IDEMPOTENCY_KEY_REUSED.
  Same key while the first request runs -> 409 IDEMPOTENCY_KEY_IN_PROGRESS.

Guarantees
- The handler runs inside ONE `transaction.atomic(durable=True)` together with the insert of the
  `IdempotencyRecord` holding its response: money and record commit together or not at all. So a
  crash anywhere before the commit leaves neither; after it, the retry gets the replay.
  Services called from an idempotent handler must therefore not open durable blocks themselves.
- A `CofferError` (or any DRF/Django error that renders as a 4xx) raised by the handler is an
  outcome, not a crash: it is rendered with the error envelope, stored and COMMITTED with whatever
  the handler wrote before raising (e.g. a failed ledger transaction recorded next to
  422 INSUFFICIENT_FUNDS), and replayed like a success. Services are atomic, so their own partial
  work has already rolled back to their savepoint when they raise.
- 5xx responses and any other exception roll the whole block back and store nothing: the retry runs
  the request again.
- Concurrency. The database is the guard: on PostgreSQL the block's first statement calls
  `core_idempotency_claim` (core 0003), which takes `pg_try_advisory_xact_lock(<64 bits of
  SHA-256(scope, endpoint, key)>)` (64 bits rather than `hashtext`'s 32 so unrelated keys
  practically never share a lock) and then looks the key's record up. Not getting the lock means
  the key is running elsewhere -> 409. The lookup is a statement of its own inside a VOLATILE
  function, so its snapshot is taken after the lock was granted: a twin that held the lock has
  committed (a transaction's locks go after its commit is visible) and its record is seen and
  replayed; no request runs twice, in any month. On SQLite every write transaction is IMMEDIATE,
  so writers are serialised already, and a Redis lock (`cache.add`) in front answers a concurrent
  duplicate 409 (IDEMPOTENCY_CACHE_LOCK: "auto" = only where there is no advisory lock, "on",
  "off"). Behind them, UNIQUE (scope, endpoint, key, period): a request that inserts a second
  record of a key in a month loses the insert, everything it did is rolled back and the winner's
  record is replayed. Flushing Redis never allows a double effect.
- Partitions. On PostgreSQL the records are partitioned by month (`period`, the UTC month of the
  record): lookups read the months that can still hold a live record (at most two), and the
  hourly purge drops a month whole once every record in it has expired.
- Records live IDEMPOTENCY_KEY_TTL_HOURS (default 48, never less than 24) and are purged by the
  beat task `core.tasks.purge_idempotency_records`. An expired record no longer counts.
"""

import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import OperationalError, connection, transaction
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django_fsm import TransitionNotAllowed
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.db import gathered_inserts, insert_or_skip, query
from core.errors import (
    AuthenticationFailed,
    CofferError,
    IdempotencyKeyInProgress,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    ValidationFailed,
)
from core.exceptions import api_exception_handler
from core.models import IdempotencyRecord
from core.partitions import is_partitioned, month_start, partitions, upper_bound

logger = logging.getLogger("coffer.idempotency")

HEADER = "Idempotency-Key"
LEGACY_HEADER = "X-Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")
STORED_HEADERS = ("Location",)
MIN_TTL_HOURS = 24

# Refusals the client cures by adding a HEADER (a 2FA code, fresh credentials, waiting out a
# throttle). Headers are not in the fingerprint, so storing these would replay the refusal to the
# corrected retry. Their writes (e.g. a failed-attempt counter) still commit; only the record is
# skipped, and nothing moved money before them (the money path checks them before posting).
_NOT_STORED_CODES = frozenset({"2FA_REQUIRED", "2FA_VERIFICATION_FAILED", "AUTHENTICATION_FAILED", "RATE_LIMITED"})

# Errors that the API renders as a client error: outcomes to store and commit, not crashes.
_CLIENT_ERRORS = (CofferError, APIException, Http404, DjangoPermissionDenied, TransitionNotAllowed)


# --- Who is asking ---------------------------------------------------------------------------------
def caller_scope(request: Request | HttpRequest) -> str:
    """The namespace of a caller's idempotency keys: 'org:<id>' for organization (API-key)
    callers, 'user:<id>' for users. Organization authentication sets `request.organization`, or
    authenticates as a principal (`request.user` / `request.auth`) that has `.organization`."""
    organization = getattr(request, "organization", None)
    user = getattr(request, "user", None)
    if organization is None and user is not None and not isinstance(user, get_user_model()):
        organization = getattr(user, "organization", None)
    if organization is None:
        organization = getattr(getattr(request, "auth", None), "organization", None)
    if organization is not None:
        return f"org:{organization.pk}"
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}"
    raise AuthenticationFailed("Idempotent requests need an authenticated caller.")


def idempotency_key_from(request) -> str:
    raw = request.headers.get(HEADER)
    if raw is None:
        raw = request.headers.get(LEGACY_HEADER)
    if raw is None or raw.strip() == "":
        raise IdempotencyKeyRequired()
    key = raw.strip()
    if not KEY_PATTERN.match(key):
        raise ValidationFailed(
            f"{HEADER} must be 1 to 255 printable ASCII characters.",
            details={"fields": {HEADER: ["Must be 1 to 255 printable ASCII characters."]}},
        )
    return key


# --- What is asked ----------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    if isinstance(value, QueryDict):
        value = {k: v if len(v) != 1 else v[0] for k, v in value.lists()}
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _canonical(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
        if not number.is_finite():
            return json.dumps(str(number)) + "#n"
        if number == 0:
            return "0"
        return format(number.normalize(), "f")
    if isinstance(value, float):  # our parser never produces floats; be exact about what we got
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, UploadedFile):
        return json.dumps({"file": value.name, "sha256": _file_digest(value)}, sort_keys=True)
    return json.dumps(str(value), ensure_ascii=False)  # other exotic values


def _file_digest(upload: UploadedFile) -> str:
    """An uploaded file compares by its content (a retry re-sends the same bytes); the stream is
    put back where it was for the handler."""
    position = upload.tell()
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(position)
    return digest.hexdigest()


def request_fingerprint(*, method: str, path: str, query: Any = None, data: Any = None) -> str:
    parts = [method.upper(), path, _canonical(query or {}), _canonical(data if data is not None else {})]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _lock_digest(scope: str, endpoint: str, key: str) -> bytes:
    return hashlib.sha256(f"{scope}\x00{endpoint}\x00{key}".encode()).digest()


def _advisory_lock_id(scope: str, endpoint: str, key: str) -> int:
    return int.from_bytes(_lock_digest(scope, endpoint, key)[:8], "big", signed=True)


def _cache_lock_key(scope: str, endpoint: str, key: str) -> str:
    return "idem:lock:" + _lock_digest(scope, endpoint, key).hex()


# --- Stored outcomes --------------------------------------------------------------------------------
def ttl_hours() -> int:
    return max(int(getattr(settings, "IDEMPOTENCY_KEY_TTL_HOURS", 48)), MIN_TTL_HOURS)


def _lock_seconds() -> int:
    return int(getattr(settings, "IDEMPOTENCY_LOCK_SECONDS", 60))


def _live_since(now: datetime) -> date:
    """The oldest `period` that can hold an unexpired record: records of earlier months were
    created more than the retention ago (partition pruning reads at most two months)."""
    return month_start(now - timedelta(hours=ttl_hours()))


def idempotency_record_get(*, scope: str, endpoint: str, key: str, now: datetime | None = None) -> IdempotencyRecord | None:
    """The live (unexpired) record for a key, if one is committed."""
    now = now or timezone.now()
    return (
        IdempotencyRecord.objects.filter(scope=scope, endpoint=endpoint, key=key, period__gte=_live_since(now), expires_at__gt=now)
        .order_by("-period").first()
    )


def idempotency_partitions_drop(*, now: datetime | None = None) -> list[str]:
    """Detach and drop the monthly partitions (PostgreSQL) whose records have all expired: the
    month ended more than the retention ago and no record in it is still live (a record kept
    longer under an earlier, longer IDEMPOTENCY_KEY_TTL_HOURS keeps its month). The names dropped."""
    if not is_partitioned(IdempotencyRecord._meta.db_table):
        return []
    now = now or timezone.now()
    table = IdempotencyRecord._meta.db_table
    dropped = []
    for name, bound in partitions(table):
        end = upper_bound(bound)
        if end is None or end > _live_since(now):
            continue
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE expires_at > %s)", [now])
                    if cursor.fetchone()[0]:
                        continue
                    # Every money request inserts into the table: the DETACH's exclusive lock waits
                    # behind them and they queue behind it, so wait briefly and leave the month
                    # for the next hourly run rather than stall the money path.
                    cursor.execute(f"SET LOCAL lock_timeout = {int(settings.IDEMPOTENCY_DROP_LOCK_TIMEOUT_MS)}")
                    cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                    cursor.execute(f"DROP TABLE {name}")
        except OperationalError as exc:
            logger.warning("idempotency: expired partition %s not dropped (%s); the next purge tries again", name, exc)
            continue
        logger.info("idempotency: dropped the expired partition %s", name)
        dropped.append(name)
    return dropped


def idempotency_records_purge(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """Drop the months whose records have all expired (`idempotency_partitions_drop`), then delete
    the remaining expired records in batches; returns how many records the batches deleted."""
    now = now or timezone.now()
    idempotency_partitions_drop(now=now)
    deleted = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=ids, expires_at__lte=now).delete()[0]


def _replay(record: IdempotencyRecord, fingerprint: str) -> HttpResponse:
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            details={"idempotency_key": record.key, "original_request": {"method": record.method, "path": record.path}}
        )
    response = HttpResponse(record.response_body, status=record.response_status, content_type="application/json")
    for name, value in (record.response_headers or {}).items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


class _LostRace(Exception):
    """The record insert hit the unique constraint: another request with this key committed."""


class _ServerError(Exception):
    def __init__(self, response):
        self.response = response


def _render_client_error(exc: Exception, view, request) -> Response | None:
    if not isinstance(exc, _CLIENT_ERRORS):
        return None
    response = api_exception_handler(exc, {"view": view, "request": request})
    if response is None or response.status_code >= 500:
        return None
    return response


def _error_code(response) -> str | None:
    data = getattr(response, "data", None)
    if response.status_code < 400 or not isinstance(data, dict):
        return None
    error = data.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _response_body(response) -> str:
    if isinstance(response, Response):
        return JSONRenderer().render(response.data).decode("utf-8")
    return response.content.decode(response.charset or "utf-8")


def _execute_plain(*, request, view, handler):
    """A request without a key on an endpoint whose body carries its own retry key (an
    organization transaction's `reference`, unique per owner in the ledger): one durable
    transaction, a client error committed with what the handler recorded (a failed transaction),
    a 5xx rolled back."""
    try:
        with transaction.atomic(durable=True), gathered_inserts():
            return _outcome(handler, view, request)
    except _ServerError as exc:
        return exc.response


def _outcome(handler, view, request):
    """Run the handler inside the request's transaction: a client error is an outcome (rendered
    in the envelope, committed with what the handler wrote); a 5xx raises `_ServerError`, which
    rolls the transaction back."""
    try:
        response = handler()
    except Exception as exc:
        response = _render_client_error(exc, view, request)
        if response is None:
            raise
    if response.status_code >= 500:
        raise _ServerError(response)
    return response


def idempotency_key_check(key: object) -> str:
    """A key given by the caller some other way than the header (the dashboard's form token)."""
    if not isinstance(key, str) or not key.strip():
        raise IdempotencyKeyRequired()
    key = key.strip()
    if not KEY_PATTERN.match(key):
        raise ValidationFailed("The idempotency key must be 1 to 255 printable ASCII characters.", details={"fields": {"key": ["Malformed."]}})
    return key


def idempotent_execute(
    *, request, endpoint: str, handler: Callable[[], Any], view=None, key_optional: bool = False, key: str | None = None, data: Any = None
):
    """Run `handler()` at most once per (caller, endpoint, key); see the module docstring. With
    `key_optional`, a request without a key runs once per request (its body's reference is the
    retry key). A server-rendered form passes its own `key` (a token rendered into the form, so a
    double submit carries the same one) and the `data` that make its fingerprint (the fields that
    mean something, not the CSRF token)."""
    if key is None and key_optional and request.headers.get(HEADER) is None and request.headers.get(LEGACY_HEADER) is None:
        return _execute_plain(request=request, view=view, handler=handler)
    key = idempotency_key_check(key) if key is not None else idempotency_key_from(request)
    scope = caller_scope(request)
    if data is None:
        data = request.data if isinstance(request, Request) else request.POST
    query = request.query_params if isinstance(request, Request) else request.GET
    fingerprint = request_fingerprint(method=request.method, path=request.path, query=query, data=data)

    if not _cache_lock_wanted():
        return _execute_guarded(
            request=request, view=view, endpoint=endpoint, handler=handler, scope=scope, key=key, fingerprint=fingerprint
        )
    lock_key = _cache_lock_key(scope, endpoint, key)
    token = uuid.uuid4().hex
    have_cache_lock = False
    try:
        have_cache_lock = bool(cache.add(lock_key, token, timeout=_lock_seconds()))
        cache_ok = True
    except Exception as exc:  # Redis down: the database alone still guards
        logger.warning("idempotency: cache unavailable (%s); relying on the database", exc)
        cache_ok = False
    try:
        if cache_ok and not have_cache_lock:
            record = idempotency_record_get(scope=scope, endpoint=endpoint, key=key)
            if record is None:
                raise IdempotencyKeyInProgress(details={"idempotency_key": key})
            return _replay(record, fingerprint)
        return _execute_guarded(
            request=request, view=view, endpoint=endpoint, handler=handler, scope=scope, key=key, fingerprint=fingerprint
        )
    finally:
        if have_cache_lock:
            try:
                if cache.get(lock_key) == token:
                    cache.delete(lock_key)
            except Exception as exc:
                logger.warning("idempotency: could not release cache lock (%s); it expires by itself", exc)


def _cache_lock_wanted() -> bool:
    """The Redis lock in front of the database (module docstring): "auto" only without PostgreSQL's
    advisory lock, whose claim statement the request runs anyway."""
    mode = str(settings.IDEMPOTENCY_CACHE_LOCK).lower()
    if mode in ("on", "true", "1"):
        return True
    if mode in ("off", "false", "0"):
        return False
    return connection.vendor != "postgresql"


def _claim(*, scope: str, endpoint: str, key: str) -> IdempotencyRecord | None:
    """In the request's transaction: take the key's advisory lock (PostgreSQL; not getting it
    means the key is running elsewhere -> 409) and return its committed record, if any, in ONE
    statement (the lock and the lookup are one round trip on the hot path)."""
    since = _live_since(timezone.now())
    if connection.vendor == "postgresql":
        (record_id,) = query(
            "SELECT core_idempotency_claim(%s, %s, %s, %s, %s)", [_advisory_lock_id(scope, endpoint, key), scope, endpoint, key, since], one=True,
        )
        if record_id == -1:
            raise IdempotencyKeyInProgress(details={"idempotency_key": key})
        return None if record_id is None else IdempotencyRecord.objects.filter(pk=record_id, period__gte=since).first()
    return IdempotencyRecord.objects.filter(scope=scope, endpoint=endpoint, key=key, period__gte=since).order_by("-period").first()


def idempotency_record_store(
    *, scope: str, endpoint: str, key: str, fingerprint: str, method: str, path: str, status: int, body: str, headers: dict,
    with_rows=(),
) -> bool:
    """INSERT the outcome of a request in this month's partition, in one statement with
    `with_rows` (the request's gathered rows); False when the key already has a record this month
    (a lost race: the caller rolls back)."""
    stored_at = timezone.now()
    return insert_or_skip(IdempotencyRecord(
        scope=scope, endpoint=endpoint, key=key, fingerprint=fingerprint, method=method, path=path[:500],
        response_status=status, response_body=body, response_headers=headers, created_at=stored_at,
        expires_at=stored_at + timedelta(hours=ttl_hours()), period=month_start(stored_at),
    ), conflict=("scope", "endpoint", "key", "period"), with_rows=with_rows)


def _execute_guarded(*, request, view, endpoint, handler, scope, key, fingerprint):
    try:
        with transaction.atomic(durable=True), gathered_inserts() as gathered:
            now = timezone.now()
            existing = _claim(scope=scope, endpoint=endpoint, key=key)
            if existing is not None:
                if existing.expires_at > now:
                    return _replay(existing, fingerprint)
                IdempotencyRecord.objects.filter(pk=existing.pk, period=existing.period).delete()  # expired: the key is free again

            response = _outcome(handler, view, request)
            if _error_code(response) in _NOT_STORED_CODES:
                return response
            headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
            stored = idempotency_record_store(
                scope=scope, endpoint=endpoint, key=key, fingerprint=fingerprint, method=request.method, path=request.path,
                status=response.status_code, body=_response_body(response), headers=headers, with_rows=gathered.take(),
            )
            # one statement with the request's gathered rows (its audit event); no savepoint: a
            # lost race is rolled back whole below, those rows with it
            if not stored:
                raise _LostRace()
            return response
    except _ServerError as exc:
        return exc.response
    except _LostRace:
        logger.warning("idempotency: lost the race for %s %s; replaying the winner", endpoint, key)
        record = idempotency_record_get(scope=scope, endpoint=endpoint, key=key)
        if record is None:  # the winner's record expired in between: vanishingly unlikely
            raise IdempotencyKeyInProgress(details={"idempotency_key": key}) from None
        return _replay(record, fingerprint)


def idempotent(*, endpoint: str, key_optional: bool = False):
    """Decorator for an APIView handler method (`def post(self, request, ...)`) or a function
    view taking `request` first. See the module docstring. `key_optional`: for an endpoint whose
    body carries a retry key the database enforces (`POST /transactions`' reference)."""

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if args and isinstance(args[0], (Request, HttpRequest)):
                view, request = None, args[0]
            else:
                view, request = args[0], args[1]
            return idempotent_execute(
                request=request, endpoint=endpoint, handler=lambda: func(*args, **kwargs), view=view, key_optional=key_optional
            )

        wrapper.idempotent_endpoint = endpoint
        return wrapper

    return decorator

