"""GET /wallets/{id}/balance?at= for users and organizations, and unknown query parameters on
detail endpoints (SPEC 5: a 400 naming them, never silently ignored)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from ledger.models import Entry
from ledger.posting import Redeem, ledger_post
from ledger.services import wallet_open
from tests.factories.ledger import WalletFactory
from tests.factories.ledger_api import customer_wallet, fund, person, system_wallet, user_client

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _tick() -> dt.datetime:
    """An instant strictly between two postings (timestamps have microsecond resolution)."""
    time.sleep(0.002)
    moment = timezone.now()
    time.sleep(0.002)
    return moment


@pytest.fixture
def jane(usd):
    user = person()
    wallet = wallet_open(asset=usd, customer=user.customer)
    return user, wallet


def test_balance_at_past_instants_follows_the_entries(jane):
    user, wallet = jane
    before_first = _tick()
    fund(wallet, "100.00")
    after_deposit = _tick()
    ledger_post(type="withdrawal", operations=[Redeem(wallet=wallet, amount="30.25")]).raise_for_error()
    after_withdrawal = _tick()
    client = user_client(user)
    entries = list(Entry.objects.filter(wallet=wallet).order_by("id"))

    r = client.get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": before_first.isoformat()})
    assert r.status_code == 200, r.content
    assert r.json() == {"wallet_id": wallet.pk, "currency": "USD", "at": before_first.isoformat().replace("+00:00", "Z"),
                        "balance": "0.00", "available_balance": None, "as_of_entry_id": None}

    r = client.get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": after_deposit.isoformat()})
    assert (r.json()["balance"], r.json()["as_of_entry_id"], r.json()["available_balance"]) == ("100.00", entries[0].pk, None)

    r = client.get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": after_withdrawal.isoformat()})
    assert (r.json()["balance"], r.json()["as_of_entry_id"]) == ("69.75", entries[1].pk)

    # The exact instant of an entry counts it ("at or before").
    r = client.get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": entries[1].created_at.isoformat()})
    assert r.json()["balance"] == "69.75"


def test_balance_now_and_future_carry_the_current_available_balance(jane):
    user, wallet = jane
    fund(wallet, "12.30")
    client = user_client(user)
    for params in ({}, {"at": (timezone.now() + dt.timedelta(days=3)).isoformat()}, {"at": timezone.now().date().isoformat()}):
        body = client.get(f"/api/v1/wallets/{wallet.pk}/balance", params).json()
        assert (body["balance"], body["available_balance"]) == ("12.30", "12.30"), params
        assert dt.datetime.fromisoformat(body["at"]) <= timezone.now()


def test_bare_date_means_the_end_of_that_utc_day(jane):
    user, wallet = jane
    fund(wallet, "5.00")
    yesterday = (timezone.now() - dt.timedelta(days=1)).date().isoformat()
    body = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": yesterday}).json()
    assert body["balance"] == "0.00"
    assert body["at"] == f"{yesterday}T23:59:59.999999Z"


@pytest.mark.parametrize("at", ["yesterday", "2026-02-30", "2026-13-01T00:00:00Z", "12/31/2026"])
def test_a_malformed_at_is_a_400_naming_it(jane, at):
    user, wallet = jane
    r = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/balance", {"at": at})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "at" in r.json()["error"]["details"]["fields"]


def test_someone_elses_wallet_is_a_404_for_users(jane, usd):
    user, _ = jane
    other = person()
    theirs = WalletFactory(asset=usd, customer=other.customer, funded="1.00")
    for path in (f"/api/v1/wallets/{theirs.pk}/balance", "/api/v1/wallets/999999/balance"):
        r = user_client(user).get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_organizations_read_their_wallets_and_not_others(org, other_org, client_a, client_b, usd):
    theirs = customer_wallet(org, usd, "40.00", external_id="c-1")
    system = system_wallet(org, usd, label="float")
    assert client_a.get(f"/api/v1/wallets/{theirs.pk}/balance").json()["balance"] == "40.00"
    assert client_a.get(f"/api/v1/wallets/{system.pk}/balance").json()["balance"] == "0.00"
    r = client_b.get(f"/api/v1/wallets/{theirs.pk}/balance")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    # A person's wallet is no organization's.
    someone = person()
    mine = wallet_open(asset=usd, customer=someone.customer)
    assert client_a.get(f"/api/v1/wallets/{mine.pk}/balance").status_code == 404


def test_users_cannot_read_an_organizations_customer_wallet(org, usd):
    theirs = customer_wallet(org, usd, "40.00", external_id="c-2")
    assert user_client(person()).get(f"/api/v1/wallets/{theirs.pk}/balance").status_code == 404


# --- Unknown query parameters on detail endpoints ----------------------------------------------

def test_wallet_detail_refuses_at_instead_of_ignoring_it(jane):
    user, wallet = jane
    r = user_client(user).get(f"/api/v1/wallets/{wallet.pk}", {"at": "2026-01-01"})
    assert r.status_code == 400
    body = r.json()["error"]
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["unknown_parameters"] == ["at"]
    assert "at" in body["message"]
    assert user_client(user).get(f"/api/v1/wallets/{wallet.pk}").status_code == 200


def test_every_detail_endpoint_names_its_unknown_parameters(org, client_a, usd):
    wallet = customer_wallet(org, usd, "3.00", external_id="c-3")
    tx_id = Entry.objects.filter(wallet=wallet).values_list("transaction_id", flat=True).first()
    for path in (f"/api/v1/wallets/{wallet.pk}", f"/api/v1/transactions/{tx_id}", "/api/v1/customers/c-3",
                 f"/api/v1/wallets/{wallet.pk}/balance", f"/api/v1/wallets/{wallet.pk}/statement"):
        r = client_a.get(path, {"bogus": "1", "zeta": "2"})
        assert r.status_code == 400, (path, r.content)
        assert r.json()["error"]["details"]["unknown_parameters"] == ["bogus", "zeta"], path


def test_declared_parameters_and_list_filters_still_work(org, client_a, usd):
    wallet = customer_wallet(org, usd, "3.00", external_id="c-4")
    tx_id = Entry.objects.filter(wallet=wallet).values_list("transaction_id", flat=True).first()
    ok = [
        (f"/api/v1/wallets/{wallet.pk}/entries", {"from": "2026-01-01", "to": "2099-01-01", "limit": "5", "offset": "0"}),
        (f"/api/v1/transactions/{tx_id}/entries", {"limit": "5"}),
        (f"/api/v1/wallets/{wallet.pk}/balance", {"at": "2026-01-01"}),
        # collection endpoints keep their own filters (and are not checked here)
        ("/api/v1/wallets", {"currency": "USD", "customer_external_id": "c-4"}),
        ("/api/v1/transactions", {"type": "deposit", "wallet_id": str(wallet.pk), "search": "x"}),
    ]
    for path, params in ok:
        r = client_a.get(path, params)
        assert r.status_code == 200, (path, r.content)
