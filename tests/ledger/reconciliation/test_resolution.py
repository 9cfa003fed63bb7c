"""Resolving unmatched lines from the admin: an adjustment booked through the money path
(reason required, audited, refused when the wallet cannot pay it), and a match by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from compliance.models import AuditEvent
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.reconciliation.models import Reconciliation, ReconciliationLine
from tests.factories.accounts import UserFactory
from tests.factories.reconciliation import csv_file, post, today, upload
from tests.factories.ledger_api import system_wallet

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
URL = "/admin/ledger/reconciliationline/"
Line = ReconciliationLine


@pytest.fixture
def staff():
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_reconciliationline", "change_reconciliation",
                                                                         "view_reconciliation"]))
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def rec(client_a, org, bank):
    """Ledger today: 300.00 in (INV-1001), 20.00 out (bank-fee): 280.00. The statement: 300.00
    (INV-1001), 50.00 interest, and 75.00 ten days ago; closing 425.00."""
    post(bank, org.organization, ("in", "300.00"), reference="INV-1001")
    fee = post(bank, org.organization, ("out", "20.00"), reference="bank-fee")
    d, old = today().isoformat(), (today() - dt.timedelta(days=10)).isoformat()
    body = upload(client_a, bank, csv_file([f"{d},300.00,USD,INV-1001,x", f"{d},50.00,USD,,Interest", f"{old},75.00,USD,,Old"]),
                  closing_balance="425.00").json()
    assert body["balance_difference"] == "145.00"  # 425 - 280
    recon = Reconciliation.objects.get(pk=body["id"])
    recon.fee = fee
    return recon


def _act(client, action: str, lines, **form):
    return client.post(URL, {"action": action, "_selected_action": [line.pk for line in lines], **form}, follow=True)


def test_adjustments_resolve_lines_through_the_money_path(staff, rec, bank):
    interest = rec.lines.get(kind=Line.Kind.EXTERNAL, amount=Decimal("50"))
    fee_line = rec.lines.get(kind=Line.Kind.LEDGER)
    ask = _act(staff, "book_adjustment", [interest])
    assert ask.status_code == 200 and b"Book adjustments" in ask.content
    no_reason = _act(staff, "book_adjustment", [interest], apply="1", reason="")
    assert no_reason.status_code == 200 and Line.objects.get(pk=interest.pk).status == "unmatched"

    _act(staff, "book_adjustment", [interest, fee_line], apply="1", reason="May interest; fee refunded by the bank")
    interest.refresh_from_db()
    fee_line.refresh_from_db()
    assert (interest.status, interest.method, fee_line.status, fee_line.method) == ("resolved", "adjustment", "resolved", "adjustment")
    issue, refund = Transaction.objects.get(pk=interest.adjustment_transaction_id), Transaction.objects.get(pk=fee_line.adjustment_transaction_id)
    assert (issue.type, issue.status, issue.reference) == ("adjustment", "completed", f"reconciliation-{rec.pk}-line-{interest.pk}")
    assert refund.entries.get(wallet=bank).direction == "credit"  # the ledger's -20.00 the bank never took: issued back
    assert Wallet.objects.get(pk=bank.pk).balance == Decimal("350.00")
    rec.refresh_from_db()
    assert (rec.adjustments_total, rec.remaining_difference, rec.status) == (Decimal("70"), Decimal("75"), "open")  # the old line remains
    event = AuditEvent.objects.filter(action="reconciliation.adjustment_completed").first()
    assert event.actor_id == staff.user.pk and event.data["reason"] == "May interest; fee refunded by the bank"

    again = _act(staff, "book_adjustment", [interest], apply="1", reason="twice")
    assert b"is resolved" in again.content
    assert Transaction.objects.filter(type="adjustment").count() == 2
    assert ledger_check() == []


def test_a_refused_adjustment_is_recorded_and_the_line_stays_open(staff, client_a, org, bank):
    post(bank, org.organization, ("in", "10.00"))
    body = upload(client_a, bank, csv_file([f"{today().isoformat()},-1000.00,USD,,Big payout"])).json()
    line = Line.objects.get(reconciliation_id=body["id"], kind=Line.Kind.EXTERNAL)
    page = _act(staff, "book_adjustment", [line], apply="1", reason="payout missing in the ledger")
    assert b"insufficient" in page.content.lower()
    line.refresh_from_db()
    assert line.status == "unmatched" and line.adjustment_transaction_id is None
    failed = Transaction.objects.get(type="adjustment")
    assert (failed.status, failed.failure_code) == ("failed", "INSUFFICIENT_FUNDS")
    assert Wallet.objects.get(pk=bank.pk).balance == Decimal("10.00")
    assert ledger_check() == []


def test_match_by_hand(staff, rec, client_a, org, bank, usd):
    old = post(bank, org.organization, ("in", "75.00"), reference="late-booking")
    line = rec.lines.get(kind=Line.Kind.EXTERNAL, amount=Decimal("75"))
    # the transaction posted after the import is not a ledger line of the reconciliation: picked by id
    ask = _act(staff, "match_by_hand", [line])
    assert ask.status_code == 200 and b"Match a statement line by hand" in ask.content
    two = _act(staff, "match_by_hand", [line, rec.lines.get(kind=Line.Kind.EXTERNAL, amount=Decimal("50"))])
    assert b"Select exactly one" in two.content
    elsewhere = post(system_wallet(org, usd, label="petty cash"), org.organization, ("in", "75.00"))
    refused = _act(staff, "match_by_hand", [line], apply="1", transaction_id=elsewhere.pk, reason="x")
    assert b"moved nothing on wallet" in refused.content and Line.objects.get(pk=line.pk).status == "unmatched"
    _act(staff, "match_by_hand", [line], apply="1", transaction_id=old.pk, reason="booked late by the bank")
    line.refresh_from_db()
    assert (line.kind, line.status, line.method, line.transaction_id, line.note) == ("pair", "resolved", "manual", old.pk, "")
    # the fee ledger line picked from the form's list for another line is refused: it moved -20.00, the line +50.00 (a note)
    interest = rec.lines.get(kind=Line.Kind.EXTERNAL, amount=Decimal("50"))
    _act(staff, "match_by_hand", [interest], apply="1", transaction=rec.fee.pk, reason="netted")
    interest.refresh_from_db()
    fee_line = rec.lines.get(kind=Line.Kind.LEDGER)
    assert interest.status == "resolved" and "different amount" in interest.note
    assert (fee_line.status, fee_line.paired_line_id) == ("resolved", interest.pk)
    again = _act(staff, "match_by_hand", [interest], apply="1", transaction_id=old.pk, reason="x")
    assert b"Select exactly one unmatched" in again.content
    assert AuditEvent.objects.filter(action="reconciliation.line_matched").count() == 2
