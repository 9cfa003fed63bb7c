from rest_framework import pagination
from rest_framework.response import Response

from core.errors import ValidationFailed


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """`?limit=&offset=` (limit 20 by default, at most 100) -> {results, count, limit, offset}."""

    default_limit = 20
    max_limit = 100

    def get_paginated_response(self, data):
        return Response({"results": data, "count": self.count, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "count", "limit", "offset"],
            "properties": {
                "results": schema,
                "count": {"type": "integer", "example": 42},
                "limit": {"type": "integer", "example": 20},
                "offset": {"type": "integer", "example": 0},
            },
        }

    def get_schema_operation_parameters(self, view):
        """DRF's two parameters with the bounds this paginator enforces (a 400 outside them)."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_limit, default=self.default_limit)
                parameter["description"] = f"Page size, 1-{self.max_limit} (default {self.default_limit}); larger values are capped."
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update(minimum=0, default=0)
        return parameters

    def _non_negative_int(self, request, name: str, default: int, minimum: int) -> int:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise ValidationFailed(f"'{name}' must be an integer >= {minimum}.", details={name: [f"Must be an integer >= {minimum}."]})
        return value

    def get_limit(self, request):
        return min(self._non_negative_int(request, self.limit_query_param, self.default_limit, 1), self.max_limit)

    def get_offset(self, request):
        return self._non_negative_int(request, self.offset_query_param, 0, 0)
