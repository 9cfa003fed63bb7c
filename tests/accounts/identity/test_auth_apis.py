"""Signup, tokens, refresh, users, password change: happy and unhappy paths over HTTP."""

from datetime import timedelta

import pytest
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import Customer, User
from accounts.identity.login import INVALID_CREDENTIALS, login_lock_clear, login_lock_seconds
from accounts.identity.tokens import TOKEN_GRANT_HANDLERS, token_grant_register
from compliance.models import AuditEvent
from tests.audit_chain import audit_chain_verified
from tests.factories.accounts import DEFAULT_PASSWORD, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

SIGNUP = "/api/v1/auth/signup"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"
STRONG = "a-long-unusual-passphrase"
ADDRESS = "127.0.0.1"  # the test client's REMOTE_ADDR


def _token(api_client, email, password=DEFAULT_PASSWORD, **extra):
    return api_client.post(TOKEN, {"username": email, "password": password, **extra}, format="json")


def _error(response):
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# --- signup -------------------------------------------------------------------------------------


def test_signup_creates_user_and_own_customer(api_client):
    response = api_client.post(SIGNUP, {"first_name": "Jane", "last_name": "Doe", "email": " Jane@Example.COM ", "password": STRONG}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"first_name", "last_name", "email"}  # no id: a taken address answers alike (test_login_lockout)
    assert body["email"] == "jane@example.com"
    user = User.objects.get(email=body["email"])
    assert user.check_password(STRONG)
    assert user.password.startswith("md5$") or user.password.startswith("argon2")  # hashed, never plain
    customer = Customer.objects.get(user=user)
    assert customer.kyc_level == Customer.KycLevel.NONE and customer.organization_id is None
    event = AuditEvent.objects.get(action="user.signup")
    assert event.actor_id == user.pk and event.target_id == str(user.pk)
    assert STRONG not in response.content.decode()


def test_signup_form_encoded(api_client):
    response = api_client.post(SIGNUP, {"first_name": "A", "last_name": "B", "email": "form@example.com", "password": STRONG})
    assert response.status_code == 201


@pytest.mark.parametrize("password", ["short", "password123", "12345678901234", "jane.doe@example.com"])
def test_signup_refuses_weak_passwords_naming_the_field(api_client, password):
    response = api_client.post(SIGNUP, {"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com", "password": password}, format="json")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert list(error["details"]["fields"]) == ["password"]
    assert not User.objects.exists() and not Customer.objects.exists()


def test_signup_duplicate_email_creates_nothing_whatever_the_case(api_client):
    """Issue 12 item 7: a taken address is no longer a 400 naming the field (that told anyone who
    has an account); it answers like a new one and creates nothing."""
    UserFactory(email="taken@example.com")
    response = api_client.post(SIGNUP, {"email": "TAKEN@example.com", "password": STRONG}, format="json")
    assert response.status_code == 201
    assert response.json() == {"first_name": "", "last_name": "", "email": "taken@example.com"}
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [({"password": STRONG}, "email"), ({"email": "not-an-email", "password": STRONG}, "email"), ({"email": "x@example.com"}, "password")],
)
def test_signup_missing_or_bad_fields(api_client, payload, field):
    response = api_client.post(SIGNUP, payload, format="json")
    assert response.status_code == 400
    assert field in _error(response)["details"]["fields"]


# --- token ---------------------------------------------------------------------------------------


def test_token_password_grant_json_and_form(api_client):
    user = UserFactory(email="jane@example.com")
    for response in (_token(api_client, "JANE@example.com"), api_client.post(TOKEN, {"username": "jane@example.com", "password": DEFAULT_PASSWORD})):
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
        assert response["Cache-Control"] == "no-store"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    me = api_client.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["id"] == user.pk
    assert AuditEvent.objects.filter(action="user.login", actor=user).count() == 2


def test_token_ignores_a_stale_authorization_header(api_client):
    UserFactory(email="jane@example.com")
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert _token(api_client, "jane@example.com").status_code == 200


