"""Organization B never sees or touches organization A's objects: every endpoint answers 404
(never 403) for another organization's object, and lists only hold the caller's rows."""

import pytest
from django.db import transaction

from accounts.models import ApiKey, Customer, WebhookDelivery, WebhookEndpoint
from accounts.orgs.tenancy import OrganizationScopedMixin
from accounts.webhooks import webhook_publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def a_objects(client_a, org, django_capture_on_commit_callbacks):
    client_a.put("/api/v1/customers/alice", {"name": "Alice"}, format="json")
    endpoint = client_a.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/x", "events": ["*"]}, format="json").json()
    with transaction.atomic():
        (delivery,) = webhook_publish(organization=org.organization, event_type="customer.updated", payload={"external_id": "alice"})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)
    return {"endpoint": endpoint["id"], "delivery": str(delivery.pk), "key": org.key_id}


def expect_404(response):
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_other_org_gets_404_on_every_object_endpoint(client_b, a_objects, org):
    e, d, k = a_objects["endpoint"], a_objects["delivery"], a_objects["key"]
    expect_404(client_b.get("/api/v1/customers/alice"))
    expect_404(client_b.post(f"/api/v1/api-keys/{k}/revoke"))
    expect_404(client_b.get(f"/api/v1/webhook-endpoints/{e}"))
    expect_404(client_b.post(f"/api/v1/webhook-endpoints/{e}/disable"))
    expect_404(client_b.post(f"/api/v1/webhook-endpoints/{e}/enable"))
    expect_404(client_b.delete(f"/api/v1/webhook-endpoints/{e}"))
    expect_404(client_b.get(f"/api/v1/webhook-deliveries/{d}"))
    expect_404(client_b.post(f"/api/v1/webhook-deliveries/{d}/redeliver"))
    # nothing changed on A's side
    assert ApiKey.objects.get(key_id=k).revoked_at is None
    assert WebhookEndpoint.objects.get(pk=e).is_enabled and WebhookEndpoint.objects.get(pk=e).deleted_at is None
    assert WebhookDelivery.objects.get(pk=d).status == "failed"


def test_put_with_the_same_external_id_makes_a_separate_customer(client_b, a_objects, org, other_org):
    response = client_b.put("/api/v1/customers/alice", {"name": "Bob's Alice"}, format="json")
    assert response.status_code == 201
    assert Customer.objects.get(organization=org.organization, external_id="alice").name == "Alice"
    assert Customer.objects.get(organization=other_org.organization, external_id="alice").name == "Bob's Alice"


def test_lists_hold_only_the_callers_rows(client_b, a_objects, other_org):
    for url in ["/api/v1/customers", "/api/v1/webhook-endpoints", "/api/v1/webhook-deliveries"]:
        assert client_b.get(url).json()["count"] == 0, url
    keys = client_b.get("/api/v1/api-keys").json()["results"]
    assert [k["key_id"] for k in keys] == [other_org.key_id]


def test_the_owner_sees_their_objects(client_a, a_objects):
    assert client_a.get("/api/v1/customers/alice").status_code == 200
    assert client_a.get(f"/api/v1/webhook-endpoints/{a_objects['endpoint']}").status_code == 200
    assert client_a.get(f"/api/v1/webhook-deliveries/{a_objects['delivery']}").status_code == 200


def test_the_mixin_forbids_overriding_get_queryset():
    from rest_framework.generics import ListAPIView

    with pytest.raises(TypeError):
        class Leaky(OrganizationScopedMixin, ListAPIView):  # noqa: F841
            def get_queryset(self):
                return Customer.objects.all()
