"""API keys in the dashboard: the secret is shown once (and works), revoking takes a POST with a
CSRF token after a confirmation page, and lands in the audit chain."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.crypto import lookup_hash
from accounts.models import ApiKey
from compliance.models import AuditEvent
from tests.factories.dashboard import logged_in

pytestmark = pytest.mark.django_db


def _create(client: Client, name: str = "shop backend"):
    response = client.post("/dashboard/api-keys/new/", {"name": name})
    assert response.status_code == 200
    secret = re.search(r'value="(sk_[^"]+)"', response.content.decode()).group(1)
    return response, secret


def test_secret_is_shown_once_and_works(alpha, owner_client, api_client):
    response, secret = _create(owner_client)
    api_key = ApiKey.objects.get(organization=alpha.organization, name="shop backend")
    assert api_key.secret_hash == lookup_hash(secret)
    assert api_key.key_id in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Never again: not on the list, not on the revoke page, not on the overview.
    for url in ("/dashboard/api-keys/", f"/dashboard/api-keys/{api_key.key_id}/revoke/", "/dashboard/"):
        page = owner_client.get(url)
        assert page.status_code == 200
        assert secret not in page.content.decode(), url
    assert api_key.secret_prefix in owner_client.get("/dashboard/api-keys/").content.decode()
    # The secret is a working credential for the organization's API.
    api = api_client.get("/api/v1/pay-orders", HTTP_X_API_KEY=secret)
    assert api.status_code == 200, api.content
    assert AuditEvent.objects.filter(action="api_key.created", actor=alpha.owner).exists()


def test_a_blank_name_is_refused(alpha, owner_client):
    response = owner_client.post("/dashboard/api-keys/new/", {"name": "  "})
    assert response.status_code == 400
    assert "sk_" not in response.content.decode()
    assert not ApiKey.objects.filter(organization=alpha.organization).exists()


def test_revoke_needs_confirmation_post_and_csrf(alpha, api_client):
    client = logged_in(alpha.owner, enforce_csrf_checks=True)
    response, secret = _create_with_csrf(client)
    api_key = ApiKey.objects.get(organization=alpha.organization)
    url = f"/dashboard/api-keys/{api_key.key_id}/revoke/"

    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Yes, revoke this key" in confirm.content
    api_key.refresh_from_db()
    assert api_key.revoked_at is None  # a GET only asks

    assert client.post(url).status_code == 403  # no CSRF token
    api_key.refresh_from_db()
    assert api_key.revoked_at is None

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', confirm.content.decode()).group(1)
    done = client.post(url, {"csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"] == "/dashboard/api-keys/"
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoked", actor=alpha.owner).exists()
    assert b"revoked" in client.get("/dashboard/api-keys/").content
    assert api_client.get("/api/v1/pay-orders", HTTP_X_API_KEY=secret).status_code == 401

    # Revoking twice says so and changes nothing.
    again = client.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert b"already revoked" in again.content
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def _create_with_csrf(client: Client):
    page = client.get("/dashboard/api-keys/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post("/dashboard/api-keys/new/", {"name": "csrf", "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    return response, re.search(r'value="(sk_[^"]+)"', response.content.decode()).group(1)


def test_scopes_are_chosen_on_creation_and_shown(alpha, owner_client, api_client):
    """Least privilege by default: a key made without choosing scopes can only read."""
    form = owner_client.get("/dashboard/api-keys/new/").content.decode()
    assert re.search(r'value="read"[^>]*checked', form) and not re.search(r'value="keys:manage"[^>]*checked', form)
    assert 'value="keys:manage"' in form

    _, reader_secret = _create(owner_client, "reader")
    reader = ApiKey.objects.get(organization=alpha.organization, name="reader")
    assert reader.scopes == ["read"]
    refused = api_client.post("/api/v1/pay-orders", {}, format="json", HTTP_X_API_KEY=reader_secret)
    assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scope"] == "payorders:write"

    response = owner_client.post("/dashboard/api-keys/new/", {"name": "shop", "scopes": ["read", "payorders:write"]})
    assert response.status_code == 200
    assert "payorders:write" in response.content.decode()
    shop = ApiKey.objects.get(organization=alpha.organization, name="shop")
    assert shop.scopes == ["read", "payorders:write"]
    listing = owner_client.get("/dashboard/api-keys/").content.decode()
    assert "payorders:write" in listing and listing.count("read") >= 2

    bad = owner_client.post("/dashboard/api-keys/new/", {"name": "none", "scopes": []})
    assert bad.status_code == 200 and ApiKey.objects.get(name="none").scopes == ["read"]  # nothing chosen: read only
    unknown = owner_client.post("/dashboard/api-keys/new/", {"name": "bad", "scopes": ["root"]})
    assert unknown.status_code == 400 and not ApiKey.objects.filter(name="bad").exists()
