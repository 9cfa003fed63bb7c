"""GET /api/v1/transactions, /transactions/{id} and /transactions/{id}/entries for users and
organizations: visibility (BOLA: someone else's transaction is a 404), the SPEC 6 representation
with the caller's balance_after, counterparty snapshots hidden, filters, and query counts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.models import Transaction
from ledger.posting import Transfer, ledger_post
from tests.factories.ledger import TransactionFactory, WalletFactory
from tests.factories.accounts import MembershipFactory
from tests.factories.ledger_api import customer_wallet, op_issue, op_transfer, person, platform_asset, post_tx, user_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db):
    usd, eur = platform_asset("USD"), platform_asset("EUR")
    jane, john = person("jane@example.com"), person("john@example.com")
    jane.first_name, jane.last_name = "Jane", "Doe"
    jane.save()
    john.first_name, john.last_name = "John", "Smith"
    john.save()
    jane_usd = WalletFactory(asset=usd, customer=jane.customer)
    john_usd = WalletFactory(asset=usd, customer=john.customer)
    jane_eur = WalletFactory(asset=eur, customer=jane.customer)
    john_deposit = TransactionFactory(wallet=john_usd, amount="5", customer=john.customer, description="Deposit")
    deposit = TransactionFactory(wallet=jane_usd, amount="100", customer=jane.customer, description="Deposit from card")
    eur_deposit = TransactionFactory(wallet=jane_eur, amount="7.5", customer=jane.customer, description="Euro top-up")
    transfer = ledger_post(type="transfer", operations=[Transfer(source=jane_usd, destination=john_usd, amount=Decimal("30"))], customer=jane.customer, description="Dinner").raise_for_error()
    failed = ledger_post(type="transfer", operations=[Transfer(source=jane_usd, destination=john_usd, amount=Decimal("1000"))], customer=jane.customer, description="Too much")
    assert not failed.ok
    return {
        "jane": jane, "john": john, "jane_usd": jane_usd, "john_usd": john_usd, "jane_eur": jane_eur,
        "john_deposit": john_deposit, "deposit": deposit, "eur_deposit": eur_deposit, "transfer": transfer, "failed": failed.transaction,
    }


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [t["id"] for t in response.json()["results"]]


def test_a_user_sees_what_they_initiated_and_what_reached_their_wallets_newest_first(world):
    w = world
    jane, john = user_client(w["jane"]), user_client(w["john"])
    assert ids(jane.get("/api/v1/transactions")) == [w["failed"].pk, w["transfer"].pk, w["eur_deposit"].pk, w["deposit"].pk]
    assert ids(john.get("/api/v1/transactions")) == [w["transfer"].pk, w["john_deposit"].pk]
    page = jane.get("/api/v1/transactions?limit=2&offset=1").json()
    assert (page["count"], page["limit"], page["offset"]) == (4, 2, 1)
    assert [t["id"] for t in page["results"]] == [w["transfer"].pk, w["eur_deposit"].pk]


def test_the_representation_and_the_callers_balance_after(world):
    w = world
    as_jane = user_client(w["jane"]).get(f"/api/v1/transactions/{w['transfer'].pk}").json()
    assert as_jane == {
        "id": w["transfer"].pk, "type": "transfer", "status": "completed", "amount": "30.00", "currency": "USD", "fee": "0.00",
        "source_wallet_id": w["jane_usd"].pk, "source_wallet_name": "Jane Doe",
        "destination_wallet_id": w["john_usd"].pk, "destination_wallet_name": "John Smith",
        "reference": "", "description": "Dinner", "created_at": as_jane["created_at"], "completed_at": as_jane["completed_at"],
        "balance_after": "70.00", "livemode": False,
    }
    assert as_jane["created_at"].endswith("Z") and as_jane["completed_at"]
    as_john = user_client(w["john"]).get(f"/api/v1/transactions/{w['transfer'].pk}").json()
    assert as_john["balance_after"] == "35.00"  # his own wallet's snapshot, never hers

    deposit = user_client(w["jane"]).get(f"/api/v1/transactions/{w['deposit'].pk}").json()
    assert (deposit["source_wallet_id"], deposit["source_wallet_name"], deposit["destination_wallet_id"]) == (None, None, w["jane_usd"].pk)
    assert deposit["balance_after"] == "100.00"
    failed = user_client(w["jane"]).get(f"/api/v1/transactions/{w['failed'].pk}").json()
    assert (failed["status"], failed["amount"], failed["balance_after"], failed["completed_at"]) == ("failed", "1000.00", None, None)
    assert "operations" not in failed and "entries" not in failed  # the organization view only


def test_entries_hide_the_counterpartys_balance_snapshot(world):
    w = world
    url = f"/api/v1/transactions/{w['transfer'].pk}/entries"
    jane = user_client(w["jane"]).get(url).json()
    john = user_client(w["john"]).get(url).json()
    shape = {"id", "transaction_id", "wallet_id", "entry_type", "amount", "currency", "balance_after", "operation_index", "created_at"}
    assert all(set(e) == shape for e in jane["results"])
    assert [(e["wallet_id"], e["entry_type"], e["amount"], e["currency"], e["balance_after"]) for e in jane["results"]] == [
        (w["jane_usd"].pk, "debit", "30.00", "USD", "70.00"),
        (w["john_usd"].pk, "credit", "30.00", "USD", None),
    ]
    assert [e["balance_after"] for e in john["results"]] == [None, "35.00"]
    assert user_client(w["jane"]).get(f"/api/v1/transactions/{w['failed'].pk}/entries").json()["count"] == 0


def test_bola_someone_elses_transaction_is_404_everywhere(world):
    w = world
    john = user_client(w["john"])
    stranger = user_client(person())
    for tx in (w["deposit"], w["failed"], w["eur_deposit"]):
        for url in (f"/api/v1/transactions/{tx.pk}", f"/api/v1/transactions/{tx.pk}/entries"):
            response = john.get(url)
            assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND", url
    for url in (f"/api/v1/transactions/{w['transfer'].pk}", "/api/v1/transactions/999999999"):
        assert stranger.get(url).status_code == 404
    assert stranger.get("/api/v1/transactions").json()["count"] == 0


def test_filters(world):
    w = world
    jane = user_client(w["jane"])
    assert ids(jane.get("/api/v1/transactions?type=deposit")) == [w["eur_deposit"].pk, w["deposit"].pk]
    assert ids(jane.get("/api/v1/transactions?status=failed")) == [w["failed"].pk]
    assert ids(jane.get("/api/v1/transactions?status=completed&type=transfer")) == [w["transfer"].pk]
    assert ids(jane.get("/api/v1/transactions?currency=eur")) == [w["eur_deposit"].pk]
    assert ids(jane.get("/api/v1/transactions?currency=GBP")) == []
    assert ids(jane.get(f"/api/v1/transactions?wallet_id={w['jane_usd'].pk}")) == [w["failed"].pk, w["transfer"].pk, w["deposit"].pk]
    assert ids(jane.get(f"/api/v1/transactions?wallet_id={w['john_usd'].pk}")) == [w["failed"].pk, w["transfer"].pk]  # only what she may see
    assert ids(jane.get("/api/v1/transactions?search=dinner")) == [w["transfer"].pk]
    assert ids(jane.get("/api/v1/transactions?search=DEPOSIT FROM")) == [w["deposit"].pk]

    now = timezone.now()
    today = now.date().isoformat()
    assert len(ids(jane.get(f"/api/v1/transactions?from={today}&to={today}"))) == 4  # a bare `to` date: that whole day
    later = (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    earlier = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(jane.get(f"/api/v1/transactions?from={later}")) == []
    assert ids(jane.get(f"/api/v1/transactions?to={earlier}")) == []
    assert len(ids(jane.get("/api/v1/transactions", {"from": earlier, "to": (now + dt.timedelta(hours=1)).isoformat()}))) == 4


@pytest.mark.parametrize(
    "query, field",
    [
        ("from=yesterday", "from"), ("to=2026-02-30", "to"), ("from=2026-13-01T00:00:00Z", "from"),
        ("type=gift", "type"), ("status=done", "status"), ("wallet_id=abc", "wallet_id"), ("wallet_id=0", "wallet_id"),
        ("limit=0", "limit"), ("offset=-1", "offset"),
    ],
)
def test_bad_filter_values_are_400_validation_error(world, query, field):
    response = user_client(world["jane"]).get(f"/api/v1/transactions?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in str(error["details"])


# --- organizations ---------------------------------------------------------------------------------


@pytest.fixture
def org_world(org, points):
    w1 = customer_wallet(org, points, "5", name="Ada Lovelace")
    w2 = customer_wallet(org, points, "7", name="Bob")
    return {"w1": w1, "w2": w2}


def test_an_organization_sees_its_transactions_with_operations_and_entries(client_a, client_b, org_world, world):
    w1, w2 = org_world["w1"], org_world["w2"]
    done = post_tx(client_a, {"reference": "h-1", "operations": [op_issue(w1, "6"), op_transfer(w1, w2, "11")]}).json()
    failed = post_tx(client_a, {"reference": "h-2", "operations": [op_transfer(w1, w2, "11")]}).json()["error"]["details"]["transaction_id"]

    listing = client_a.get("/api/v1/transactions").json()
    assert [t["id"] for t in listing["results"]][:2] == [failed, done["id"]]
    assert world["transfer"].pk not in [t["id"] for t in listing["results"]]  # people's transactions are not the org's
    detail = client_a.get(f"/api/v1/transactions/{done['id']}").json()
    assert detail == done  # the same representation as the POST answered
    assert [o["type"] for o in detail["operations"]] == ["issue", "transfer"]
    failed_detail = client_a.get(f"/api/v1/transactions/{failed}").json()
    assert failed_detail["failure"]["code"] == "INSUFFICIENT_FUNDS" and failed_detail["entries"] == []
    entries = client_a.get(f"/api/v1/transactions/{done['id']}/entries").json()
    assert entries["count"] == 4

    for url in (f"/api/v1/transactions/{done['id']}", f"/api/v1/transactions/{done['id']}/entries", f"/api/v1/transactions/{failed}"):
        response = client_b.get(url)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert client_b.get("/api/v1/transactions").json()["count"] == 0
    assert ids(client_a.get("/api/v1/transactions?type=ledger&status=failed")) == [failed]
    assert ids(client_a.get(f"/api/v1/transactions?wallet_id={w2.pk}&search=h-")) == [failed, done["id"]]
    assert ids(client_a.get("/api/v1/transactions?currency=POINTS&search=h-1")) == [done["id"]]


def test_an_organization_sees_a_persons_transfer_into_its_customers_wallet_but_not_the_persons_snapshot(client_a, org, world):
    usd = platform_asset("USD")
    org_usd = customer_wallet(org, usd)
    tx = ledger_post(type="transfer", operations=[Transfer(source=world["jane_usd"], destination=org_usd, amount=Decimal("10"))],
                     customer=world["jane"].customer).raise_for_error()
    detail = client_a.get(f"/api/v1/transactions/{tx.pk}").json()
    assert detail["balance_after"] == "10.00"  # the org owns the destination, not Jane's source
    snapshots = {e["wallet_id"]: e["balance_after"] for e in detail["entries"]}
    assert snapshots == {world["jane_usd"].pk: None, org_usd.pk: "10.00"}


def test_a_member_reads_as_a_person_without_the_header_and_as_the_organization_with_it(org, org_world, world):
    MembershipFactory(organization=org.organization, user=world["jane"], role="viewer")
    client = user_client(world["jane"])
    personal = ids(client.get("/api/v1/transactions"))
    assert world["transfer"].pk in personal
    as_org = ids(client.get("/api/v1/transactions", HTTP_X_ORGANIZATION=org.organization.slug))
    assert world["transfer"].pk not in as_org and len(as_org) == 2  # the two deposits of org_world
    assert user_client(world["john"]).get("/api/v1/transactions", HTTP_X_ORGANIZATION=org.organization.slug).status_code == 403


# --- efficiency ------------------------------------------------------------------------------------


def _list_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_history_query_count_does_not_grow_with_the_page(world, client_a, org_world, django_assert_max_num_queries):
    w = world
    jane = user_client(w["jane"])
    few = _list_queries(jane, "/api/v1/transactions?limit=100")
    for i in range(30):
        ledger_post(type="transfer", operations=[Transfer(source=w["jane_usd"], destination=w["john_usd"], amount=Decimal("1"))],
                    customer=w["jane"].customer, description=f"t{i}")
        ledger_post(type="transfer", operations=[Transfer(source=w["jane_usd"], destination=w["john_usd"], amount=Decimal("999"))],
                    customer=w["jane"].customer, description=f"f{i}")  # failed: wallets from the stored operations
    assert Transaction.objects.filter(customer=w["jane"].customer).count() == 64
    with django_assert_max_num_queries(5):
        response = jane.get("/api/v1/transactions?limit=100")
    assert response.json()["count"] == 64 and len(response.json()["results"]) == 64
    assert _list_queries(jane, "/api/v1/transactions?limit=100") == few

    for i in range(20):
        post_tx(client_a, {"reference": f"q-{i}", "operations": [op_issue(org_world["w1"], "1"), op_transfer(org_world["w1"], org_world["w2"], "1")]})
    org_queries = _list_queries(client_a, "/api/v1/transactions?limit=100")
    detail_queries = _list_queries(client_a, f"/api/v1/transactions/{Transaction.objects.filter(reference='q-3').get().pk}")
    entries_queries = _list_queries(client_a, f"/api/v1/transactions/{Transaction.objects.filter(reference='q-3').get().pk}/entries")
    print(f"queries: user list {few}, org list {org_queries}, org detail {detail_queries}, org entries {entries_queries}")
    assert org_queries <= 9 and detail_queries <= 9 and entries_queries <= 9, (org_queries, detail_queries, entries_queries)
