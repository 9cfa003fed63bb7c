"""The one module of OpenAPI helpers: the error envelope (`ErrorOutput`, `error_example`,
`error_response`), shared header parameters (`ORG_HEADER`, `idempotency_header`), page examples
(`paginated`, `page_of`), and the error responses every operation can give, stated once for the
whole OpenAPI document.

Invariants:
- Every error body is the envelope `{"error": {"code", "message", "details"}}` (SPEC 5); the
  document names it once, as the `Error` component.
- `document_errors` (a drf-spectacular postprocessing hook) adds to each operation the statuses
  the platform's plumbing can answer with, where the operation's own declaration does not already
  describe them: 400 (malformed body or parameter, unknown parameter on a detail endpoint), 401 and
  403 when the operation needs credentials, 404 when its path names an object, 413 and 415 when it
  takes a body, 429 (throttles) and 503 (database, cache or broker unavailable). Operation-specific
  meanings (409, 422, ...) stay with the operation.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "VALIDATION_ERROR"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

_PLUMBING = {
    "400": "VALIDATION_ERROR: a malformed body or parameter (details name the fields), or an unknown query parameter",
    "401": "AUTHENTICATION_FAILED: missing, malformed, expired or revoked credentials",
    "403": "PERMISSION_DENIED: authenticated, but not allowed (role, API-key scope, organization header)",
    "404": "NOT_FOUND: no such object visible to you",
    "413": "PAYLOAD_TOO_LARGE: the body is over the API's limit (1 MiB)",
    "415": "UNSUPPORTED_MEDIA_TYPE: a body in a content type this operation does not read",
    "429": "RATE_LIMITED: throttled; Retry-After says when to try again",
    "503": "SERVICE_UNAVAILABLE: the database, cache or broker is unavailable; Retry-After says when to retry",
}
_METHODS = ("get", "post", "put", "patch", "delete")


# `core.pagination`'s parameters, for views that paginate by hand.
PAGE_LIMIT = OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, OpenApiParameter.QUERY,
                              description="Page size, 1-100 (default 20).")
PAGE_OFFSET = OpenApiParameter("offset", {"type": "integer", "minimum": 0, "default": 0}, OpenApiParameter.QUERY)


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorOutput(serializers.Serializer):
    """The error envelope, for `responses=` (the `Error` component the hook adds is the same shape)."""

    error = ErrorDetailOutput()


def error_example(code: str, message: str, details: dict | None = None) -> dict:
    """The body of an error example: `{"error": {"code", "message", "details"}}`."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status_code: int, description: str, *examples: tuple[str, dict]) -> dict:
    """`{status: OpenApiResponse(ErrorOutput)}` with named `error_example` bodies."""
    return {
        status_code: OpenApiResponse(
            ErrorOutput, description=description,
            examples=[OpenApiExample(name, value=value, status_codes=[str(status_code)], response_only=True) for name, value in examples],
        )
    }


def paginated(*examples: dict) -> dict:
    """A page example as `core.pagination` answers it."""
    return {"results": list(examples), "count": len(examples), "limit": 20, "offset": 0}


ORG_HEADER = OpenApiParameter(
    "X-Organization", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="With a member user's JWT: the organization (id or slug) to act for. Not needed with an API key. "
    "Where a person may also read as themselves (wallets, history), a user's JWT without it reads the person's own.",
)

IDEMPOTENCY_REQUIRED = (
    "1-255 printable characters, unique per request you mean to make once (a UUID). Retrying with the same key "
    "and body replays the first response (header `Idempotency-Replayed: true`); a different body is 422 "
    "IDEMPOTENCY_KEY_REUSED; while the first is running, 409 IDEMPOTENCY_KEY_IN_PROGRESS. `X-Idempotency-Key` "
    "is accepted too. Kept at least 24 hours."
)


def idempotency_header(*, required: bool = True, description: str = IDEMPOTENCY_REQUIRED) -> OpenApiParameter:
    """The `Idempotency-Key` header parameter (`core.idempotency`): required on money requests."""
    return OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=required, description=description)


def page_of(items: serializers.BaseSerializer, name: str) -> serializers.Serializer:
    """The schema of one page of `items` (a `many=True` serializer) as `core.pagination` answers
    it: {results, count, limit, offset}. For views that paginate by hand (drf-spectacular wraps
    only generic list views)."""
    return inline_serializer(name=name, fields={
        "results": items,
        "count": serializers.IntegerField(),
        "limit": serializers.IntegerField(),
        "offset": serializers.IntegerField(),
    })


def _needs_credentials(operation: dict[str, Any], default: list) -> bool:
    security = operation.get("security", default)
    return bool(security) and {} not in security


def document_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry (module docstring)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    default_security = result.get("security", [])
    for path, item in result.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            wanted = ["400", "429", "503"]
            if _needs_credentials(operation, default_security):
                wanted += ["401", "403"]
            if "{" in path:
                wanted.append("404")
            if "requestBody" in operation:
                wanted += ["413", "415"]
            responses = operation.setdefault("responses", {})
            for status in sorted(wanted):
                if status not in responses:
                    responses[status] = {"description": _PLUMBING[status], "content": error}
                elif "content" not in responses[status]:
                    responses[status]["content"] = error
    return result
