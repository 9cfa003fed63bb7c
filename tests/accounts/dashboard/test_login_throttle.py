"""Review 2: the dashboard's login form is an auth endpoint like POST /auth/token: the same
THROTTLE_AUTH limits apply per client address and per account (SPEC 5). Before, the form had
only the per-account lockout, so one address could try a password against any number of accounts
(password spraying) without ever being slowed down."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, override_settings

from accounts.models import User
from tests.factories.accounts import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
LOGIN = "/dashboard/login/"


def _rates(auth="3/min"):
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": auth}})


def test_one_address_spraying_many_accounts_is_throttled():
    users = [UserFactory() for _ in range(5)]
    client = Client()
    with _rates():
        for user in users[:3]:
            response = client.post(LOGIN, {"username": user.email, "password": "Winter2026!"})
            assert response.status_code == 200  # the form again, with its error
        response = client.post(LOGIN, {"username": users[3].email, "password": "Winter2026!"})
        assert response.status_code == 429
        assert 1 <= int(response["Retry-After"]) <= 60
        assert b"Too many" in response.content
        # refused before the password is checked: nothing counted against the account
        assert User.objects.get(pk=users[3].pk).failed_login_count == 0
        # even the right password waits
        assert client.post(LOGIN, {"username": users[4].email, "password": DEFAULT_PASSWORD}).status_code == 429
        # another address is not affected
        other = Client(REMOTE_ADDR="198.51.100.7")
        response = other.post(LOGIN, {"username": users[4].email, "password": DEFAULT_PASSWORD})
        assert response.status_code == 302


def test_one_account_tried_from_many_addresses_is_throttled():
    user = UserFactory()
    with _rates():
        for n in range(3):
            Client(REMOTE_ADDR=f"198.51.100.{n + 1}").post(LOGIN, {"username": user.email, "password": f"guess-{n}"})
        response = Client(REMOTE_ADDR="198.51.100.99").post(LOGIN, {"username": user.email.upper(), "password": "guess-x"})
        assert response.status_code == 429


def test_the_login_page_itself_is_not_throttled():
    client = Client()
    with _rates(auth="1/min"):
        for _ in range(3):
            assert client.get(LOGIN).status_code == 200


def test_behind_a_proxy_the_form_reads_the_forwarded_address():
    """With NUM_PROXIES set the throttles read X-Forwarded-For; the form's post must carry the
    headers for that (it was a 500), and the lock keys on the forwarded address."""
    user = UserFactory()
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        response = Client(REMOTE_ADDR="10.0.0.5").post(LOGIN, {"username": user.email, "password": DEFAULT_PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.7")
        assert response.status_code == 302
