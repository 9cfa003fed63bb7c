"""Organization wallets on the shared /wallets endpoints: open for a customer or as a system wallet,
list and retrieve only the organization's own, and the lifecycle (suspend, activate, close /
DELETE) through the ledger's FSM services with webhooks and audit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import WebhookDelivery
from compliance.models import AuditEvent
from ledger.models import Wallet
from tests.factories.ledger_api import customer_wallet, op_issue, op_transfer, person, post_tx, system_wallet, user_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(client_a):
    assert client_a.put("/api/v1/customers/ada", {"name": "Ada Lovelace"}, format="json").status_code == 201
    return "ada"


def subscribe_all(client):
    assert client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/h", "events": ["*"]}, format="json").status_code == 201


def test_open_a_customer_wallet_and_a_system_wallet(client_a, org, points, ada):
    subscribe_all(client_a)
    response = client_a.post("/api/v1/wallets", {"customer_external_id": "ada", "currency": "points"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["currency"], body["customer_external_id"], body["system"], body["balance"], body["status"]) == ("POINTS", "ada", False, "0", "active")
    assert body["owner_name"] == "Ada Lovelace"
    wallet = Wallet.objects.get(pk=body["id"])
    assert wallet.customer.external_id == "ada" and wallet.customer.organization_id == org.organization.pk

    system = client_a.post("/api/v1/wallets", {"system": True, "currency": "USD", "label": "fees"}, format="json")
    assert system.status_code == 201, system.content
    assert (system.json()["system"], system.json()["label"], system.json()["customer_external_id"], system.json()["balance"]) == (True, "fees", None, "0.00")
    assert Wallet.objects.get(pk=system.json()["id"]).organization_id == org.organization.pk

    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["wallet.created", "wallet.created"]
    assert AuditEvent.objects.filter(action="wallet.open").count() == 2


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"currency": "POINTS"}, 400, "VALIDATION_ERROR"),
        ({"customer_external_id": "ada", "system": True, "currency": "POINTS"}, 400, "VALIDATION_ERROR"),
        ({"customer_external_id": "ada", "currency": "NOPE"}, 400, "VALIDATION_ERROR"),
        ({"customer_external_id": "nobody", "currency": "POINTS"}, 404, "NOT_FOUND"),
        ({"customer_external_id": "ada"}, 400, "VALIDATION_ERROR"),
    ],
)
def test_open_refusals(client_a, points, ada, body, status, code):
    response = client_a.post("/api/v1/wallets", body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not Wallet.objects.filter(customer__external_id="ada").exists()


def test_second_unlabelled_wallet_is_409_and_a_labelled_one_is_fine(client_a, points, ada):
    assert client_a.post("/api/v1/wallets", {"customer_external_id": "ada", "currency": "POINTS"}, format="json").status_code == 201
    again = client_a.post("/api/v1/wallets", {"customer_external_id": "ada", "currency": "POINTS"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "WALLET_EXISTS"
    assert client_a.post("/api/v1/wallets", {"customer_external_id": "ada", "currency": "POINTS", "label": "savings"}, format="json").status_code == 201


def test_another_organizations_custom_asset_and_customer_are_unknown(client_b, other_org, points, ada):
    assert client_b.put("/api/v1/customers/bea", {"name": "Bea"}, format="json").status_code == 201
    assert client_b.post("/api/v1/wallets", {"customer_external_id": "bea", "currency": "POINTS"}, format="json").status_code == 400
    assert client_b.post("/api/v1/wallets", {"customer_external_id": "ada", "currency": "USD"}, format="json").status_code == 404


def test_list_and_retrieve_only_the_organizations_wallets(client_a, client_b, org, other_org, points, usd):
    a1 = customer_wallet(org, points, "3")
    a2 = system_wallet(org, usd, label="treasury")
    b1 = customer_wallet(other_org, usd)
    jane = person()
    listing = client_a.get("/api/v1/wallets").json()
    assert [w["id"] for w in listing["results"]] == [a1.pk, a2.pk] and listing["count"] == 2
    assert [w["id"] for w in client_a.get("/api/v1/wallets?currency=usd").json()["results"]] == [a2.pk]
    assert [w["id"] for w in client_a.get(f"/api/v1/wallets?customer_external_id={a1.customer.external_id}").json()["results"]] == [a1.pk]
    assert client_a.get("/api/v1/wallets?status=frozen").status_code == 400
    assert client_a.get(f"/api/v1/wallets/{a1.pk}").json()["balance"] == "3"
    assert client_a.get(f"/api/v1/wallets/{a1.pk}/entries").json()["results"][0]["balance_after"] == "3"
    assert client_a.get(f"/api/v1/wallets/{a1.pk}/entries?from=2999-01-01").json()["count"] == 0
    assert client_a.get(f"/api/v1/wallets/{a1.pk}/entries?to=2999-01-01").json()["count"] == 1
    assert client_a.get(f"/api/v1/wallets/{a1.pk}/entries?to=not-a-date").status_code == 400
    for wallet_id in (b1.pk, 999_999_999):
        for url in (f"/api/v1/wallets/{wallet_id}", f"/api/v1/wallets/{wallet_id}/entries"):
            assert client_a.get(url).status_code == 404
    assert [w["id"] for w in client_b.get("/api/v1/wallets").json()["results"]] == [b1.pk]
    # a person's own listing is unchanged by all this
    assert user_client(jane).get("/api/v1/wallets").json()["count"] == 0


def test_suspend_activate_close_with_webhooks_and_audit(client_a, org, points, usd):
    subscribe_all(client_a)
    wallet = customer_wallet(org, points, "4")
    other = customer_wallet(org, points)

    suspended = client_a.post(f"/api/v1/wallets/{wallet.pk}/suspend", {"reason": "investigation"}, format="json")
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    again = client_a.post(f"/api/v1/wallets/{wallet.pk}/suspend")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    blocked = post_tx(client_a, {"reference": "while-suspended", "operations": [op_transfer(wallet, other, "1")]})
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "WALLET_INACTIVE"

    assert client_a.post(f"/api/v1/wallets/{wallet.pk}/activate").json()["status"] == "active"
    assert client_a.post(f"/api/v1/wallets/{wallet.pk}/activate").status_code == 409

    not_empty = client_a.post(f"/api/v1/wallets/{wallet.pk}/close")
    assert not_empty.status_code == 409 and not_empty.json()["error"]["code"] == "WALLET_NOT_EMPTY"
    assert post_tx(client_a, {"reference": "empty-it", "operations": [op_transfer(wallet, other, "4")]}).status_code == 201
    closed = client_a.delete(f"/api/v1/wallets/{wallet.pk}")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert Wallet.objects.filter(pk=wallet.pk).exists()  # never deleted
    assert client_a.post(f"/api/v1/wallets/{wallet.pk}/activate").status_code == 409
    assert client_a.post(f"/api/v1/wallets/{wallet.pk}/close").status_code == 409
    assert post_tx(client_a, {"reference": "into-closed", "operations": [op_issue(wallet, "1")]}).json()["error"]["code"] == "WALLET_INACTIVE"

    events = [e for e in WebhookDelivery.objects.order_by("created_at").values_list("event_type", flat=True) if e.startswith("wallet.")]
    assert events == ["wallet.suspended", "wallet.activated", "wallet.closed"]
    actions = list(AuditEvent.objects.filter(action__in=["wallet.suspend", "wallet.activate", "wallet.close"]).order_by("id").values_list("action", flat=True))
    assert actions == ["wallet.suspend", "wallet.activate", "wallet.close"]
    assert AuditEvent.objects.get(action="wallet.suspend").data["reason"] == "investigation"


def test_lifecycle_endpoints_are_404_for_another_organization_and_change_nothing(client_b, org, points):
    wallet = customer_wallet(org, points)
    for url in ("suspend", "activate", "close"):
        response = client_b.post(f"/api/v1/wallets/{wallet.pk}/{url}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert client_b.delete(f"/api/v1/wallets/{wallet.pk}").status_code == 404
    assert Wallet.objects.get(pk=wallet.pk).status == "active"


def test_users_close_their_own_wallets_only_and_cannot_suspend(org, usd):
    jane, john = person(), person()
    from ledger.services import wallet_open

    janes = wallet_open(asset=usd, customer=jane.customer)
    johns = wallet_open(asset=usd, customer=john.customer)
    org_wallet = customer_wallet(org, usd)
    client = user_client(jane)
    assert client.post(f"/api/v1/wallets/{janes.pk}/suspend").status_code == 403
    for wallet in (johns, org_wallet):
        assert client.post(f"/api/v1/wallets/{wallet.pk}/close").status_code == 404
        assert client.delete(f"/api/v1/wallets/{wallet.pk}").status_code == 404
    assert client.delete(f"/api/v1/wallets/{janes.pk}").json()["status"] == "closed"
    assert Wallet.objects.get(pk=johns.pk).status == Wallet.objects.get(pk=org_wallet.pk).status == "active"
    assert Decimal(0) == Wallet.objects.get(pk=janes.pk).balance


def test_staff_with_the_wallet_permission_suspend_and_activate_any_wallet(client_a, org, points, usd):
    from django.contrib.auth.models import Group

    from ledger.services import wallet_open
    from tests.factories.accounts import StaffUserFactory

    subscribe_all(client_a)
    wallet = customer_wallet(org, points, "2")
    jane = person()
    personal = wallet_open(asset=usd, customer=jane.customer)
    officer = StaffUserFactory()
    officer.groups.add(Group.objects.get(name="compliance officer"))
    staff = user_client(officer)

    response = staff.post(f"/api/v1/wallets/{wallet.pk}/suspend", {"reason": "sanctions hit"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "suspended"
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.SUSPENDED
    event = AuditEvent.objects.filter(action="wallet.suspend", target_id=str(wallet.pk)).latest("id")
    assert event.actor == officer and event.data.get("reason") == "sanctions hit"
    assert WebhookDelivery.objects.filter(endpoint__organization=org.organization, event_type="wallet.suspended").count() == 1
    assert staff.post(f"/api/v1/wallets/{wallet.pk}/activate", {"reason": "cleared"}, format="json").json()["status"] == "active"
    # a person's own wallet too (no organization to notify), and a missing one is a 404
    assert staff.post(f"/api/v1/wallets/{personal.pk}/suspend", {"reason": "fraud"}, format="json").status_code == 200
    assert staff.post("/api/v1/wallets/999999999/suspend", {"reason": "x"}, format="json").status_code == 404

    # staff without the permission, and ordinary users, may not
    support = StaffUserFactory()
    support.groups.add(Group.objects.get(name="support"))
    assert user_client(support).post(f"/api/v1/wallets/{wallet.pk}/suspend", {"reason": "x"}, format="json").status_code == 403
    assert user_client(jane).post(f"/api/v1/wallets/{personal.pk}/activate", {"reason": "x"}, format="json").status_code == 403
