"""The money endpoints answer with the same SPEC 6 representation of a transaction as GET
/transactions/{id} (one presenter, `ledger.serializers.TransactionPresenter`): same names, same
amounts, the caller's own `balance_after`."""

import uuid

import pytest

from ledger.services import wallet_open
from tests.factories.accounts import OrgCustomerFactory
from tests.factories.wallets import asset, client_for, open_wallet

pytestmark = pytest.mark.django_db


def _post(client, path, body):
    response = client.post(path, body, format="json", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.content
    return response.json()


def _get(client, transaction_id):
    response = client.get(f"/api/v1/transactions/{transaction_id}")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_deposit_reads_the_same_as_in_the_history(jane):
    wallet = open_wallet(jane, "USD")
    client = client_for(jane)
    body = _post(client, "/api/v1/deposits", {"wallet_id": wallet.pk, "amount": "12.3"})
    assert body == _get(client, body["id"])
    assert (body["amount"], body["balance_after"], body["destination_wallet_name"]) == ("12.30", "12.30", jane.full_name)


def test_a_transfer_reads_the_same_for_the_sender_and_the_receiver_but_their_own_balance(jane, john):
    source, destination = open_wallet(jane, "USD", funded="50.00"), open_wallet(john, "USD", funded="5.00")
    sender = client_for(jane)
    body = _post(sender, "/api/v1/transfers", {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk,
                                              "amount": "20", "currency": "USD"})
    assert body == _get(sender, body["id"])
    assert (body["source_wallet_name"], body["destination_wallet_name"], body["balance_after"]) == (jane.full_name, john.full_name, "30.00")
    received = _get(client_for(john), body["id"])
    assert received == {**body, "balance_after": "25.00"}


def test_a_transfer_to_an_organizations_customer_names_the_customer(jane):
    source = open_wallet(jane, "USD", funded="50.00")
    named = wallet_open(asset=asset("USD"), customer=OrgCustomerFactory(name="Ada Lovelace", external_id="ada"))
    unnamed = wallet_open(asset=asset("USD"), customer=OrgCustomerFactory(name="", external_id="cust-7"))
    client = client_for(jane)
    for destination, name in ((named, "Ada Lovelace"), (unnamed, "cust-7")):
        body = _post(client, "/api/v1/transfers", {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk,
                                                  "amount": "1.00", "currency": "USD"})
        assert body["destination_wallet_name"] == name
        assert body == _get(client, body["id"])
