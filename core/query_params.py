"""Unknown query parameters on API detail endpoints are a 400 (SPEC 5), once for every endpoint.

Invariants:
* A detail endpoint is a GET (or HEAD) under /api/ whose route has path parameters
  (`/wallets/{wallet_id}`, `/pay-orders/{public_id}`, `/wallets/{wallet_id}/statement`...). Its
  accepted query parameters are exactly the ones its OpenAPI operation declares (pagination,
  filters, `at`, `from`/`to`/`format`...): the schema is the contract, so a parameter is
  accepted where it is documented and nowhere else. Any other one is a 400 VALIDATION_ERROR
  naming it, instead of being silently ignored (`GET /wallets/{id}?at=` used to return the
  current balance as if `at` were honoured).
* Collection endpoints (no path parameters) are untouched: their filters are their own.
* The declared parameters are read from the generated schema once per process (about a second,
  on the first detail request with a query string) and kept. Routes absent from the schema
  (excluded views) are not checked.
"""

from __future__ import annotations

import logging
import re
import threading

from django.http import JsonResponse

from core.exceptions import error_body

logger = logging.getLogger("coffer.api")

_ROUTE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
_lock = threading.Lock()
_declared: dict[str, frozenset[str]] | None = None


def _schema_query_parameters() -> dict[str, frozenset[str]]:
    """{"/api/v1/wallets/{wallet_id}": {"at"}, ...}: the query parameters of each GET operation."""
    global _declared
    if _declared is None:
        with _lock:
            if _declared is None:
                from drf_spectacular.generators import SchemaGenerator

                schema = SchemaGenerator().get_schema(request=None, public=True)
                _declared = {
                    path: frozenset(p["name"] for p in ops["get"].get("parameters", []) if p.get("in") == "query")
                    for path, ops in schema.get("paths", {}).items()
                    if "get" in ops
                }
    return _declared


def declared_query_parameters(route: str) -> frozenset[str] | None:
    """The query parameters the GET operation of a Django `route` declares, or None when the
    route is not in the schema."""
    path = "/" + _ROUTE_PARAM.sub(r"{\1}", route.lstrip("^").rstrip("$"))
    return _schema_query_parameters().get(path)


class DetailQueryParamsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.GET or request.method not in ("GET", "HEAD") or not request.path.startswith("/api/"):
            return None
        if not (view_args or view_kwargs) or getattr(view_func, "cls", None) is None:  # not a DRF detail endpoint
            return None
        match = getattr(request, "resolver_match", None)
        if match is None or not match.route:
            return None
        try:
            allowed = declared_query_parameters(match.route)
        except Exception:  # never turn a schema problem into an outage: log it and let the request through
            logger.exception("could not read the declared query parameters of %s", match.route)
            return None
        if allowed is None:
            return None
        unknown = sorted(set(request.GET) - allowed)
        if not unknown:
            return None
        names = ", ".join(unknown)
        return JsonResponse(
            error_body(
                "VALIDATION_ERROR",
                f"Unknown query parameter(s): {names}.",
                {"unknown_parameters": unknown, "allowed_parameters": sorted(allowed)},
            ),
            status=400,
        )
