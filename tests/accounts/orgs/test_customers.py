"""Customers by external id: upsert (201 then 200), list with filters, detail with wallets, and
concurrent upserts of one id ending as one row."""

from decimal import Decimal

import pytest

from accounts.models import Customer
from tests.concurrency import errors_of, run_in_threads
from tests.factories.orgs import audit_actions, key_client, make_org_key

pytestmark = pytest.mark.django_db
URL = "/api/v1/customers"


def test_upsert_creates_then_updates(client_a, org):
    created = client_a.put(f"{URL}/user-42", {"name": "Ada", "email": "ada@example.com", "kyc_level": "basic", "metadata": {"tier": "gold"}}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["external_id"] == "user-42" and body["kyc_level"] == "basic" and body["metadata"] == {"tier": "gold"}
    assert body["wallets"] == []
    updated = client_a.put(f"{URL}/user-42", {"kyc_level": "verified"}, format="json")
    assert updated.status_code == 200
    assert updated.json()["kyc_level"] == "verified" and updated.json()["name"] == "Ada"  # partial: untouched fields stay
    assert Customer.objects.filter(organization=org.organization, external_id="user-42").count() == 1
    actions = audit_actions()
    assert "customer.created" in actions and "customer.updated" in actions


def test_upsert_same_data_is_200_without_change(client_a):
    client_a.put(f"{URL}/same", {"name": "S"}, format="json")
    again = client_a.put(f"{URL}/same", {"name": "S"}, format="json")
    assert again.status_code == 200
    assert audit_actions().count("customer.updated") == 0


def test_external_ids_are_strings_with_odd_characters(client_a):
    for external_id in ["0042", "a.b@c", "ümlaut", "with space"]:
        response = client_a.put(f"{URL}/{external_id}", {}, format="json")
        assert response.status_code == 201, (external_id, response.content)
        assert response.json()["external_id"] == external_id
        assert client_a.get(f"{URL}/{external_id}").status_code == 200


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"kyc_level": "platinum"}, "kyc_level"),
        ({"email": "not-an-email"}, "email"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": {"blob": "x" * 20000}}, "metadata"),
        ({"name": "n" * 301}, "name"),
    ],
)
def test_upsert_validation(client_a, payload, field):
    response = client_a.put(f"{URL}/bad", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]["fields"]
    assert not Customer.objects.filter(external_id="bad").exists()


def test_external_id_too_long(client_a):
    response = client_a.put(f"{URL}/{'x' * 201}", {}, format="json")
    assert response.status_code == 400


def test_list_filters_and_paginates(client_a, client_b):
    for i in range(5):
        client_a.put(f"{URL}/c{i}", {"name": f"Name {i}", "kyc_level": "basic" if i % 2 else "none"}, format="json")
    client_b.put(f"{URL}/c0", {"name": "Other org"}, format="json")
    listed = client_a.get(URL, {"limit": 2})
    assert listed.status_code == 200
    assert listed.json()["count"] == 5 and len(listed.json()["results"]) == 2 and listed.json()["limit"] == 2
    basic = client_a.get(URL, {"kyc_level": "basic"}).json()
    assert {c["external_id"] for c in basic["results"]} == {"c1", "c3"}
    search = client_a.get(URL, {"search": "name 4"}).json()
    assert [c["external_id"] for c in search["results"]] == ["c4"]
    assert client_a.get(URL, {"kyc_level": "bogus"}).status_code == 400


def test_detail_shows_wallets_and_kyc_level(client_a, org):
    from tests.factories.ledger import WalletFactory

    client_a.put(f"{URL}/w1", {"kyc_level": "enhanced"}, format="json")
    customer = Customer.objects.get(organization=org.organization, external_id="w1")
    wallet = WalletFactory(customer=customer)
    body = client_a.get(f"{URL}/w1").json()
    assert body["kyc_level"] == "enhanced"
    assert body["wallets"] == [
        {"id": wallet.pk, "currency": "USD", "label": "", "status": "active", "balance": "0.00",
         "available_balance": "0.00", "created_at": body["wallets"][0]["created_at"]}
    ]
    assert Decimal(body["wallets"][0]["balance"]) == 0


def test_unknown_customer_is_404(client_a):
    response = client_a.get(f"{URL}/nobody")
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_threads_upserting_one_external_id_make_one_row():
    org_key = make_org_key("Racer")
    clients = [key_client(org_key) for _ in range(8)]
    statuses = run_in_threads(8, lambda i: clients[i].put(f"{URL}/racy", {"name": f"writer {i}"}, format="json").status_code, timeout=30)
    errors = errors_of(statuses)
    assert not errors, errors
    assert sorted(statuses) == [200] * 7 + [201]
    assert Customer.objects.filter(organization=org_key.organization, external_id="racy").count() == 1
    assert audit_actions().count("customer.created") == 1
