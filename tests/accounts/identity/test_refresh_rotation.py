"""Refresh-token rotation (issue 12, item 5): a refresh token works once; presenting a rotated one
again is theft, which revokes the whole family (every token descended from that login) and is
audited; logout revokes the family. Other logins of the same user are not touched."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from compliance.models import AuditEvent
from tests.audit_chain import audit_chain_verified
from tests.concurrency import run_in_threads
from tests.factories.accounts import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"
LOGOUT = "/api/v1/auth/logout"


def _login(client: APIClient, email: str) -> dict:
    response = client.post(TOKEN, {"username": email, "password": DEFAULT_PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _refresh(client: APIClient, refresh_token: str):
    return client.post(REFRESH, {"refresh_token": refresh_token}, format="json")


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_a_refresh_token_works_once(api_client):
    UserFactory(email="jane@example.com")
    first = _login(api_client, "jane@example.com")["refresh_token"]
    second = _refresh(api_client, first)
    assert second.status_code == 200, second.content
    assert second.json()["refresh_token"] != first

    again = _refresh(api_client, first)
    assert again.status_code == 401
    assert _error(again)["code"] == "AUTHENTICATION_FAILED"


def test_reusing_a_rotated_refresh_token_revokes_the_family_and_is_audited(api_client):
    user = UserFactory(email="jane@example.com")
    stolen = _login(api_client, "jane@example.com")["refresh_token"]
    legit = _refresh(api_client, stolen).json()["refresh_token"]  # the owner rotates
    newer = _refresh(api_client, legit).json()["refresh_token"]  # and again

    reused = _refresh(api_client, stolen)  # the thief replays the old one
    assert reused.status_code == 401
    assert _error(reused)["details"]["reason"] == "refresh_token_reused"

    # every token of that family is dead now, the newest included
    assert _refresh(api_client, newer).status_code == 401
    assert _error(_refresh(api_client, newer))["details"]["reason"] == "session_revoked"

    event = AuditEvent.objects.get(action="user.refresh_token_reused")
    assert event.actor_id == user.pk and event.target_id == str(user.pk)
    assert event.data["family"] == RefreshToken(newer, verify=False)["fam"]
    assert stolen not in str(event.data) and newer not in str(event.data)  # never a token in the chain
    assert audit_chain_verified()


def test_theft_in_one_session_leaves_the_users_other_logins_alone(api_client):
    UserFactory(email="jane@example.com")
    phone = _login(api_client, "jane@example.com")["refresh_token"]
    laptop = _login(api_client, "jane@example.com")["refresh_token"]
    _refresh(api_client, phone)
    assert _refresh(api_client, phone).status_code == 401  # reuse: the phone's family is revoked
    assert _refresh(api_client, laptop).status_code == 200


def test_logout_revokes_the_refresh_token_and_its_family(api_client):
    user = UserFactory(email="jane@example.com")
    tokens = _login(api_client, "jane@example.com")
    rotated = _refresh(api_client, tokens["refresh_token"]).json()["refresh_token"]
    other = _login(api_client, "jane@example.com")["refresh_token"]

    response = api_client.post(LOGOUT, {"refresh_token": rotated}, format="json")
    assert response.status_code == 204, response.content
    assert _refresh(api_client, rotated).status_code == 401
    assert _error(_refresh(api_client, rotated))["details"]["reason"] == "session_revoked"
    assert _refresh(api_client, other).status_code == 200  # another login stays

    assert api_client.post(LOGOUT, {"refresh_token": rotated}, format="json").status_code == 204  # idempotent
    assert AuditEvent.objects.filter(action="user.logout", actor=user).count() == 1
    assert not AuditEvent.objects.filter(action="user.refresh_token_reused").exists()


def test_logout_refuses_what_is_not_a_refresh_token(api_client):
    UserFactory(email="jane@example.com")
    tokens = _login(api_client, "jane@example.com")
    for bad in ("garbage", tokens["access_token"]):
        response = api_client.post(LOGOUT, {"refresh_token": bad}, format="json")
        assert response.status_code == 401 and _error(response)["code"] == "AUTHENTICATION_FAILED"
    missing = api_client.post(LOGOUT, {}, format="json")
    assert missing.status_code == 400 and "refresh_token" in _error(missing)["details"]["fields"]


def test_a_refresh_token_from_before_rotation_still_refreshes_once(api_client):
    """Tokens issued before families existed (no `fam` claim) keep working: the first refresh
    adopts them into a family, and from then on they rotate like any other."""
    user = UserFactory(email="jane@example.com")
    legacy = RefreshToken.for_user(user)
    legacy["pwf"] = RefreshToken(_login(api_client, "jane@example.com")["refresh_token"], verify=False)["pwf"]
    first = _refresh(api_client, str(legacy))
    assert first.status_code == 200, first.content
    assert "fam" in RefreshToken(first.json()["refresh_token"], verify=False).payload
    assert _refresh(api_client, str(legacy)).status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_refreshes_of_one_token_rotate_it_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    UserFactory(email="jane@example.com")
    token = _login(APIClient(), "jane@example.com")["refresh_token"]

    results = run_in_threads(4, lambda i: _refresh(APIClient(), token).status_code)
    assert sorted(results) == [200, 401, 401, 401], results
