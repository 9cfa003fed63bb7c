"""Bad input never reaches a 500 (issue 12, items 8-11): deeply nested JSON, bodies over the API
limit, date filters with offsets PostgreSQL cannot store, and organization credentials on the
staff-only audit endpoints. Every answer is the error envelope with the status of SPEC 5."""

import time

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.parsers import MAX_JSON_DEPTH
from ledger.services import wallet_open
from tests.factories.orgs import key_client, make_org_key
from tests.factories.ledger_api import person, platform_asset, user_client

pytestmark = pytest.mark.django_db


def _envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.content.decode()
    return body["error"]


# --- 8: nesting -------------------------------------------------------------------------------------


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_json_is_a_400_for_anonymous_callers(depth):
    response = APIClient().generic("POST", "/api/v1/auth/signup", _nested(depth), content_type="application/json")
    error = _envelope(response, 400, "VALIDATION_ERROR")
    assert "nest" in error["message"].lower()


def test_deeply_nested_objects_are_a_400_for_an_organization():
    org = make_org_key("Nest")
    body = '{"reference": "r", "operations": [], "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"
    response = key_client(org).generic("POST", "/api/v1/transactions", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="nest-1")
    _envelope(response, 400, "VALIDATION_ERROR")


def test_nesting_at_the_cap_still_parses_and_brackets_inside_strings_do_not_count():
    # At the cap the parser hands the view a value (the view then refuses the shape: not the parser).
    ok = '{"email": "' + "[" * 5000 + '", "x": ' + _nested(MAX_JSON_DEPTH - 1) + "}"
    response = APIClient().generic("POST", "/api/v1/auth/signup", ok, content_type="application/json")
    assert response.status_code == 400
    assert "nest" not in response.json()["error"]["message"].lower()
    assert "JSON" not in response.json()["error"]["message"]
    too_deep = '{"x": ' + _nested(MAX_JSON_DEPTH) + "}"
    error = _envelope(APIClient().generic("POST", "/api/v1/auth/signup", too_deep, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert str(MAX_JSON_DEPTH) in error["message"]


# --- 9: body size -----------------------------------------------------------------------------------


def test_the_api_body_limit_is_one_mebibyte():
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 1024 * 1024


@pytest.mark.parametrize("path", ["/api/v1/auth/signup", "/api/v1/auth/token", "/api/v1/transactions"])
def test_a_body_over_the_limit_is_413_in_the_envelope(path):
    body = '{"email": "' + "a" * (1024 * 1024) + '"}'
    response = APIClient().generic("POST", path, body, content_type="application/json")
    error = _envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["limit_bytes"] == 1024 * 1024


def test_a_form_body_over_the_limit_is_413():
    body = "username=" + "a" * (1024 * 1024 + 10) + "&password=x"
    response = APIClient().generic("POST", "/api/v1/auth/token", body, content_type="application/x-www-form-urlencoded")
    _envelope(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_signed_request_over_the_limit_is_413_not_500():
    # The HMAC scheme hashes the raw body while authenticating: that read must not be a 500 either.
    org = make_org_key("Big")
    body = '{"reference": "' + "r" * (1024 * 1024) + '"}'
    header = f"Coffer-HMAC-SHA256 KeyId={org.key_id},Timestamp={int(time.time())},Nonce=nonce-0001,Signature=00"
    response = APIClient().generic("POST", "/api/v1/transactions", body, content_type="application/json", HTTP_AUTHORIZATION=header)
    _envelope(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_body_just_under_the_limit_is_parsed():
    body = '{"email": "' + "a" * (1024 * 1024 - 100) + '"}'
    response = APIClient().generic("POST", "/api/v1/auth/signup", body, content_type="application/json")
    error = _envelope(response, 400, "VALIDATION_ERROR")
    assert "email" in error["details"]["fields"]


# --- 10: date filters -------------------------------------------------------------------------------

BAD_INSTANTS = [
    "2026-01-01T00:00:00-17:40",  # PostgreSQL stores offsets up to 15:59 only
    "2026-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
]


@pytest.fixture
def org_client():
    return key_client(make_org_key("Dates"))


@pytest.mark.parametrize("value", BAD_INSTANTS)
@pytest.mark.parametrize("param", ["from", "to"])
def test_transactions_filter_with_an_impossible_instant_is_400_naming_it(org_client, param, value):
    error = _envelope(org_client.get("/api/v1/transactions", {param: value}), 400, "VALIDATION_ERROR")
    assert param in error["details"]["fields"]


@pytest.mark.parametrize("value", BAD_INSTANTS)
@pytest.mark.parametrize("param", ["created_from", "created_to"])
def test_pay_orders_filter_with_an_impossible_instant_is_400_naming_it(org_client, param, value):
    error = _envelope(org_client.get("/api/v1/pay-orders", {param: value}), 400, "VALIDATION_ERROR")
    assert param in error["details"]["fields"]


@pytest.mark.parametrize("value", BAD_INSTANTS)
@pytest.mark.parametrize("param", ["from", "to"])
def test_wallet_entries_filter_with_an_impossible_instant_is_400_naming_it(param, value):
    user = person()
    wallet = wallet_open(asset=platform_asset("USD"), customer=user.customer)
    error = _envelope(user_client(user).get(f"/api/v1/wallets/{wallet.pk}/entries", {param: value}), 400, "VALIDATION_ERROR")
    assert param in error["details"]["fields"]


def test_the_last_representable_day_as_an_upper_bound_means_everything():
    user = person()
    wallet = wallet_open(asset=platform_asset("USD"), customer=user.customer)
    client = user_client(user)
    for query in ({"to": "9999-12-31"}, {"from": "9999-12-31"}, {"from": "0001-01-01"}, {"to": "0001-01-01"}):
        response = client.get(f"/api/v1/wallets/{wallet.pk}/entries", query)
        assert response.status_code == 200, (query, response.content[:300])


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00-12:00", "2026-01-01T00:00:00+14:00", "2026-01-01T05:30:00+05:30", "2026-01-01"])
def test_real_offsets_still_filter(org_client, value):
    assert org_client.get("/api/v1/transactions", {"from": value}).status_code == 200
    assert org_client.get("/api/v1/pay-orders", {"created_to": value}).status_code == 200


def test_audit_log_date_filter_refuses_an_impossible_instant():
    from tests.factories.accounts import StaffUserFactory

    staff = APIClient()
    staff.force_authenticate(StaffUserFactory())
    error = _envelope(staff.get("/api/v1/audit-logs", {"from": "2026-01-01T00:00:00-17:40"}), 400, "VALIDATION_ERROR")
    assert "from" in error["details"]["fields"]


# --- 11: organization credentials on the audit endpoints ------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/audit-logs", "/api/v1/audit-logs/verify"])
def test_organization_credentials_on_the_audit_log_are_403(org_client, path):
    _envelope(org_client.get(path), 403, "PERMISSION_DENIED")


def test_deeply_nested_json_to_the_anonymous_checkout_page_is_a_400():
    from django.test import Client

    from payorders.services import lifecycle as payorder_services
    from tests.payorders.checkout.test_views import token_from

    merchant = make_org_key("Checkout")
    order = payorder_services.payorder_create(organization=merchant.organization, type="SALE", amount="100.00", currency="USD")
    client = Client()
    token = token_from(client, order)
    response = client.post(f"/pay/{order.public_id}/payment-details", data=_nested(10_000), content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
