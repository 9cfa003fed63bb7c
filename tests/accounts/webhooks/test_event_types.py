"""Webhook event types (issue 13 item 9): one declaration (`accounts.webhooks.events`) behind the
subscription check and `GET /api/v1/webhook-event-types`, every example valid against its
schema, and `customer.created` / `customer.updated` delivered by the customer upsert to a real
local HTTP receiver (signatures verified with `standardwebhooks`), with payloads that match
their declared schemas."""

import jsonschema
import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from accounts.models import WebhookDelivery
from accounts.webhooks import webhook_publish
from accounts.webhooks.events import EVENT_TYPES, EVENTS_BY_NAME, WEBHOOK_EVENT_TYPES
from core.models import OutboxMessage

ENDPOINTS = "/api/v1/webhook-endpoints"
EVENT_TYPES_URL = "/api/v1/webhook-event-types"
CUSTOMERS = "/api/v1/customers"


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _subscribe(client, receiver, events) -> dict:
    response = client.post(ENDPOINTS, {"url": receiver.url, "events": events}, format="json")
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()


# --- the declaration and its examples --------------------------------------------------------------


@pytest.mark.parametrize("event", WEBHOOK_EVENT_TYPES, ids=lambda e: e.name)
def test_every_example_is_valid_against_its_schema(event):
    listed = event.as_dict()
    assert listed["description"].strip() and listed["schema"]["$schema"].endswith("2020-12/schema")
    _validator(listed["schema"]).validate(listed["example"])


def test_a_schema_refuses_a_payload_that_breaks_it():
    validator = _validator(EVENTS_BY_NAME["customer.updated"].as_dict()["schema"])
    good = EVENTS_BY_NAME["customer.updated"].example
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "changed_fields": []})  # an update changes something
    assert not validator.is_valid({**good, "kyc_level": "platinum"})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "external_id"})


def test_names_are_unique_and_the_customer_events_are_declared():
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == len(WEBHOOK_EVENT_TYPES)
    assert {"customer.created", "customer.updated", "transaction.reversed", "payorder.created"} <= set(EVENT_TYPES)


@pytest.mark.django_db
def test_publishing_an_undeclared_type_is_refused(org):
    with pytest.raises(ValueError, match="not a declared event type"):
        webhook_publish(organization=org.organization, event_type="customer.deleted", payload={})


# --- GET /webhook-event-types ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_endpoint_lists_every_declared_type(client_a):
    response = client_a.get(EVENT_TYPES_URL, {"limit": 100})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["limit"], body["offset"]) == (len(EVENT_TYPES), 100, 0)
    assert [e["type"] for e in body["results"]] == list(EVENT_TYPES)
    by_type = {e["type"]: e for e in body["results"]}
    created = by_type["customer.created"]
    assert created == EVENTS_BY_NAME["customer.created"].as_dict()
    assert created["schema"]["required"] == ["external_id", "name", "email", "kyc_level", "metadata", "livemode", "created_at", "updated_at"]
    assert "changed_fields" in by_type["customer.updated"]["schema"]["properties"]
    page = client_a.get(EVENT_TYPES_URL, {"limit": 5, "offset": 5}).json()
    assert [e["type"] for e in page["results"]] == list(EVENT_TYPES[5:10]) and page["count"] == len(EVENT_TYPES)


@pytest.mark.django_db
def test_the_list_endpoint_needs_an_organization(client_a):
    assert APIClient().get(EVENT_TYPES_URL).status_code == 401
    assert client_a.get(EVENT_TYPES_URL, {"limit": 0}).status_code == 400


