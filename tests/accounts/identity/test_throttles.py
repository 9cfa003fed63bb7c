"""Auth throttles per client address and per account, and the money throttle per caller."""

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from accounts.identity.throttles import MoneyThrottle
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


def _rates(auth="3/min", money="2/min"):
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": auth, "money": money}})


def _assert_throttled(response):
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after


def test_signup_throttled_per_client_address(api_client):
    with _rates():
        for n in range(3):
            response = api_client.post("/api/v1/auth/signup", {"email": f"u{n}@example.com", "password": "a-long-unusual-passphrase"}, format="json")
            assert response.status_code == 201
        _assert_throttled(api_client.post("/api/v1/auth/signup", {"email": "u9@example.com", "password": "a-long-unusual-passphrase"}, format="json"))
        # another address is not affected
        other = api_client.post(
            "/api/v1/auth/signup", {"email": "u10@example.com", "password": "a-long-unusual-passphrase"}, format="json", REMOTE_ADDR="198.51.100.7"
        )
        assert other.status_code == 201


def test_token_throttled_per_account_across_addresses(api_client):
    UserFactory(email="jane@example.com")
    with _rates():
        for n in range(3):
            response = api_client.post("/api/v1/auth/token", {"username": "jane@example.com", "password": "bad"}, REMOTE_ADDR=f"203.0.113.{n}")
            assert response.status_code == 401
        # a fourth address, same account (any case): throttled
        _assert_throttled(api_client.post("/api/v1/auth/token", {"username": "JANE@example.com", "password": "bad"}, REMOTE_ADDR="203.0.113.99"))
        # a different account from a fresh address is fine
        response = api_client.post("/api/v1/auth/token", {"username": "bob@example.com", "password": "bad"}, REMOTE_ADDR="203.0.113.100")
        assert response.status_code == 401


def test_spoofed_forwarded_for_does_not_dodge_the_address_limit(api_client):
    with _rates():
        for n in range(3):
            api_client.post("/api/v1/auth/token", {"username": f"x{n}@example.com", "password": "bad"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        _assert_throttled(api_client.post("/api/v1/auth/token", {"username": "x9@example.com", "password": "bad"}, HTTP_X_FORWARDED_FOR="10.0.0.9"))


def test_default_test_rates_do_not_throttle(api_client):
    for n in range(30):
        assert api_client.post("/api/v1/auth/token", {"username": f"y{n}@example.com", "password": "bad"}).status_code == 401


class _MoneyView(APIView):
    throttle_classes = [MoneyThrottle]

    def post(self, request):
        return Response({"ok": True})


def test_money_throttle_is_per_caller():
    alice, bob = UserFactory(), UserFactory()
    factory = APIRequestFactory()
    view = _MoneyView.as_view()

    def call(user):
        request = factory.post("/money", {}, format="json")
        force_authenticate(request, user=user)
        return view(request)

    with _rates():
        assert [call(alice).status_code for _ in range(2)] == [200, 200]
        throttled = call(alice)
        assert throttled.status_code == 429 and throttled["Retry-After"]
        assert call(bob).status_code == 200


def test_money_throttle_keys_organizations_by_id():
    class Auth:
        organization_id = 41

    throttle = MoneyThrottle()
    request = APIRequestFactory().post("/money")
    from rest_framework.request import Request

    drf_request = Request(request)
    drf_request._authenticator = None
    drf_request._user, drf_request._auth = UserFactory.build(), Auth()
    assert throttle.get_cache_key(drf_request, None).endswith("org-41")
