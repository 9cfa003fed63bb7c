"""GET /audit-logs and /audit-logs/verify (staff, auditors, compliance officers), the admin's
read-only audit log with its verify view, and staff actions landing in the chain."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import Organization
from compliance.models import AuditEvent
from compliance.audit import audit_chain_advance, audit_record, audit_verify
from tests.factories.accounts import OrganizationFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


def _client_for(api_client, user):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return api_client


def _in_group(name):
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def test_staff_groups_are_seeded_by_migration():
    names = set(Group.objects.values_list("name", flat=True))
    assert {"compliance officer", "auditor", "support"} <= names
    assert Group.objects.get(name="auditor").permissions.filter(codename="view_auditevent").exists()


@pytest.mark.parametrize("url", ["/api/v1/audit-logs", "/api/v1/audit-logs/verify"])
def test_audit_endpoints_permissions(api_client, url):
    audit_record(action="something")
    assert api_client.get(url).status_code == 401
    assert api_client.get(url).json()["error"]["code"] == "AUTHENTICATION_FAILED"
    normal = _client_for(api_client, UserFactory()).get(url)
    assert normal.status_code == 403 and normal.json()["error"]["code"] == "PERMISSION_DENIED"
    for user in (StaffUserFactory(), _in_group("auditor"), _in_group("compliance officer")):
        assert _client_for(api_client, user).get(url).status_code == 200, user
    assert _client_for(api_client, _in_group("support")).get(url).status_code == 403


def test_verify_endpoint_reports_the_chain(api_client):
    events = [audit_record(action=f"a{n}") for n in range(3)]
    audit_chain_advance()
    body = _client_for(api_client, StaffUserFactory()).get("/api/v1/audit-logs/verify").json()
    head = AuditEvent.objects.get(pk=events[-1].pk)
    assert head.sequence == 3
    assert body == {"valid": True, "checked": 3, "head_hash": head.hash, "first_invalid_id": None, "reason": None}


def test_list_is_paginated_newest_first_with_filters(api_client):
    alice, bob = UserFactory(), UserFactory()
    org = OrganizationFactory()
    audit_record(actor=alice, action="user.login", target=alice)
    audit_record(actor=bob, action="user.login", target=bob)
    audit_record(actor=alice, action="organization.changed", target=org, data={"name": "x"})
    client = _client_for(api_client, StaffUserFactory())

    body = client.get("/api/v1/audit-logs", {"limit": 2}).json()
    assert set(body) == {"results", "count", "limit", "offset"}
    assert body["count"] == 3 and body["limit"] == 2 and len(body["results"]) == 2
    assert body["results"][0]["action"] == "organization.changed"
    assert set(body["results"][0]) == {
        "id", "created_at", "actor_id", "actor_label", "action", "target_type", "target_id", "data", "sequence", "prev_hash", "hash",
    }

    assert client.get("/api/v1/audit-logs", {"action": "user.login"}).json()["count"] == 2
    assert client.get("/api/v1/audit-logs", {"actor": alice.pk}).json()["count"] == 2
    assert client.get("/api/v1/audit-logs", {"target_type": "accounts.organization"}).json()["count"] == 1
    assert client.get("/api/v1/audit-logs", {"target_type": "accounts.user", "target_id": bob.pk}).json()["count"] == 1
    now = timezone.now()
    assert client.get("/api/v1/audit-logs", {"from": (now - timedelta(minutes=5)).isoformat()}).json()["count"] == 3
    assert client.get("/api/v1/audit-logs", {"from": (now + timedelta(minutes=5)).isoformat()}).json()["count"] == 0
    assert client.get("/api/v1/audit-logs", {"to": (now - timedelta(minutes=5)).isoformat()}).json()["count"] == 0

    bad = client.get("/api/v1/audit-logs", {"from": "yesterday-ish"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR" and "from" in bad.json()["error"]["details"]["fields"]
    assert client.get("/api/v1/audit-logs", {"actor": "bob"}).status_code == 400


# --- admin ------------------------------------------------------------------------------------------


@pytest.fixture
def admin_user():
    return StaffUserFactory(is_superuser=True, email="boss@example.com")


def test_admin_audit_log_is_read_only_with_verify(client, admin_user):
    event = audit_record(action="visible.in.admin")
    client.force_login(admin_user)
    changelist = client.get("/admin/compliance/auditevent/")
    assert changelist.status_code == 200
    assert b"visible.in.admin" in changelist.content and b"Verify chain" in changelist.content
    assert client.get("/admin/compliance/auditevent/add/").status_code == 403
    detail = client.get(f"/admin/compliance/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.post(f"/admin/compliance/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403

    audit_chain_advance()
    verify = client.get("/admin/compliance/auditevent/verify/", follow=True)
    assert verify.status_code == 200
    assert any("Audit chain valid" in str(m) for m in verify.context["messages"])

    action = client.post(
        "/admin/compliance/auditevent/", {"action": "verify_chain", "_selected_action": [event.pk]}, follow=True
    )
    assert any("Audit chain valid" in str(m) for m in action.context["messages"])


def test_admin_audit_log_for_auditor_staff_and_not_for_others(client):
    auditor = StaffUserFactory()
    auditor.groups.add(Group.objects.get_or_create(name="auditor")[0])
    from django.contrib.auth.models import Permission

    auditor.groups.first().permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(auditor)
    assert client.get("/admin/compliance/auditevent/").status_code == 200
    assert client.get("/admin/compliance/auditevent/verify/", follow=True).status_code == 200
    client.force_login(StaffUserFactory())  # staff without the permission
    assert client.get("/admin/compliance/auditevent/").status_code == 403
    assert client.get("/admin/compliance/auditevent/verify/").status_code == 403


def test_admin_changes_land_in_the_chain(client, admin_user):
    client.force_login(admin_user)
    org = OrganizationFactory(name="Old name", slug="old")
    response = client.post(f"/admin/accounts/organization/{org.pk}/change/", {
        "name": "New name", "slug": "old", "settlement_currency": "USD",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0", "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="admin.change")
    assert event.actor_id == admin_user.pk
    assert (event.target_type, event.target_id) == ("accounts.organization", str(org.pk))
    assert "Name" in event.data["change_message"] or "name" in event.data["change_message"].lower()
    assert audit_chain_advance().linked >= 1
    assert audit_verify()["valid"]


def test_admin_bulk_deletion_lands_in_the_chain(client, admin_user):
    client.force_login(admin_user)
    orgs = [OrganizationFactory(), OrganizationFactory()]
    response = client.post(
        "/admin/accounts/organization/", {"action": "delete_selected", "_selected_action": [o.pk for o in orgs], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Organization.objects.filter(pk__in=[o.pk for o in orgs]).exists()
    deleted = set(AuditEvent.objects.filter(action="admin.deletion").values_list("target_id", flat=True))
    assert deleted == {str(o.pk) for o in orgs}
    assert audit_chain_advance().linked >= 2
    assert audit_verify()["valid"]


def test_trigger_exists_in_this_database():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'compliance_auditevent'::regclass AND NOT tgisinternal")
            assert sorted(r[0] for r in cursor.fetchall()) == ["compliance_auditevent_append_only", "compliance_auditevent_no_truncate"]
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'compliance_auditevent'")
            assert [r[0] for r in cursor.fetchall()] == ["compliance_auditevent_no_update"]
