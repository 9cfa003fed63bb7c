"""POST/GET /api/v1/assets: custom assets per organization, plus the platform's seeded ones."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from ledger.models import Asset, Wallet
from tests.factories.ledger_api import person, platform_asset, user_client

pytestmark = pytest.mark.django_db


def test_create_a_custom_asset(client_a, org):
    response = client_a.post("/api/v1/assets", {"code": "points", "name": "Loyalty points", "exponent": 0}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["code"], body["name"], body["exponent"], body["kind"], body["custom"]) == ("POINTS", "Loyalty points", 0, "custom", True)
    asset = Asset.objects.get(pk=body["id"])
    assert asset.organization_id == org.organization.pk
    assert Wallet.objects.filter(asset=asset, kind="issuance").exists()  # its issuance account exists from the start
    event = AuditEvent.objects.get(action="asset.create")
    assert event.target_id == str(asset.pk) and event.data["api_key_id"] == org.key_id


def test_list_shows_platform_assets_and_only_the_callers_custom_ones(client_a, client_b):
    platform_asset("USD")
    assert client_a.post("/api/v1/assets", {"code": "POINTS", "name": "A points", "exponent": 0}, format="json").status_code == 201
    assert client_b.post("/api/v1/assets", {"code": "TICKETS", "name": "B tickets", "exponent": 2}, format="json").status_code == 201
    # the same code in another organization is another asset
    assert client_b.post("/api/v1/assets", {"code": "POINTS", "name": "B points", "exponent": 1}, format="json").status_code == 201

    a_codes = {(a["code"], a["name"]) for a in client_a.get("/api/v1/assets?limit=100").json()["results"]}
    assert ("POINTS", "A points") in a_codes and ("USD", "US Dollar") in a_codes
    assert ("TICKETS", "B tickets") not in a_codes and ("POINTS", "B points") not in a_codes
    b_codes = {(a["code"], a["name"]) for a in client_b.get("/api/v1/assets?limit=100").json()["results"]}
    assert ("POINTS", "A points") not in b_codes and ("POINTS", "B points") in b_codes


def test_a_person_sees_the_platform_assets_only_and_cannot_create(client_a):
    platform_asset("USD")
    client_a.post("/api/v1/assets", {"code": "POINTS", "name": "A points", "exponent": 0}, format="json")
    jane = user_client(person())
    listing = jane.get("/api/v1/assets?limit=100").json()
    assert all(not a["custom"] for a in listing["results"]) and "USD" in {a["code"] for a in listing["results"]}
    refused = jane.post("/api/v1/assets", {"code": "MINE", "name": "Mine", "exponent": 0}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert APIClient().get("/api/v1/assets").status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"code": "USD", "name": "Fake dollar", "exponent": 2}, "code"),  # a platform code
        ({"code": "", "name": "x", "exponent": 0}, "code"),
        ({"code": "HAS SPACE", "name": "x", "exponent": 0}, "code"),
        ({"code": "X" * 17, "name": "x", "exponent": 0}, "code"),
        ({"code": "OK", "name": "x", "exponent": 19}, "exponent"),
        ({"code": "OK", "name": "x", "exponent": -1}, "exponent"),
        ({"code": "OK", "name": "x", "exponent": "2.5"}, "exponent"),
        ({"code": "OK", "name": "x"}, "exponent"),
        ({"code": "OK", "exponent": 2}, "name"),
    ],
)
def test_bad_assets_are_400_naming_the_field(client_a, body, field):
    platform_asset("USD")
    response = client_a.post("/api/v1/assets", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"]
    assert not Asset.objects.filter(organization__isnull=False).exists()


def test_duplicate_code_in_the_same_organization_is_400(client_a):
    assert client_a.post("/api/v1/assets", {"code": "POINTS", "name": "Points", "exponent": 0}, format="json").status_code == 201
    again = client_a.post("/api/v1/assets", {"code": "points", "name": "Points again", "exponent": 2}, format="json")
    assert again.status_code == 400
    assert again.json()["error"]["details"]["fields"]["code"]
    assert Asset.objects.filter(code="POINTS").count() == 1
