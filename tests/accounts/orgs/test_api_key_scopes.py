"""API-key scopes (issue 12, item 6): a key does only what its scopes allow; new keys get `read`
only unless asked otherwise; managing keys needs an owner or `keys:manage`, and a key never grants
a scope it lacks. The matrix runs every scope against every endpoint an organization key uses."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.orgs.scopes import ALL_SCOPES, DEFAULT_SCOPES, NO_KEY_WRITE_ROUTES, LEGACY_SCOPES, ROUTE_SCOPES
from accounts.orgs.services import api_key_create
from tests.factories.orgs import audit_actions
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

# (method, path, body, the scope it needs). Bodies are minimal: an allowed request may well be a
# 400 or 404; what matters is whether the scope check let it through.
ENDPOINTS = [
    ("get", "/api/v1/customers", None, "read"),
    ("get", "/api/v1/wallets", None, "read"),
    ("get", "/api/v1/transactions", None, "read"),
    ("get", "/api/v1/assets", None, "read"),
    ("get", "/api/v1/pay-orders", None, "read"),
    ("get", "/api/v1/webhook-endpoints", None, "read"),
    ("get", "/api/v1/webhook-deliveries", None, "read"),
    ("post", "/api/v1/fees/quote", {}, "read"),
    ("put", "/api/v1/customers/c-1", {"name": "Ada"}, "customers:write"),
    ("post", "/api/v1/transactions", {}, "ledger:write"),
    ("post", "/api/v1/assets", {}, "ledger:write"),
    ("post", "/api/v1/wallets", {}, "ledger:write"),
    ("post", "/api/v1/wallets/999999/suspend", None, "ledger:write"),
    ("post", "/api/v1/wallets/999999/close", None, "ledger:write"),
    ("delete", "/api/v1/wallets/999999", None, "ledger:write"),
    ("post", "/api/v1/pay-orders", {}, "payorders:write"),
    ("post", "/api/v1/pay-orders/po_missing/cancel", None, "payorders:write"),
    ("post", "/api/v1/pay-orders/po_missing/refund", {}, "payorders:write"),
    ("post", "/api/v1/xpub-keys", {}, "payorders:write"),
    ("post", "/api/v1/webhook-endpoints", {}, "webhooks:write"),
    ("delete", "/api/v1/webhook-endpoints/999999", None, "webhooks:write"),
    ("post", "/api/v1/webhook-endpoints/999999/disable", None, "webhooks:write"),
    ("get", "/api/v1/api-keys", None, "keys:manage"),
    ("post", "/api/v1/api-keys", {"name": "another", "scopes": ["keys:manage"]}, "keys:manage"),
    ("post", "/api/v1/api-keys/key_missing/revoke", None, "keys:manage"),
]
KEY_SCOPE_SETS = [(scope,) for scope in ALL_SCOPES] + [tuple(ALL_SCOPES)]


def _client_with(organization, scopes) -> APIClient:
    _, secret = api_key_create(organization=organization, name="matrix", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    return client


@pytest.mark.parametrize("scopes", KEY_SCOPE_SETS, ids=lambda s: "+".join(s))
def test_scope_by_endpoint_matrix(scopes):
    organization = OrganizationFactory()
    client = _client_with(organization, scopes)
    for method, path, body, needed in ENDPOINTS:
        response = getattr(client, method)(path, body, format="json")
        label = f"{method.upper()} {path} with {scopes}"
        if needed in scopes:
            assert response.status_code != 403, (label, response.content)
            assert response.status_code < 500, (label, response.content)
        else:
            assert response.status_code == 403, (label, response.content)
            error = response.json()["error"]
            assert error["code"] == "PERMISSION_DENIED", label
            assert error["details"] == {"reason": "scope_missing", "required_scope": needed, "key_scopes": list(scopes)}, label


def test_a_read_key_cannot_create_or_revoke_keys(org):
    """The bug: any key had owner rights (IsOrganization let every key through)."""
    reader, reader_secret = api_key_create(organization=org.organization, name="reader")
    assert reader.scopes == ["read"]
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=reader_secret)
    assert client.post("/api/v1/api-keys", {"name": "escalate"}, format="json").status_code == 403
    assert client.post(f"/api/v1/api-keys/{org.key_id}/revoke").status_code == 403
    org.api_key.refresh_from_db()
    assert org.api_key.revoked_at is None
    assert ApiKey.objects.filter(organization=org.organization).count() == 2


def test_new_keys_get_read_only_by_default_and_show_their_scopes(org):
    owner = APIClient()
    owner.force_authenticate(org.owner)
    created = owner.post("/api/v1/api-keys", {"name": "reporting"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["scopes"] == ["read"]
    broad = owner.post("/api/v1/api-keys", {"name": "backend", "scopes": ["payorders:write", "read", "read"]}, format="json")
    assert broad.status_code == 201 and broad.json()["scopes"] == ["read", "payorders:write"]
    listed = {k["name"]: k["scopes"] for k in owner.get("/api/v1/api-keys").json()["results"]}
    assert listed["reporting"] == ["read"] and listed["backend"] == ["read", "payorders:write"]
    unknown = owner.post("/api/v1/api-keys", {"name": "x", "scopes": ["admin"]}, format="json")
    assert unknown.status_code == 400 and "scopes" in unknown.json()["error"]["details"]["fields"]
    empty = owner.post("/api/v1/api-keys", {"name": "x", "scopes": []}, format="json")
    assert empty.status_code == 400


def test_a_key_manager_key_grants_only_scopes_it_has(org):
    manager, secret = api_key_create(organization=org.organization, name="manager", scopes=["keys:manage", "read"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    ok = client.post("/api/v1/api-keys", {"name": "ro", "scopes": ["read"]}, format="json")
    assert ok.status_code == 201, ok.content
    escalate = client.post("/api/v1/api-keys", {"name": "rw", "scopes": ["read", "ledger:write"]}, format="json")
    assert escalate.status_code == 403
    assert escalate.json()["error"]["details"] == {"reason": "scope_not_held", "scopes": ["ledger:write"]}
    assert not ApiKey.objects.filter(name="rw").exists()
    assert client.post(f"/api/v1/api-keys/{ok.json()['key_id']}/revoke").status_code == 200
    assert "api_key.created" in audit_actions() and "api_key.revoked" in audit_actions()


def test_only_owners_among_members_manage_keys(org):
    developer = UserFactory()
    MembershipFactory(organization=org.organization, user=developer, role="developer")
    client = APIClient()
    client.force_authenticate(developer)
    assert client.get("/api/v1/api-keys").status_code == 403
    assert client.post("/api/v1/api-keys", {"name": "dev"}, format="json").status_code == 403


def test_an_oauth_token_carries_its_keys_scopes(org):
    _, secret = api_key_create(organization=org.organization, name="oauth", scopes=["read"])
    key_id = ApiKey.objects.get(name="oauth").key_id
    token = APIClient().post("/api/v1/auth/token", {"grant_type": "client_credentials", "client_id": key_id, "client_secret": secret}, format="json")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access_token']}")
    assert client.get("/api/v1/customers").status_code == 200
    refused = client.put("/api/v1/customers/c-9", {"name": "x"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scope"] == "customers:write"


def test_scopes_are_read_from_the_key_on_every_request(org):
    api_key, secret = api_key_create(organization=org.organization, name="live", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    assert client.put("/api/v1/customers/c-2", {"name": "x"}, format="json").status_code == 403
    ApiKey.objects.filter(pk=api_key.pk).update(scopes=["read", "customers:write"])
    assert client.put("/api/v1/customers/c-2", {"name": "x"}, format="json").status_code == 201


def test_every_api_route_has_a_scope_decision():
    """A new endpoint fails this test until it is given a scope (or declared without key writes), so no
    route is reachable by a key by accident: unknown write routes are refused to keys anyway."""

    def names(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                yield from names(pattern, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/v1/"):
                yield pattern.name

    undecided = {name for name in names(get_resolver()) if name not in ROUTE_SCOPES and name not in NO_KEY_WRITE_ROUTES}
    assert not undecided
    assert set(ROUTE_SCOPES.values()) <= set(ALL_SCOPES)
    assert DEFAULT_SCOPES == ("read",)


def test_existing_keys_are_migrated_to_every_scope_but_key_management(org):
    """Keys made before scopes keep working for what integrations do (read, customers, ledger,
    pay orders, webhooks); managing keys was the hole, so it is not granted (docs/accounts/api-keys.md)."""
    ApiKey.objects.filter(pk=org.api_key.pk).update(scopes=[])
    migration = importlib.import_module("accounts.migrations.0006_apikey_scopes")
    migration.grant_legacy_scopes(django_apps, None)
    org.api_key.refresh_from_db()
    assert org.api_key.scopes == list(LEGACY_SCOPES)
    assert "keys:manage" not in LEGACY_SCOPES and set(LEGACY_SCOPES) == set(ALL_SCOPES) - {"keys:manage"}


def test_a_key_manager_key_revokes_only_keys_within_its_own_scopes(org):
    """Least privilege both ways: a `keys:manage` key neither grants nor takes away more than it
    holds, so a narrow manager key cannot switch off the integration's broader key."""
    _, secret = api_key_create(organization=org.organization, name="manager", scopes=["keys:manage", "read"])
    narrow, _ = api_key_create(organization=org.organization, name="narrow", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    refused = client.post(f"/api/v1/api-keys/{org.key_id}/revoke")  # the full-scope key
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["reason"] == "scope_not_held"
    org.api_key.refresh_from_db()
    assert org.api_key.revoked_at is None
    assert client.post(f"/api/v1/api-keys/{narrow.key_id}/revoke").status_code == 200
