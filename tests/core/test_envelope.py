"""Every error under /api/ is the envelope {"error": {"code", "message", "details"}} with the
status of SPEC 5, never HTML or a traceback; plus the OpenAPI schema and its offline docs."""

import re

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import AccessToken

from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


class _BoomApi(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("secret internals: password=hunter2 at /srv/app.py line 3")


class _EchoTypesApi(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        return Response({key: type(value).__name__ for key, value in request.data.items()} | {"amount_str": str(request.data.get("amount"))})


def _plain_django_boom(request):
    raise RuntimeError("not a DRF view")


def _plain_django_html_404(request):
    return HttpResponse("<html><body>Not here</body></html>", status=404)


urlpatterns = [
    path("api/v1/test/boom", _BoomApi.as_view()),
    path("api/v1/test/echo-types", _EchoTypesApi.as_view()),
    path("api/v1/test/plain-boom", _plain_django_boom),
    path("api/v1/test/plain-404", _plain_django_html_404),
    path("", include("config.urls")),
]


def _envelope(response, status, code):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    text = response.content.decode()
    assert "Traceback" not in text and "<html" not in text.lower()
    return body["error"]


def test_validation_error_names_fields(api_client):
    error = _envelope(api_client.post("/api/v1/auth/signup", {"email": "nope"}, format="json"), 400, "VALIDATION_ERROR")
    assert set(error["details"]["fields"]) >= {"email", "password"}


@pytest.mark.parametrize("body", ['{"email": ', "not json at all", '{"amount": NaN}', '{"a": Infinity}'])
def test_malformed_json_is_400(api_client, body):
    error = _envelope(api_client.generic("POST", "/api/v1/auth/signup", body, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert "JSON" in error["message"]


def test_401_missing_and_bad_token(api_client):
    _envelope(api_client.get("/api/v1/users/me"), 401, "AUTHENTICATION_FAILED")
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    _envelope(api_client.get("/api/v1/users/me"), 401, "AUTHENTICATION_FAILED")


def test_403_authenticated_but_not_allowed(api_client):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(UserFactory())}")
    _envelope(api_client.get("/api/v1/audit-logs"), 403, "PERMISSION_DENIED")


def test_404_unknown_url_and_unknown_object(api_client):
    _envelope(api_client.get("/api/v1/no-such-endpoint"), 404, "NOT_FOUND")
    _envelope(api_client.get("/api/nothing-here-either"), 404, "NOT_FOUND")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(UserFactory())}")
    _envelope(api_client.get("/api/v1/users/987654"), 404, "NOT_FOUND")


def test_405_method_not_allowed(api_client):
    response = api_client.get("/api/v1/auth/signup")
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response["Allow"]


def test_415_unsupported_media_type(api_client):
    response = api_client.generic("POST", "/api/v1/auth/signup", "email=a@example.com", content_type="text/plain")
    _envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_429_with_retry_after(api_client):
    rates = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "1/hour", "money": "1/hour"}}
    with override_settings(REST_FRAMEWORK=rates):
        api_client.post("/api/v1/auth/token", {"username": "a@example.com", "password": "x"})
        response = api_client.post("/api/v1/auth/token", {"username": "b@example.com", "password": "x"})
    error = _envelope(response, 429, "RATE_LIMITED")
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert error["details"]["retry_after"] == int(response["Retry-After"])


@override_settings(ROOT_URLCONF=__name__)
def test_unhandled_exception_in_drf_view_is_a_generic_500():
    client = Client(raise_request_exception=False)
    error = _envelope(client.get("/api/v1/test/boom"), 500, "SERVER_ERROR")
    assert error["message"] == "An internal error occurred."
    assert error["details"] == {}


@override_settings(ROOT_URLCONF=__name__)
def test_unhandled_exception_in_plain_django_view_under_api_is_a_generic_500():
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/test/plain-boom")
    error = _envelope(response, 500, "SERVER_ERROR")
    assert "not a DRF view" not in response.content.decode() and error["message"] == "An internal error occurred."


@override_settings(ROOT_URLCONF=__name__)
def test_html_error_pages_under_api_become_the_envelope():
    _envelope(Client().get("/api/v1/test/plain-404"), 404, "NOT_FOUND")


@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
def test_debug_mode_still_never_shows_a_technical_page():
    client = Client(raise_request_exception=False)
    _envelope(client.get("/api/v1/test/plain-boom"), 500, "SERVER_ERROR")
    _envelope(client.get("/api/v1/test/no-such"), 404, "NOT_FOUND")


@override_settings(ROOT_URLCONF=__name__)
def test_json_numbers_are_parsed_as_decimal(api_client):
    response = api_client.generic(
        "POST", "/api/v1/test/echo-types", '{"amount": 0.1, "count": 3, "s": "1.10", "tiny": 1.00000000000000000001}', content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["amount"] == "Decimal" and body["tiny"] == "Decimal" and body["count"] == "int" and body["s"] == "str"
    assert body["amount_str"] == "0.1"  # exact: no float artefacts


# --- OpenAPI and docs, served without any CDN ---------------------------------------------------------


def test_schema_is_openapi_and_lists_the_auth_endpoints(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path_ in ("/api/v1/auth/signup", "/api/v1/auth/token", "/api/v1/auth/token/refresh", "/api/v1/users/me", "/api/v1/audit-logs/verify"):
        assert path_ in schema["paths"], path_
    signup = schema["paths"]["/api/v1/auth/signup"]["post"]
    assert "examples" in str(signup) or "example" in str(signup)


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_render_with_local_assets_only(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/schema/" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+""", html)
    assert external == [], external
    assert not re.search(r"""["'`]https?://(?!127\.0\.0\.1|localhost|testserver)[^"'`]*\.(?:js|css)""", html)
    # /api/redoc/redoc.standalone.js: the sidecar's ReDoc with its CDN logo inlined (config.docs).
    assets = re.findall(r"""(?:src|href)\s*=\s*["'](/(?:static|api/redoc)/[^"']+)""", html)
    assert assets, "the page should load its assets from /static/ (or the local ReDoc bundle)"
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