# --- subscriptions use the same declaration -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("events", [["customer.deleted"], ["customers.*"], ["customer.created", "transaction.done"], ["nope.*"]])
def test_an_endpoint_cannot_subscribe_to_an_undeclared_type(client_a, events):
    response = client_a.post(ENDPOINTS, {"url": "http://127.0.0.1:9/x", "events": events}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.django_db
@pytest.mark.parametrize("events", [["customer.created", "customer.updated"], ["customer.*"], ["*"]])
def test_declared_names_and_namespaces_are_accepted(client_a, events):
    assert client_a.post(ENDPOINTS, {"url": "http://127.0.0.1:9/x", "events": events}, format="json").status_code == 201


# --- customer.created / customer.updated, delivered -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_customer_upsert_delivers_created_then_updated(client_a, org, receiver, eager_celery, django_capture_on_commit_callbacks):
    _subscribe(client_a, receiver, ["customer.*"])

    with django_capture_on_commit_callbacks(execute=True):
        created = client_a.put(f"{CUSTOMERS}/cus-42", {"name": "Ada", "email": "ada@example.com", "kyc_level": "basic", "metadata": {"plan": "gold"}}, format="json")
    assert created.status_code == 201, created.content
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.verified, got.error
    assert got.payload["type"] == "customer.created" and got.payload["id"].startswith("evt_")
    data = got.payload["data"]
    shown = created.json()  # the customer as the API shows it
    assert set(data) == set(shown) - {"wallets"}
    assert all(data[k] == shown[k] for k in ("external_id", "name", "email", "kyc_level", "metadata"))
    assert all(parse_datetime(data[k]) == parse_datetime(shown[k]).replace(microsecond=parse_datetime(shown[k]).microsecond // 1000 * 1000)
               for k in ("created_at", "updated_at"))
    _validator(EVENTS_BY_NAME["customer.created"].as_dict()["schema"]).validate(data)

    with django_capture_on_commit_callbacks(execute=True):
        updated = client_a.put(f"{CUSTOMERS}/cus-42", {"kyc_level": "verified", "name": "Ada L."}, format="json")
    assert updated.status_code == 200
    assert len(receiver.received) == 2
    got = receiver.received[1]
    assert got.verified, got.error
    assert got.payload["type"] == "customer.updated"
    data = got.payload["data"]
    assert (data["external_id"], data["kyc_level"], data["name"], sorted(data["changed_fields"])) == ("cus-42", "verified", "Ada L.", ["kyc_level", "name"])
    _validator(EVENTS_BY_NAME["customer.updated"].as_dict()["schema"]).validate(data)

    with django_capture_on_commit_callbacks(execute=True):
        same = client_a.put(f"{CUSTOMERS}/cus-42", {"kyc_level": "verified"}, format="json")
    assert same.status_code == 200
    assert len(receiver.received) == 2  # nothing changed: nothing sent
    deliveries = WebhookDelivery.objects.order_by("created_at")
    assert [(d.event_type, d.status) for d in deliveries] == [("customer.created", "delivered"), ("customer.updated", "delivered")]


@pytest.mark.django_db
def test_the_events_are_written_in_the_upserts_transaction(client_a, org):
    """The delivery and its outbox message are rows of the upsert's own transaction."""
    client_a.post(ENDPOINTS, {"url": "http://127.0.0.1:9/x", "events": ["customer.created"]}, format="json")
    assert client_a.put(f"{CUSTOMERS}/cus-7", {"name": "Grace"}, format="json").status_code == 201
    delivery = WebhookDelivery.objects.get(event_type="customer.created")
    assert delivery.payload["data"]["external_id"] == "cus-7" and delivery.organization_id == org.organization.pk
    assert OutboxMessage.objects.filter(topic="webhook.deliver", payload__delivery_id=str(delivery.pk)).count() == 1
    # not subscribed to updates: an update queues nothing
    assert client_a.put(f"{CUSTOMERS}/cus-7", {"name": "Grace H."}, format="json").status_code == 200
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_another_organizations_endpoints_hear_nothing(client_a, client_b, org):
    client_b.post(ENDPOINTS, {"url": "http://127.0.0.1:9/x", "events": ["*"]}, format="json")
    assert client_a.put(f"{CUSTOMERS}/cus-8", {"name": "Lin"}, format="json").status_code == 201
    assert WebhookDelivery.objects.count() == 0
