"""16 real threads posting multi-operation organization transactions over shared wallets, through
the HTTP API, on PostgreSQL: every request ends in a committed outcome (completed or failed, never
a 500 or a deadlock), nothing is posted twice, and the ledger checker, the balances and the audit
chain agree afterwards."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest

from accounts.models import WebhookDelivery
from compliance.models import AuditEvent
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.services import asset_create
from tests.audit_chain import audit_chain_verified
from tests.concurrency import errors_of, run_in_threads
from tests.factories.ledger_api import customer_wallet, op_issue, op_redeem, op_transfer, post_tx, system_wallet
from tests.factories.orgs import key_client, make_org_key

THREADS = 16
PER_THREAD = 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_post_multi_operation_transactions_over_shared_wallets():
    org = make_org_key("Racers")
    points = asset_create(code="POINTS", name="Points", exponent=0, organization=org.organization)
    wallets = [customer_wallet(org, points, "20") for _ in range(4)]
    wallets.append(system_wallet(org, points, label="treasury"))
    ids = [w.pk for w in wallets]
    setup_client = key_client(org)
    assert setup_client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/h", "events": ["transaction.*"]}, format="json").status_code == 201
    start = sum(Wallet.objects.get(pk=i).balance for i in ids)

    results: list[tuple[int, dict, dict]] = []  # (status, request body, response body)
    duplicates: list[tuple[int, dict, int]] = []  # (status, response body, first id)
    lock = threading.Lock()
    clients = [key_client(org) for _ in range(THREADS)]

    def worker(n: int) -> None:
        rnd = random.Random(n)
        client = clients[n]
        first_reference = None
        for k in range(PER_THREAD):
            a, b, c = rnd.sample(ids, 3)
            operations = [
                op_transfer(a, b, str(rnd.randint(1, 12))),
                op_transfer(b, c, str(rnd.randint(1, 12))),
                op_issue(rnd.choice(ids), str(rnd.randint(1, 3))),
                op_redeem(rnd.choice(ids), str(rnd.randint(1, 3))),
            ]
            rnd.shuffle(operations)
            body = {"reference": f"t{n}-{k}", "operations": operations}
            response = post_tx(client, body)
            with lock:
                results.append((response.status_code, body, response.json()))
            first_reference = first_reference or body["reference"]
        again = post_tx(client, {"reference": first_reference, "operations": [op_issue(ids[0], "1")]})
        first = next(r for s, q, r in results if q["reference"] == first_reference)
        first_id = first["id"] if "id" in first else first["error"]["details"]["transaction_id"]
        with lock:
            duplicates.append((again.status_code, again.json(), first_id))

    errors = errors_of(run_in_threads(THREADS, worker))
    assert not errors, errors
    assert len(results) == THREADS * PER_THREAD

    completed = [(q, r) for s, q, r in results if s == 201]
    failed = [(q, r) for s, q, r in results if s != 201]
    assert {s for s, _, _ in results} <= {201, 422}, {s for s, _, _ in results}
    assert completed and failed  # the mix exercised both outcomes
    for _, r in failed:
        assert r["error"]["code"] == "INSUFFICIENT_FUNDS"
        assert Transaction.objects.get(pk=r["error"]["details"]["transaction_id"]).status == "failed"
    for _, r in completed:
        assert Transaction.objects.get(pk=r["id"]).status == "completed"

    # a reference is spent exactly once, even under the race
    assert all(s == 409 and r["error"]["code"] == "DUPLICATE_REFERENCE" and r["error"]["details"]["transaction"]["id"] == first_id
               for s, r, first_id in duplicates)
    assert Transaction.objects.filter(organization=org.organization).count() == len(results)

    # money: only the completed transactions moved anything, each exactly once
    issued = sum(Decimal(o["amount"]) for q, _ in completed for o in q["operations"] if o["type"] == "issue")
    redeemed = sum(Decimal(o["amount"]) for q, _ in completed for o in q["operations"] if o["type"] == "redeem")
    assert sum(Wallet.objects.get(pk=i).balance for i in ids) == start + issued - redeemed
    assert all(Wallet.objects.get(pk=i).balance >= 0 for i in ids)
    assert ledger_check() == []

    # the side records were written in the same transactions as the postings
    assert WebhookDelivery.objects.filter(organization=org.organization).count() == len(results)
    assert AuditEvent.objects.filter(action__in=["transaction.completed", "transaction.failed"]).count() == len(results)
    assert audit_chain_verified()["valid"]
