"""Renders every error under /api/ as {"error": {"code", "message", "details"}} (SPEC 5).

DRF exceptions, Django's Http404/PermissionDenied, django-fsm's TransitionNotAllowed and our own
`CofferError`s are mapped here; anything else is a 500 with a generic message, and the traceback
goes to the server log only.
"""

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from django_fsm import TransitionNotAllowed
from rest_framework import exceptions as drf
from rest_framework.response import Response

from core.errors import CofferError, PayloadTooLarge, ServiceUnavailable
from core.outages import retry_after_seconds, unavailable_service

logger = logging.getLogger("coffer.api")

_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.NotAuthenticated, "AUTHENTICATION_FAILED"),
    (drf.AuthenticationFailed, "AUTHENTICATION_FAILED"),
    (drf.PermissionDenied, "PERMISSION_DENIED"),
    (drf.NotFound, "NOT_FOUND"),
    (drf.Throttled, "RATE_LIMITED"),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (drf.NotAcceptable, "NOT_ACCEPTABLE"),
    (drf.ParseError, "VALIDATION_ERROR"),
    (drf.ValidationError, "VALIDATION_ERROR"),
]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def coffer_error_response_body(exc: CofferError) -> dict[str, Any]:
    return error_body(exc.code, exc.message, exc.details)


def _flatten_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _flatten_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_flatten_message(value)}"
    return str(detail)


def _drf_response(exc: drf.APIException) -> Response:
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "VALIDATION_ERROR" if exc.status_code < 500 else "SERVER_ERROR")
    headers: dict[str, str] = {}
    details: dict[str, Any] = {}
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        details = {"fields": detail}
        message = "Invalid input: " + _flatten_message(detail)
    elif isinstance(exc, drf.Throttled):
        wait = math.ceil(exc.wait) if exc.wait is not None else 1
        headers["Retry-After"] = str(max(wait, 1))
        details = {"retry_after": max(wait, 1)}
        message = "Too many requests; retry later."
    else:
        message = _flatten_message(exc.detail)
    status = 401 if code == "AUTHENTICATION_FAILED" else exc.status_code
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    return Response(error_body(code, message, details), status=status, headers=headers)


def api_exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, RequestDataTooBig):  # the body was read past the limit (e.g. to check a signature)
        exc = PayloadTooLarge(limit_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, CofferError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, TransitionNotAllowed):
        return Response(error_body("INVALID_STATE", str(exc) or "Transition not allowed."), status=409)
    if isinstance(exc, drf.APIException):
        return _drf_response(exc)
    view = context.get("view")
    outage = service_unavailable_response(exc, context.get("request"))
    if outage is not None:
        return outage
    logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view", exc_info=exc)
    return Response(error_body("SERVER_ERROR", "An internal error occurred."), status=500)


def service_unavailable_response(exc: BaseException, request=None) -> Response | None:
    """503 SERVICE_UNAVAILABLE with Retry-After if `exc` says the database, cache or broker is out
    of reach (core.outages), logged as one line (the traceback at debug level); else None."""
    service = unavailable_service(exc)
    if service is None:
        return None
    where = f"{request.method} {request.path}" if request is not None else "a request"
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    logger.warning("%s unavailable on %s: %s: %s", service, where, type(exc).__name__, first_line)
    logger.debug("%s unavailable on %s", service, where, exc_info=exc)
    error = ServiceUnavailable(service=service, retry_after=retry_after_seconds())
    response = Response(coffer_error_response_body(error), status=error.status, headers=error.headers)
    response._has_been_logged = True  # this line is the log of it: django.request adds none
    return response
