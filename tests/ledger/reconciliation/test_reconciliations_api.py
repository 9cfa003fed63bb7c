"""POST /reconciliations (CSV and camt.053) and GET /reconciliations[/{id}] over the API on
PostgreSQL: matching by reference then amount and date, the balance difference, duplicates,
idempotency, malformed files, other organizations' wallets and objects, empty periods, staff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ledger.checks import ledger_check
from ledger.models import Wallet
from ledger.reconciliation.models import Reconciliation
from tests.factories.accounts import UserFactory
from tests.factories.reconciliation import camt_entry, camt_file, csv_file, post, today, upload

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def books(org, bank):
    """The ledger of Alpha's bank wallet today: 300.00 in (INV-1001), 75.00 in (no reference),
    20.00 out (bank-fee-may): closing 355.00."""
    t1 = post(bank, org.organization, ("in", "300.00"), reference="INV-1001", description="Invoice 1001")
    t2 = post(bank, org.organization, ("in", "75.00"), description="Card settlement")
    t3 = post(bank, org.organization, ("out", "20.00"), reference="bank-fee-may", description="Fee")
    return t1, t2, t3


def _lines(body):
    return {(line["kind"], line["status"], line["method"], line["amount"], line["transaction_id"]) for line in body["lines"]["results"]}


def test_csv_matched_by_reference_then_amount_and_date(client_a, bank, books):
    t1, t2, t3 = books
    d = today().isoformat()
    file = csv_file([f"{d},300.00,USD,INV-1001,Invoice 1001", f"{d},75.00,USD,,Card batch", f"{d},50.00,USD,,Interest"])
    r = upload(client_a, bank, file, closing_balance="425.00")
    assert r.status_code == 201, r.content
    body = r.json()
    assert r["Location"] == f"/api/v1/reconciliations/{body['id']}"
    assert (body["source_format"], body["currency"], body["status"]) == ("csv", "USD", "open")
    assert body["summary"] == {"matched": 2, "unmatched_external": 1, "unmatched_ledger": 1, "unresolved": 2, "resolved": 0}
    assert _lines(body) == {
        ("pair", "matched", "reference", "300.00", t1.pk),
        ("pair", "matched", "amount_date", "75.00", t2.pk),
        ("external", "unmatched", None, "50.00", None),
        ("ledger", "unmatched", None, None, t3.pk),
    }
    ledger_line = next(line for line in body["lines"]["results"] if line["kind"] == "ledger")
    assert (ledger_line["transaction_amount"], ledger_line["reference"]) == ("-20.00", "bank-fee-may")
    # statement 425.00 vs ledger 355.00 at the period's end (balance-at)
    assert (body["statement_closing_balance"], body["ledger_closing_balance"], body["balance_difference"]) == ("425.00", "355.00", "70.00")
    assert body["remaining_difference"] == "70.00"

    # the detail is paginated and filterable; the list shows it
    detail = client_a.get(f"/api/v1/reconciliations/{body['id']}", {"limit": 2, "offset": 1}).json()
    assert (detail["lines"]["count"], len(detail["lines"]["results"]), detail["lines"]["offset"]) == (4, 2, 1)
    only = client_a.get(f"/api/v1/reconciliations/{body['id']}", {"kind": "external"}).json()["lines"]
    assert [line["amount"] for line in only["results"]] == ["50.00"]
    bad = client_a.get(f"/api/v1/reconciliations/{body['id']}", {"kind": "nope"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    unknown = client_a.get(f"/api/v1/reconciliations/{body['id']}", {"since": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["details"]["unknown_parameters"] == ["since"]
    listing = client_a.get("/api/v1/reconciliations", {"wallet_id": bank.pk}).json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == body["id"] and "lines" not in listing["results"][0]
    assert ledger_check() == []


def test_reference_with_another_amount_is_not_a_match(client_a, bank, books):
    d = today().isoformat()
    body = upload(client_a, bank, csv_file([f"{d},310.00,USD,INV-1001,Invoice 1001"])).json()
    external = next(line for line in body["lines"]["results"] if line["kind"] == "external")
    assert "names transaction" in external["note"] and body["balance_difference"] is None


def test_date_window_is_configurable_and_a_transaction_matches_once(client_a, bank, books):
    five_days_ago = (today() - dt.timedelta(days=5)).isoformat()
    rows = [f"{five_days_ago},75.00,USD,,Card batch", f"{five_days_ago},75.00,USD,,Card batch again"]
    narrow = upload(client_a, bank, csv_file(rows, name="a.csv"), period_to=today().isoformat()).json()
    assert narrow["summary"]["matched"] == 0
    wide = upload(client_a, bank, csv_file(rows + [""], name="b.csv"), date_window_days=7, period_to=today().isoformat()).json()
    assert wide["summary"]["matched"] == 1 and wide["summary"]["unmatched_external"] == 1  # one transaction of 75.00, matched once


def test_direction_column(client_a, bank, books):
    d = today().isoformat()
    file = csv_file([f"{d},20.00,USD,bank-fee-may,Fee,debit", f"{d},300.00,USD,INV-1001,Invoice,CRDT"],
                    header="date,amount,currency,reference,description,direction")
    body = upload(client_a, bank, file).json()
    assert body["summary"]["matched"] == 2
    signed = upload(client_a, bank, csv_file([f"{d},-20.00,USD,x,y,debit"], header="date,amount,currency,reference,description,direction"))
    assert signed.status_code == 400 and signed.json()["error"]["details"]["field"] == "amount"


def test_duplicate_file_returns_the_first_reconciliation(client_a, bank, books):
    d = today().isoformat()
    first = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x"]))
    again = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x"], name="renamed.csv"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and Reconciliation.objects.count() == 1


def test_idempotency_key_compares_the_file(client_a, bank, books):
    d = today().isoformat()
    first = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x"]), key="recon-may")
    replay = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x"]), key="recon-may")
    other = upload(client_a, bank, csv_file([f"{d},75.00,USD,,x"]), key="recon-may")  # same name, other bytes
    assert first.status_code == 201 and replay.status_code == 201 and replay["Idempotency-Replayed"] == "true"
    assert replay.json() == first.json()
    assert (other.status_code, other.json()["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")


def test_camt053_with_balances_and_pending_entries(client_a, bank, books):
    t1, t2, t3 = books
    d = today()
    entries = [
        camt_entry("300.00", "CRDT", d, ref="E-1", end_to_end="INV-1001", text="Invoice 1001"),
        camt_entry("75.00", "CRDT", d, ref="E-2"),
        camt_entry("20.00", "DBIT", d, ref="E-3", end_to_end="bank-fee-may"),
        camt_entry("999.00", "CRDT", d, ref="E-4", status="PDNG"),  # not booked: not a line
    ]
    r = upload(client_a, bank, camt_file(entries, start=d, end=d, opening="0.00", closing="355.00"))
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["source_format"], body["statement_id"], body["status"]) == ("camt053", "STMT-1", "reconciled")
    assert (body["statement_opening_balance"], body["statement_closing_balance"], body["balance_difference"]) == ("0.00", "355.00", "0.00")
    assert _lines(body) == {
        ("pair", "matched", "reference", "300.00", t1.pk),
        ("pair", "matched", "amount_date", "75.00", t2.pk),
        ("pair", "matched", "reference", "-20.00", t3.pk),
    }


def test_camt053_malformed_amount_names_the_entry(client_a, bank, books):
    d = today()
    entries = [camt_entry("300.00", "CRDT", d, ref="E-1"), camt_entry("12,50", "CRDT", d, ref="E-2")]
    r = upload(client_a, bank, camt_file(entries, start=d, end=d))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and "entry 2" in error["message"]
    assert (error["details"]["entry"], error["details"]["entry_ref"], error["details"]["field"]) == (2, "E-2", "Amt")
    assert Reconciliation.objects.count() == 0


@pytest.mark.parametrize("content, needle", [
    (b"<Document xmlns='urn:other'/>", "camt.053 Document"),
    (b"<Document", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "y">]><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">&x;</Document>',
     "DOCTYPE"),
])
def test_hostile_or_foreign_xml_is_a_400(client_a, bank, content, needle):
    from django.core.files.uploadedfile import SimpleUploadedFile

    r = upload(client_a, bank, SimpleUploadedFile("s.xml", content))
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert needle in r.json()["error"]["message"]


def test_malformed_csv_rows_name_line_and_field(client_a, bank):
    d = today().isoformat()
    file = csv_file([f"{d},10.00,USD,a,b", "31/05/2026,10.00,USD,a,b", f"{d},10.001,USD,a,b", f"{d},5.00,EUR,a,b", f"{d},1,USD"])
    r = upload(client_a, bank, file)
    assert r.status_code == 400
    details = r.json()["error"]["details"]
    assert (details["line"], details["field"]) == (3, "date")
    assert [(e["line"], e["field"]) for e in details["errors"]] == [(3, "date"), (4, "amount"), (5, "currency"), (6, "row")]
    ancient = upload(client_a, bank, csv_file(["0001-01-01,10.00,USD,a,b"]))
    assert ancient.status_code == 400 and "period_from" in ancient.json()["error"]["details"]["fields"]
    missing = upload(client_a, bank, csv_file([f"{d},10.00"], header="date,amount"))
    assert missing.status_code == 400 and missing.json()["error"]["details"]["missing_columns"] == ["currency"]


def test_unknown_and_others_wallets_and_reconciliations_are_404(client_a, client_b, other_org, bank, books, usd):
    d = today().isoformat()
    assert upload(client_a, 999_999, csv_file([f"{d},1.00,USD,,"])).status_code == 404
    from tests.factories.ledger_api import system_wallet

    theirs = system_wallet(other_org, usd, label="their bank")
    r = upload(client_a, theirs, csv_file([f"{d},1.00,USD,,"]))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "NOT_FOUND")
    mine = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x"])).json()
    assert client_b.get(f"/api/v1/reconciliations/{mine['id']}").status_code == 404
    assert client_b.get("/api/v1/reconciliations").json()["count"] == 0


def test_a_period_with_no_entries(client_a, bank, books):
    start, end = dt.date(2026, 1, 1), dt.date(2026, 1, 31)
    body = upload(client_a, bank, camt_file([], start=start, end=end, opening="0.00", closing="0.00")).json()
    assert (body["summary"]["matched"], body["lines"]["count"], body["ledger_closing_balance"], body["status"]) == (0, 0, "0.00", "reconciled")
    assert body["period_from"].startswith("2026-01-01") and body["period_to"].startswith("2026-01-31")
    empty = upload(client_a, bank, csv_file([]))
    assert empty.status_code == 400 and "period_from" in empty.json()["error"]["details"]["fields"]
    given = upload(client_a, bank, csv_file([], name="empty.csv"), period_from=today().isoformat(), period_to=today().isoformat(),
                   closing_balance="0")
    assert given.status_code == 201
    # no statement lines: every ledger transaction of the period is unmatched, the difference is the ledger's balance
    assert (given.json()["summary"]["unmatched_ledger"], given.json()["balance_difference"]) == (3, "-355.00")


def test_staff_reconcile_any_wallet_users_may_not(bank, books):
    d = today().isoformat()
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_reconciliation", "view_reconciliation"]))
    client = APIClient()
    client.force_authenticate(staff)
    r = upload(client, bank, csv_file([f"{d},300.00,USD,INV-1001,x"]))
    assert r.status_code == 201, r.content
    assert client.get(f"/api/v1/reconciliations/{r.json()['id']}").status_code == 200
    issuance = Wallet.objects.filter(kind="issuance", asset=bank.asset).first()
    refused = upload(client, issuance, csv_file([f"{d},1.00,USD,,"]))
    assert refused.status_code == 400 and "wallet_id" in refused.json()["error"]["details"]["fields"]
    nobody = APIClient()
    nobody.force_authenticate(UserFactory())
    assert upload(nobody, bank, csv_file([f"{d},1.00,USD,,"])).status_code == 403
    assert nobody.get("/api/v1/reconciliations").status_code == 403


def test_a_read_only_key_may_read_but_not_import(org, bank, books):
    from accounts.orgs.services import api_key_create

    _, secret = api_key_create(organization=org.organization, name="reader", actor=org.owner, scopes=("read",))
    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=secret)
    r = upload(reader, bank, csv_file([f"{today().isoformat()},300.00,USD,INV-1001,x"]))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "PERMISSION_DENIED")
    assert reader.get("/api/v1/reconciliations").status_code == 200
