"""The same statement imported by several requests at once (no Idempotency-Key): one
reconciliation, every request answered with it (one 201, the others 200), never a 500."""

from __future__ import annotations

import pytest

from ledger.reconciliation.models import Reconciliation, ReconciliationLine
from ledger.services import wallet_open
from tests.factories.orgs import key_client, make_org_key
from tests.concurrency import errors_of, run_in_threads
from tests.factories.reconciliation import csv_file, post, today, upload
from tests.factories.ledger_api import platform_asset

THREADS = 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_imports_of_one_file_make_one_reconciliation():
    org = make_org_key("Racers")
    bank = wallet_open(asset=platform_asset("USD"), organization=org.organization, label="bank")
    post(bank, org.organization, ("in", "300.00"), reference="INV-1001")
    clients = [key_client(org) for _ in range(THREADS)]
    rows = [f"{today().isoformat()},300.00,USD,INV-1001,Invoice", f"{today().isoformat()},5.00,USD,,Interest"]

    results = run_in_threads(THREADS, lambda i: upload(clients[i], bank, csv_file(rows)))
    assert not errors_of(results), errors_of(results)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * (THREADS - 1) + [201], [r.content for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert Reconciliation.objects.count() == 1 and ReconciliationLine.objects.count() == 2
