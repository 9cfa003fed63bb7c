"""API key management endpoints and the create_organization command."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.crypto import decrypt_secret, lookup_hash
from accounts.models import ApiKey, Membership, Organization, User
from tests.factories.accounts import DEFAULT_PASSWORD, MembershipFactory, UserFactory
from tests.factories.orgs import audit_actions

pytestmark = pytest.mark.django_db
URL = "/api/v1/api-keys"


def user_client(user, org=None) -> APIClient:
    token = APIClient().post("/api/v1/auth/token", {"username": user.email, "password": DEFAULT_PASSWORD}, format="json").json()["access_token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", **({"HTTP_X_ORGANIZATION": org.slug} if org else {}))
    return client


def test_create_shows_secret_once_and_it_works(client_a, org):
    response = client_a.post(URL, {"name": "backend"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("sk_") and len(body["secret"]) >= 35 and body["key_id"].startswith("key_")
    stored = ApiKey.objects.get(key_id=body["key_id"])
    assert stored.secret_hash == lookup_hash(body["secret"]) and decrypt_secret(stored.secret_encrypted) == body["secret"]
    listed = client_a.get(URL).json()
    assert {k["key_id"] for k in listed["results"]} == {org.key_id, body["key_id"]}
    assert all("secret" not in k for k in listed["results"])
    assert APIClient().get("/api/v1/customers", HTTP_X_API_KEY=body["secret"]).status_code == 200
    assert "api_key.created" in audit_actions()


def test_owner_user_manages_keys(org):
    client = user_client(org.owner)
    created = client.post(URL, {"name": "from dashboard"}, format="json")
    assert created.status_code == 201
    assert ApiKey.objects.get(key_id=created.json()["key_id"]).created_by == org.owner
    revoked = client.post(f"{URL}/{created.json()['key_id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_non_owner_members_cannot_manage_keys(org, role):
    member = UserFactory()
    MembershipFactory(organization=org.organization, user=member, role=role)
    client = user_client(member)
    assert client.post(URL, {"name": "x"}, format="json").status_code == 403
    assert client.get(URL).status_code == 403
    assert client.post(f"{URL}/{org.key_id}/revoke").status_code == 403


def test_revoke_then_again_is_409(client_a, org):
    second = client_a.post(URL, {"name": "second"}, format="json").json()
    response = client_a.post(f"{URL}/{second['key_id']}/revoke")
    assert response.status_code == 200
    assert APIClient().get("/api/v1/customers", HTTP_X_API_KEY=second["secret"]).status_code == 401
    again = client_a.post(f"{URL}/{second['key_id']}/revoke")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    assert "api_key.revoked" in audit_actions()


def test_a_key_may_revoke_itself(client_a, org):
    assert client_a.post(f"{URL}/{org.key_id}/revoke").status_code == 200
    assert client_a.get(URL).status_code == 401


def test_create_organization_command_with_new_owner():
    out = StringIO()
    call_command("create_organization", "Acme Payments", "--owner", "Founder@Acme.test", stdout=out)
    text = out.getvalue()
    key_id = re.search(r"^Key id: (key_\w+)$", text, re.M).group(1)
    secret = re.search(r"^Secret: (sk_\S+)$", text, re.M).group(1)
    assert text.count("Secret: ") == 1 and "changepassword" in text
    org = Organization.objects.get(name="Acme Payments")
    owner = User.objects.get(email="founder@acme.test")
    assert not owner.has_usable_password()
    assert Membership.objects.get(organization=org, user=owner).role == "owner"
    assert ApiKey.objects.get(key_id=key_id).organization == org
    response = APIClient().put("/api/v1/customers/first", {"name": "First"}, format="json", HTTP_X_API_KEY=secret)
    assert response.status_code == 201


def test_create_organization_command_with_existing_owner_and_same_name():
    existing = UserFactory(email="boss@example.com")
    call_command("create_organization", "Twin", "--owner", "boss@example.com", stdout=StringIO())
    out = StringIO()
    call_command("create_organization", "Twin", "--owner", "boss@example.com", stdout=out)
    assert "existing user" in out.getvalue()
    assert existing.check_password(DEFAULT_PASSWORD)  # untouched
    assert sorted(Organization.objects.filter(name="Twin").values_list("slug", flat=True)) == ["twin", "twin-2"]


def test_create_organization_command_refuses_bad_input():
    with pytest.raises(CommandError):
        call_command("create_organization", "X", "--owner", "not-an-email", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("create_organization", "   ", "--owner", "a@b.test", stdout=StringIO())
