"""Login, logout, choosing the organization, roles (403) and tenancy (another organization's
object is a 404, and the refused request changes nothing)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, Membership, WebhookDelivery
from accounts.orgs.services import api_key_create
from compliance.models import AuditEvent
from payorders.models import PayOrder
from tests.factories.dashboard import create_payorder, failed_delivery, logged_in
from tests.factories.accounts import DEFAULT_PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "dashboard:overview", "dashboard:payorders", "dashboard:payorder-create", "dashboard:apikeys", "dashboard:apikey-create",
    "dashboard:webhooks", "dashboard:webhook-create", "dashboard:deliveries", "dashboard:transactions", "dashboard:organizations",
]


@pytest.mark.parametrize("name", PAGES)
def test_every_page_needs_a_login(client: Client, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/login/?next={url}"


def test_landing_page_links_dashboard_docs_redoc_admin(client: Client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    for href in ('href="/dashboard/"', 'href="/api/docs/"', 'href="/api/redoc/"', 'href="/admin/"'):
        assert href in body
    assert "double-entry ledger" in body


def test_login_with_the_form_then_logout(client: Client, alpha):
    page = client.get("/dashboard/login/")
    assert page.status_code == 200 and b'name="username"' in page.content
    response = client.post("/dashboard/login/", {"username": alpha.owner.email.upper(), "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    overview = client.get("/dashboard/")
    assert overview.status_code == 200 and b"Alpha Shop" in overview.content
    assert AuditEvent.objects.filter(action="user.login", actor=alpha.owner).exists()
    # Logging out is a POST (a GET link could be triggered by any page).
    assert client.get("/dashboard/logout/").status_code == 405
    assert client.post("/dashboard/logout/").status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_login_honours_next(client: Client, alpha):
    response = client.post("/dashboard/login/?next=/dashboard/pay-orders/", {"username": alpha.owner.email, "password": DEFAULT_PASSWORD, "next": "/dashboard/pay-orders/"})
    assert response["Location"] == "/dashboard/pay-orders/"
    evil = Client().post("/dashboard/login/", {"username": alpha.owner.email, "password": DEFAULT_PASSWORD, "next": "https://evil.example/"})
    assert evil["Location"] == "/dashboard/"


def test_wrong_password_is_refused_counted_and_locks(client: Client, alpha, settings):
    settings.LOGIN_LOCK_THRESHOLD = 3
    for _ in range(2):
        response = client.post("/dashboard/login/", {"username": alpha.owner.email, "password": "wrong-password"})
        assert response.status_code == 200
        assert b"Invalid email or password." in response.content
    alpha.owner.refresh_from_db()
    assert alpha.owner.failed_login_count == 2
    client.post("/dashboard/login/", {"username": alpha.owner.email, "password": "wrong-password"})
    # Locked now: even the right password is refused, with the lockout message.
    response = client.post("/dashboard/login/", {"username": alpha.owner.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert b"temporarily locked" in response.content
    assert client.get("/dashboard/").status_code == 302


def test_unknown_email_and_blank_fields(client: Client, db):
    response = client.post("/dashboard/login/", {"username": "nobody@example.com", "password": "x"})
    assert b"Invalid email or password." in response.content
    response = client.post("/dashboard/login/", {"username": "", "password": ""})
    assert response.status_code == 200 and b"This field is required." in response.content


def test_a_member_of_several_organizations_picks_one(alpha, beta):
    MembershipFactory(organization=beta.organization, user=alpha.owner, role=Membership.Role.VIEWER)
    client = logged_in(alpha.owner)
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"] == "/dashboard/organizations/"
    page = client.get("/dashboard/organizations/")
    assert b"Alpha Shop" in page.content and b"Beta Store" in page.content
    response = client.post("/dashboard/organizations/", {"organization": beta.organization.pk})
    assert response["Location"] == "/dashboard/"
    overview = client.get("/dashboard/")
    assert b"Beta Store" in overview.content
    # In Beta the user is a viewer: no creating pay orders there.
    assert client.get("/dashboard/pay-orders/new/").status_code == 403
    client.post("/dashboard/organizations/", {"organization": alpha.organization.pk})
    assert client.get("/dashboard/pay-orders/new/").status_code == 200


def test_choosing_an_organization_one_is_not_a_member_of_is_a_404(alpha, beta):
    client = logged_in(alpha.owner)
    response = client.post("/dashboard/organizations/", {"organization": beta.organization.pk})
    assert response.status_code == 404
    assert client.session.get("dashboard_organization_id") is None


def test_a_membership_that_ended_is_not_used(alpha, beta):
    membership = MembershipFactory(organization=beta.organization, user=alpha.owner, role=Membership.Role.OWNER)
    client = logged_in(alpha.owner)
    client.post("/dashboard/organizations/", {"organization": beta.organization.pk})
    membership.delete()
    overview = client.get("/dashboard/")
    assert overview.status_code == 200 and b"Alpha Shop" in overview.content and b"Beta Store" not in overview.content


def test_a_user_without_organization_is_told_so(db):
    client = logged_in(UserFactory())
    assert client.get("/dashboard/")["Location"] == "/dashboard/organizations/"
    page = client.get("/dashboard/organizations/")
    assert page.status_code == 200 and b"not a member of any organization" in page.content


# --- Roles -------------------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_create_or_revoke(alpha, viewer_client):
    api_key, _ = api_key_create(organization=alpha.organization, name="k", actor=alpha.owner)
    for url in ("/dashboard/", "/dashboard/pay-orders/", "/dashboard/transactions/", "/dashboard/webhooks/", "/dashboard/webhooks/deliveries/"):
        assert viewer_client.get(url).status_code == 200, url
    assert b"New pay order" not in viewer_client.get("/dashboard/pay-orders/").content
    assert viewer_client.get("/dashboard/pay-orders/new/").status_code == 403
    response = viewer_client.post("/dashboard/pay-orders/new/", {"type": "SALE", "amount": "10.00", "currency": "USD", "expires_in_minutes": 30})
    assert response.status_code == 403 and b"Viewers can look" in response.content
    assert not PayOrder.objects.exists()
    assert viewer_client.post("/dashboard/api-keys/new/", {"name": "mine"}).status_code == 403
    assert viewer_client.post(f"/dashboard/api-keys/{api_key.key_id}/revoke/").status_code == 403
    assert viewer_client.post("/dashboard/webhooks/new/", {"url": "https://example.com/h", "events": ["*"]}).status_code == 403
    assert ApiKey.objects.filter(organization=alpha.organization).count() == 1
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_only_owners_manage_api_keys(alpha, developer_client):
    api_key, _ = api_key_create(organization=alpha.organization, name="k", actor=alpha.owner)
    assert developer_client.get("/dashboard/api-keys/").status_code == 403
    assert developer_client.post("/dashboard/api-keys/new/", {"name": "dev"}).status_code == 403
    assert developer_client.post(f"/dashboard/api-keys/{api_key.key_id}/revoke/").status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert b"API keys" not in developer_client.get("/dashboard/").content
    # ...while a developer does create pay orders.
    assert developer_client.get("/dashboard/pay-orders/new/").status_code == 200


# --- Tenancy -----------------------------------------------------------------------------------------


def test_another_organizations_pay_order_is_a_404(alpha, beta, owner_client):
    theirs = create_payorder(beta, description="beta secret order")
    response = owner_client.get(f"/dashboard/pay-orders/{theirs.public_id}/")
    assert response.status_code == 404
    assert b"beta secret order" not in response.content
    assert b"beta secret order" not in owner_client.get("/dashboard/pay-orders/").content
    assert owner_client.get("/dashboard/pay-orders/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_another_organizations_api_key_is_a_404_and_stays_active(alpha, beta, owner_client):
    theirs, _ = api_key_create(organization=beta.organization, name="beta key", actor=beta.owner)
    assert owner_client.get(f"/dashboard/api-keys/{theirs.key_id}/revoke/").status_code == 404
    assert owner_client.post(f"/dashboard/api-keys/{theirs.key_id}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert theirs.key_id.encode() not in owner_client.get("/dashboard/api-keys/").content


def test_another_organizations_webhook_delivery_is_a_404_and_not_redelivered(alpha, beta, owner_client):
    delivery = failed_delivery(beta, url="http://127.0.0.1:9/beta-hook")
    assert owner_client.get(f"/dashboard/webhooks/deliveries/{delivery.pk}/").status_code == 404
    assert owner_client.post(f"/dashboard/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 404
    delivery.refresh_from_db()
    from core.models import OutboxMessage

    assert delivery.status == WebhookDelivery.Status.FAILED  # not redelivered: no second outbox message queued
    assert OutboxMessage.objects.filter(topic="webhook.deliver", payload__delivery_id=str(delivery.pk)).count() == 1
    assert owner_client.post(f"/dashboard/webhooks/{delivery.endpoint_id}/disable/").status_code == 404
    delivery.endpoint.refresh_from_db()
    assert delivery.endpoint.is_enabled
    listing = owner_client.get("/dashboard/webhooks/deliveries/").content + owner_client.get("/dashboard/webhooks/").content
    assert b"beta-hook" not in listing
    # The owner of Beta does see and redeliver it.
    beta_client = logged_in(beta.owner)
    assert beta_client.get(f"/dashboard/webhooks/deliveries/{delivery.pk}/").status_code == 200
    assert beta_client.post(f"/dashboard/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
