"""OpenAPI pieces shared by the organization endpoints (keys, customers, webhooks)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

from core.openapi import ErrorOutput

ERRORS = {
    400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR"),
    401: OpenApiResponse(ErrorOutput, description="AUTHENTICATION_FAILED"),
    403: OpenApiResponse(ErrorOutput, description="PERMISSION_DENIED (a user who is not an allowed member)"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: no such object in your organization")}
CONFLICT = {409: OpenApiResponse(ErrorOutput, description="INVALID_STATE")}
