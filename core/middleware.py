"""Keeps /api/ free of HTML: Django's own 404/500 pages (URL not found, unhandled errors outside
DRF, DEBUG's technical pages) are replaced by the JSON error envelope."""

import json
import logging

from django.http import JsonResponse

from core.exceptions import error_body

logger = logging.getLogger("coffer.api")

_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "VALIDATION_ERROR",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


class ApiErrorEnvelopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
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
        logger.exception("Unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return JsonResponse(error_body("SERVER_ERROR", "An internal error occurred."), status=500)
