"""The API documentation's two local fixes (issue 14 item 12).

- `CofferAutoSchema`: an operation's description is the docstring of its view class or of its
  handler method, never one inherited from a mixin or a base class. drf-spectacular's default
  falls back along the MRO, so a developer note on `accounts.tenancy.OrganizationScopedMixin`
  ("... `get_queryset()` ...") became the description of every organization-scoped operation.
  A view without its own docstring has no description; a `@extend_schema(description=...)`
  still wins, as before.
- `redoc_bundle`: the ReDoc script from drf-spectacular-sidecar, served with the one remote URL it
  holds (its attribution logo on cdn.redoc.ly) replaced by an inline image, so the docs page
  loads nothing from a third party (the template in templates/drf_spectacular/redoc.html loads
  this script instead of the sidecar's)."""

from __future__ import annotations

import inspect
from functools import lru_cache

from django.contrib.staticfiles import finders
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.openapi import AutoSchema

REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
REDOC_REMOTE_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# A 1x1 transparent SVG; single quotes only, because the bundle quotes the URL with double quotes.
INLINE_LOGO = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"


def _clean(doc: str | None) -> str:
    return "\n".join(line.rstrip() for line in inspect.cleandoc(doc or "").rstrip().split("\n")) if doc else ""


class CofferAutoSchema(AutoSchema):
    def get_description(self) -> str:  # type: ignore[override]
        handler = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        own_handler_doc = _clean(getattr(getattr(handler, "__func__", handler), "__doc__", None))
        return own_handler_doc or _clean(type(self.view).__dict__.get("__doc__"))


@lru_cache(maxsize=1)
def _redoc_bundle_text() -> str:
    path = finders.find(REDOC_BUNDLE)
    if not path:
        raise Http404("ReDoc bundle not installed (drf-spectacular-sidecar)")
    with open(path, encoding="utf-8") as bundle:
        return bundle.read().replace(REDOC_REMOTE_LOGO, INLINE_LOGO)


@require_GET
def redoc_bundle(request) -> HttpResponse:
    response = HttpResponse(_redoc_bundle_text(), content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    return response
