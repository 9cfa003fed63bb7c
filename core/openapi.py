"""The error responses every operation can give, stated once for the whole OpenAPI document.

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

from drf_spectacular.utils import OpenApiParameter, inline_serializer
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
