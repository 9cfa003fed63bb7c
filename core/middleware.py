"""Keeps /api/ free of HTML: Django's own 404/500 pages (URL not found, unhandled errors outside
DRF, DEBUG's technical pages) are replaced by the JSON error envelope.

It also answers a body over the API limit (`DATA_UPLOAD_MAX_MEMORY_SIZE`, 1 MiB) with 413
`PAYLOAD_TOO_LARGE` before anything reads it: a declared Content-Length over the limit is refused
at once; a body that turns out longer when read (`RequestDataTooBig`, `core.errors.PayloadTooLarge`)
is refused where it is read."""

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from core.errors import PayloadTooLarge
from core.exceptions import coffer_error_response_body, error_body, service_unavailable_response

logger = logging.getLogger("coffer.api")

_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _declared_body_too_large(request) -> PayloadTooLarge | None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None  # Django reads a malformed length as no body
    return PayloadTooLarge(limit_bytes=limit) if limit is not None and declared > limit else None


def _coffer_json(error) -> JsonResponse:
    response = JsonResponse(coffer_error_response_body(error), status=error.status)
    for header, value in error.headers.items():
        response[header] = value
    return response


class ApiErrorEnvelopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_api(request):
            too_large = _declared_body_too_large(request)
            if too_large is not None:
                return _coffer_json(too_large)
        response = self.get_response(request)
        if not _is_api(request) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            try:
                body = json.loads(response.content)
            except (ValueError, AttributeError):
                body = None
            if isinstance(body, dict) and "error" in body:
                return response
        status = response.status_code
        code = _STATUS_CODES.get(status, "SERVER_ERROR" if status >= 500 else "VALIDATION_ERROR")
        message = "Not found." if status == 404 else ("An internal error occurred." if status >= 500 else response.reason_phrase)
        replaced = JsonResponse(error_body(code, message), status=status)
        for header in ("Retry-After", "Allow", "WWW-Authenticate"):
            if header in response:
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request, exception):
        if not _is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return _coffer_json(PayloadTooLarge(limit_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
        outage = service_unavailable_response(exception, request)
        if outage is not None:
            replaced = JsonResponse(outage.data, status=outage.status_code)
            replaced["Retry-After"] = outage["Retry-After"]
            replaced._has_been_logged = True
            return replaced
        logger.exception("Unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return JsonResponse(error_body("SERVER_ERROR", "An internal error occurred."), status=500)
