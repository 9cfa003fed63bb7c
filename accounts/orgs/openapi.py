"""OpenAPI pieces shared by the organization endpoints (keys, customers, webhooks)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from accounts.orgs.serializers import OrgErrorOutput

ERRORS = {
    400: OpenApiResponse(OrgErrorOutput, description="VALIDATION_ERROR"),
    401: OpenApiResponse(OrgErrorOutput, description="AUTHENTICATION_FAILED"),
    403: OpenApiResponse(OrgErrorOutput, description="PERMISSION_DENIED (a user who is not an allowed member)"),
}
NOT_FOUND = {404: OpenApiResponse(OrgErrorOutput, description="NOT_FOUND: no such object in your organization")}
CONFLICT = {409: OpenApiResponse(OrgErrorOutput, description="INVALID_STATE")}
ORG_HEADER = OpenApiParameter(
    "X-Organization", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="For a member user's JWT: the organization (id or slug) to act for. Not needed with an API key.",
)


def paginated_example(example: dict) -> dict:
    return {"results": [example], "count": 1, "limit": 20, "offset": 0}
