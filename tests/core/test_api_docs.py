"""The API docs (issue 14 item 12): no operation describes itself with the code's own Python
names (a developer docstring leaked from a mixin or base class), and the ReDoc page loads
nothing from another host, in Debian's Chromium."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import rest_framework
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from tests.browser import needs_chromium, page_open

PROJECT_PACKAGES = ("accounts", "compliance", "config", "core", "ledger", "payorders", "wallets")
# Word-like tokens: a call (`name()`), a dotted path, or a snake_case / CamelCase word.
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?")


def _code_names(root: Path) -> set[str]:
    names: set[str] = set()
    for path in root.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
    return names


def _api_names(node) -> set[str]:
    """Every name the API itself uses: properties, parameters, enum values (a model property
    such as `available_balance` is also a response field, and may be named)."""
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("properties", {}))
        if node.get("in") in ("query", "path", "header") and "name" in node:
            names.add(node["name"])
        names |= {v for v in node.get("enum", []) if isinstance(v, str)}
        for value in node.values():
            names |= _api_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _api_names(value)
    return names


def code_identifiers(schema: dict | None = None) -> set[str]:
    """Functions, methods and classes defined by Coffer and by DRF (`get_queryset`,
    `OrganizationScopedMixin`, ...) that are not also names of the API: snake_case or CamelCase
    ones only (`get`, `post`, `list` are ordinary words)."""
    base = Path(settings.BASE_DIR)
    names: set[str] = set()
    for package in PROJECT_PACKAGES:
        names |= _code_names(base / package)
    names |= _code_names(Path(rest_framework.__file__).parent)
    names -= _api_names(schema or SchemaGenerator().get_schema(request=None, public=True))
    return {n for n in names if "_" in n.strip("_") or re.search(r"[a-z][A-Z]", n)}


def leaked_identifiers(description: str, identifiers: set[str]) -> set[str]:
    found = set()
    for token in TOKEN.findall(description):
        bare = token.removesuffix("()").split(".")[-1]
        if bare in identifiers or (token.endswith("()") and bare.lower() == bare and "_" in bare):
            found.add(token)
    return found


@pytest.mark.django_db
def test_the_detector_catches_the_leak_it_is_for():
    identifiers = code_identifiers()
    assert leaked_identifiers("For generic views: the permission, and `get_queryset()` always narrowed", identifiers) == {"get_queryset()"}
    assert leaked_identifiers("Subclasses override get_base_queryset, never OrganizationScopedMixin.", identifiers) == {
        "get_base_queryset", "OrganizationScopedMixin"}
    assert leaked_identifiers("Send `grant_type=password` and the wallet's `available_balance`.", identifiers) == set()


@pytest.mark.django_db
def test_no_operation_description_names_python_code():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    identifiers = code_identifiers(schema)
    leaks = {}
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            operations += 1
            found = leaked_identifiers(operation.get("description", ""), identifiers)
            if found:
                leaks[f"{method.upper()} {path}"] = sorted(found)
    assert operations > 50
    assert not leaks, leaks




@pytest.mark.django_db(transaction=True)
@needs_chromium
def test_redoc_loads_nothing_from_another_host(browser, live_server):
    from playwright.sync_api import expect

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/api/redoc/")
    heading = page.get_by_role("heading", name=re.compile("Coffer API")).first
    # ReDoc renders after the live server generated the whole schema: seconds on a loaded CI box
    expect(heading).to_be_visible(timeout=90_000)
    box = heading.bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0
    attribution = page.get_by_role("link", name="API docs by Redocly")
    expect(attribution).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.screenshot(path="/tmp/api-redoc.png")
    context.close()
    ours = urlsplit(live_server.url).netloc
    foreign = [url for url in requested if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != ours]
    assert not foreign, foreign
    assert any(url.endswith("/api/redoc/redoc.standalone.js") for url in requested)
    assert not errors, errors