def test_wrong_password_and_unknown_email_fail_alike(api_client):
    user = UserFactory(email="jane@example.com")
    wrong = _token(api_client, "jane@example.com", "not-the-password")
    unknown = _token(api_client, "nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert _error(wrong) == _error(unknown)
    assert _error(wrong)["code"] == "AUTHENTICATION_FAILED" and _error(wrong)["message"] == INVALID_CREDENTIALS
    user.refresh_from_db()
    assert user.failed_login_count == 1 and user.locked_until is None
    failures = AuditEvent.objects.filter(action="user.login_failed")
    assert {e.data["reason"] for e in failures} == {"wrong_password", "unknown_email"}
    # the stranger's address is not kept in the immutable chain
    assert all("nobody@example.com" not in str(e.data) for e in failures)


def test_token_requires_username_and_password(api_client):
    response = api_client.post(TOKEN, {"username": "jane@example.com"}, format="json")
    assert response.status_code == 400
    assert list(_error(response)["details"]["fields"]) == ["password"]


def test_unsupported_grant_type(api_client):
    response = api_client.post(TOKEN, {"grant_type": "implicit", "username": "a@example.com", "password": "x"}, format="json")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"] == {"grant_type": ["unsupported_grant_type"]}


def test_grant_handlers_can_be_plugged_in(api_client):
    seen = {}

    def handler(*, data, client_ip):
        seen.update(client_id=data.get("client_id"), client_ip=client_ip)
        return {"access_token": "t", "token_type": "bearer", "expires_in": 60}

    token_grant_register("urn:test", handler)
    try:
        response = api_client.post(TOKEN, {"grant_type": "urn:test", "client_id": "key_1"})
    finally:
        TOKEN_GRANT_HANDLERS.pop("urn:test")
    assert response.status_code == 200 and response.json()["access_token"] == "t"
    assert seen == {"client_id": "key_1", "client_ip": "127.0.0.1"}


def test_inactive_user_gets_no_token(api_client):
    UserFactory(email="gone@example.com", is_active=False)
    response = _token(api_client, "gone@example.com")
    assert response.status_code == 401
    assert "access_token" not in response.json()
    assert _error(response)["code"] == "AUTHENTICATION_FAILED"
    # and a wrong password for them is just a wrong password
    assert _error(_token(api_client, "gone@example.com", "nope"))["message"] == INVALID_CREDENTIALS


@override_settings(LOGIN_LOCK_THRESHOLD=3, LOGIN_LOCK_SECONDS=60)
def test_lockout_after_threshold_doubles_and_resets(api_client):
    """Issue 12 item 7: the lock is per (account, client address) now (the test client's address
    here), no longer `User.locked_until` for everyone; the rest of the behaviour is unchanged."""
    user = UserFactory(email="jane@example.com")
    for _ in range(2):
        assert _error(_token(api_client, "jane@example.com", "bad"))["message"] == INVALID_CREDENTIALS
    third = _token(api_client, "jane@example.com", "bad")
    assert third.status_code == 401 and "temporarily locked" in _error(third)["message"]
    user.refresh_from_db()
    assert user.failed_login_count == 3
    assert 55 < login_lock_seconds(email="jane@example.com", client_ip=ADDRESS) <= 60
    assert AuditEvent.objects.filter(action="user.locked", actor=user).count() == 1

    # even the right password is refused while locked, and the attempt is not counted
    locked = _token(api_client, "jane@example.com")
    assert locked.status_code == 401 and "temporarily locked" in _error(locked)["message"]
    user.refresh_from_db()
    assert user.failed_login_count == 3

    # the lock runs out; one more failure locks for twice as long
    login_lock_clear(email="jane@example.com", client_ip=ADDRESS, counter=False)
    assert "temporarily locked" in _error(_token(api_client, "jane@example.com", "bad"))["message"]
    assert 115 < login_lock_seconds(email="jane@example.com", client_ip=ADDRESS) <= 120

    # after it runs out, the right password works and resets the counter
    login_lock_clear(email="jane@example.com", client_ip=ADDRESS, counter=False)
    assert _token(api_client, "jane@example.com").status_code == 200
    user.refresh_from_db()
    assert user.failed_login_count == 0 and user.locked_until is None
    assert login_lock_seconds(email="jane@example.com", client_ip=ADDRESS) == 0
    assert audit_chain_verified()["valid"]


@override_settings(LOGIN_LOCK_THRESHOLD=2, LOGIN_LOCK_SECONDS=1000)
def test_lock_is_capped_at_an_hour(api_client):
    UserFactory(email="jane@example.com")
    seconds = []
    for attempt in range(4):  # failures 2, 3, 4 lock for 1000 s, 2000 s, then the cap (not 4000 s)
        _token(api_client, "jane@example.com", "bad")
        if attempt:
            seconds.append(login_lock_seconds(email="jane@example.com", client_ip=ADDRESS))
            login_lock_clear(email="jane@example.com", client_ip=ADDRESS, counter=False)
    assert [round(s, -2) for s in seconds] == [1000, 2000, 3600]


@override_settings(LOGIN_LOCK_THRESHOLD=3)
def test_unknown_email_locks_like_a_real_account(api_client):
    UserFactory(email="real@example.com")
    real = [_error(_token(api_client, "real@example.com", "bad"))["message"] for _ in range(4)]
    ghost = [_error(_token(api_client, "ghost@example.com", "bad"))["message"] for _ in range(4)]
    assert real == ghost
    assert "temporarily locked" in real[-1]


# --- tokens on protected endpoints and refresh ------------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer ", "Token abc", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"])
def test_bad_tokens_are_401(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert _error(response)["code"] == "AUTHENTICATION_FAILED"


def test_missing_and_expired_tokens_are_401(api_client):
    assert api_client.get("/api/v1/users/me").status_code == 401
    token = AccessToken.for_user(UserFactory())
    token.set_exp(lifetime=-timedelta(seconds=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/v1/users/me")
    assert response.status_code == 401 and _error(response)["code"] == "AUTHENTICATION_FAILED"


def test_refresh_issues_a_working_pair(api_client):
    user = UserFactory(email="jane@example.com")
    tokens = _token(api_client, "jane@example.com").json()
    response = api_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, format="json")
    assert response.status_code == 200
    fresh = response.json()
    assert set(fresh) == {"access_token", "token_type", "expires_in", "refresh_token"}
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh['access_token']}")
    assert api_client.get("/api/v1/users/me").json()["id"] == user.pk


def test_refresh_refuses_garbage_access_tokens_and_expired(api_client):
    user = UserFactory(email="jane@example.com")
    tokens = _token(api_client, "jane@example.com").json()
    expired = RefreshToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    for bad in ("garbage", tokens["access_token"], str(expired)):
        response = api_client.post(REFRESH, {"refresh_token": bad}, format="json")
        assert response.status_code == 401, bad
        assert _error(response)["code"] == "AUTHENTICATION_FAILED"
    missing = api_client.post(REFRESH, {}, format="json")
    assert missing.status_code == 400 and "refresh_token" in _error(missing)["details"]["fields"]


def test_refresh_refused_for_disabled_user(api_client):
    user = UserFactory(email="jane@example.com")
    tokens = _token(api_client, "jane@example.com").json()
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert api_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, format="json").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert api_client.get("/api/v1/users/me").status_code == 401


# --- users -----------------------------------------------------------------------------------------


def _as(api_client, user):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return api_client


def test_users_detail_self_staff_and_others(api_client):
    me, other, staff = UserFactory(), UserFactory(), StaffUserFactory()
    client = _as(api_client, me)
    assert client.get(f"/api/v1/users/{me.pk}").json()["email"] == me.email
    for user_id in (other.pk, staff.pk, 999999):
        response = client.get(f"/api/v1/users/{user_id}")
        assert response.status_code == 404 and _error(response)["code"] == "NOT_FOUND"
    staff_client = _as(api_client, staff)
    assert staff_client.get(f"/api/v1/users/{other.pk}").json()["id"] == other.pk
    assert staff_client.get("/api/v1/users/999999").status_code == 404


def test_users_me_has_no_password(api_client):
    body = _as(api_client, UserFactory()).get("/api/v1/users/me").json()
    assert "password" not in body and set(body) >= {"id", "email", "first_name", "last_name"}


# --- password change -------------------------------------------------------------------------------------


def test_password_change_flow(api_client):
    user = UserFactory(email="jane@example.com")
    old_refresh = _token(api_client, "jane@example.com").json()["refresh_token"]
    client = _as(api_client, user)
    url = "/api/v1/users/me/password"

    wrong = client.post(url, {"current_password": "nope", "new_password": STRONG}, format="json")
    assert wrong.status_code == 400 and list(_error(wrong)["details"]["fields"]) == ["current_password"]
    weak = client.post(url, {"current_password": DEFAULT_PASSWORD, "new_password": "123"}, format="json")
    assert weak.status_code == 400 and list(_error(weak)["details"]["fields"]) == ["new_password"]
    same = client.post(url, {"current_password": DEFAULT_PASSWORD, "new_password": DEFAULT_PASSWORD}, format="json")
    assert same.status_code == 400

    ok = client.post(url, {"current_password": DEFAULT_PASSWORD, "new_password": STRONG}, format="json")
    assert ok.status_code == 204
    client.credentials()
    assert _token(client, "jane@example.com").status_code == 401
    assert _token(client, "jane@example.com", STRONG).status_code == 200
    # refresh tokens from before the change are dead
    stale = client.post(REFRESH, {"refresh_token": old_refresh}, format="json")
    assert stale.status_code == 401 and "password" in _error(stale)["message"]
    assert AuditEvent.objects.filter(action="user.password_changed", actor=user).count() == 1


def test_password_change_needs_authentication(api_client):
    response = api_client.post("/api/v1/users/me/password", {"current_password": "a", "new_password": "b"}, format="json")
    assert response.status_code == 401


def test_a_token_verified_once_is_still_refused_once_it_expires(api_client):
    """Validated tokens are kept per process (accounts.identity.authentication): the expiry is
    checked again on every request, so the kept token stops working when it expires."""
    import time

    token = AccessToken.for_user(UserFactory())
    token.set_exp(lifetime=timedelta(seconds=2))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get("/api/v1/users/me").status_code == 200
    assert api_client.get("/api/v1/users/me").status_code == 200  # from the kept token
    time.sleep(max(0.0, token["exp"] - time.time()) + 0.2)
    response = api_client.get("/api/v1/users/me")
    assert response.status_code == 401 and _error(response)["code"] == "AUTHENTICATION_FAILED"
