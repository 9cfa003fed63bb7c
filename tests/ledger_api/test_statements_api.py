"""GET /wallets/{id}/statement and GET /customers/{external_id}/statement: JSON, CSV, PDF, for
owners only, with the opening + movements = closing check."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.utils import timezone
from pypdf import PdfReader

from ledger.models import Entry, Transaction
from ledger.posting import Issue, Redeem, Transfer, ledger_post
from ledger.services import wallet_open
from tests.factories.ledger import WalletFactory
from tests.factories.ledger_api import customer_wallet, fund, person, system_wallet, user_client

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _tick() -> dt.datetime:
    time.sleep(0.002)
    moment = timezone.now()
    time.sleep(0.002)
    return moment


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def story(usd):
    """Jane: 100.00 in before the period; in the period 50.00 in (deposit), 20.50 out to John
    ("Dinner", reference inv-7); after it 5.00 in."""
    jane, john = person(), person()
    jane.first_name, jane.last_name = "Jane", "Doe"
    jane.save(update_fields=["first_name", "last_name"])
    john.first_name, john.last_name = "John", "Smith"
    john.save(update_fields=["first_name", "last_name"])
    wallet = wallet_open(asset=usd, customer=jane.customer)
    johns = wallet_open(asset=usd, customer=john.customer)
    fund(wallet, "100.00")
    start = _tick()
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount="50.00")], description="Card top-up").raise_for_error()
    ledger_post(type="transfer", operations=[Transfer(source=wallet, destination=johns, amount="20.50")],
                customer=jane.customer, reference="inv-7", description="Dinner").raise_for_error()
    end = _tick()
    fund(wallet, "5.00")
    return {"user": jane, "wallet": wallet, "johns": johns, "start": start, "end": end}


def test_json_statement_of_a_period(story):
    wallet = story["wallet"]
    r = user_client(story["user"]).get(f"/api/v1/wallets/{wallet.pk}/statement", {"from": _iso(story["start"]), "to": _iso(story["end"])})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["opening_balance"], body["total_in"], body["total_out"], body["closing_balance"]) == ("100.00", "50.00", "20.50", "129.50")
    assert body["balanced"] is True
    assert body["check"] == "Opening 100.00 + in 50.00 - out 20.50 = closing 129.50 USD: balanced."
    assert body["entry_count"] == 2 and len(body["entries"]) == 2
    deposit, transfer = body["entries"]
    assert (deposit["entry_type"], deposit["amount"], deposit["balance_after"], deposit["description"]) == ("credit", "50.00", "150.00", "Card top-up")
    assert deposit["counterparty"] == "Coffer issuance account" and deposit["counterparty_wallet_id"] is None
    assert (transfer["entry_type"], transfer["amount"], transfer["balance_after"]) == ("debit", "20.50", "129.50")
    assert (transfer["counterparty"], transfer["counterparty_wallet_id"]) == ("John Smith", story["johns"].pk)
    assert (transfer["reference"], transfer["description"], transfer["transaction_type"]) == ("inv-7", "Dinner", "transfer")
    assert body["as_of_entry_id"] == Entry.objects.filter(wallet=wallet, created_at__lte=story["end"]).order_by("-id").first().pk


def test_whole_history_without_from_and_to(story):
    body = user_client(story["user"]).get(f"/api/v1/wallets/{story['wallet'].pk}/statement").json()
    assert (body["from"], body["opening_balance"], body["closing_balance"], body["entry_count"]) == (None, "0.00", "134.50", 4)


def test_a_period_without_entries_shows_opening_equal_to_closing(story):
    wallet = story["wallet"]
    client = user_client(story["user"])
    # Between the two postings of the story? No: a gap after all of it, and one before any of it.
    later = (timezone.now() + dt.timedelta(seconds=1)).isoformat()
    body = client.get(f"/api/v1/wallets/{wallet.pk}/statement", {"from": later, "to": later}).json()
    assert body["opening_balance"] == body["closing_balance"] == "134.50"
    assert (body["entries"], body["entry_count"], body["total_in"], body["total_out"]) == ([], 0, "0.00", "0.00")
    body = client.get(f"/api/v1/wallets/{wallet.pk}/statement", {"from": "2020-01-01", "to": "2020-01-31"}).json()
    assert body["opening_balance"] == body["closing_balance"] == "0.00"
    pdf = client.get(f"/api/v1/wallets/{wallet.pk}/statement", {"from": "2020-01-01", "to": "2020-01-31", "format": "pdf"})
    text = _pdf_text(pdf.content)
    assert "No entries in this period" in text
    assert "Opening 0.00 + in 0.00 - out 0.00 = closing 0.00 USD: balanced." in text


@pytest.mark.parametrize("params, field", [
    ({"from": "last week"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"to": "2026-05-31T12:00:00+18:00"}, "to"),  # an offset the database cannot compare (core.filters)
    ({"from": "2026-06-01", "to": "2026-05-31"}, "from"),
    ({"from": "2026-05-31T12:00:01Z", "to": "2026-05-31T12:00:00Z"}, "from"),
    ({"format": "xlsx"}, "format"),
])
def test_bad_parameters_are_400_naming_the_field(story, params, field):
    r = user_client(story["user"]).get(f"/api/v1/wallets/{story['wallet'].pk}/statement", params)
    assert r.status_code == 400, r.content
    assert r["Content-Type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"]["fields"]


def test_someone_elses_wallet_is_a_404_in_every_format(story, usd, org, client_a):
    stranger = user_client(person())
    for fmt in ("json", "csv", "pdf"):
        r = stranger.get(f"/api/v1/wallets/{story['wallet'].pk}/statement", {"format": fmt})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", fmt
        r = client_a.get(f"/api/v1/wallets/{story['wallet'].pk}/statement", {"format": fmt})
        assert r.status_code == 404, fmt


def test_csv_statement(story):
    wallet = story["wallet"]
    r = user_client(story["user"]).get(f"/api/v1/wallets/{wallet.pk}/statement",
                                       {"from": _iso(story["start"]), "to": _iso(story["end"]), "format": "csv"})
    assert r.status_code == 200
    assert isinstance(r, StreamingHttpResponse)
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"].startswith(f'attachment; filename="statement-wallet-{wallet.pk}-')
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert [row["row_type"] for row in rows] == ["opening", "entry", "entry", "total_in", "total_out", "closing", "check"]
    assert rows[0]["balance_after"] == "100.00"
    assert (rows[2]["amount"], rows[2]["counterparty"], rows[2]["reference"]) == ("20.50", "John Smith", "inv-7")
    assert (rows[3]["amount"], rows[4]["amount"], rows[5]["balance_after"]) == ("50.00", "20.50", "129.50")
    assert rows[6]["description"] == "Opening 100.00 + in 50.00 - out 20.50 = closing 129.50 USD: balanced."


def test_csv_cells_cannot_smuggle_spreadsheet_formulas(usd):
    user = person()
    wallet = wallet_open(asset=usd, customer=user.customer)
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount="1.00")], description='=HYPERLINK("http://evil")').raise_for_error()
    r = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/statement", {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert rows[1]["description"] == '\'=HYPERLINK("http://evil")'


def _pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_pdf_statement_is_a_real_document(story):
    wallet = story["wallet"]
    r = user_client(story["user"]).get(f"/api/v1/wallets/{wallet.pk}/statement",
                                       {"from": _iso(story["start"]), "to": _iso(story["end"]), "format": "pdf"})
    assert r.status_code == 200
    assert r["Content-Type"] == "application/pdf"
    assert r["Content-Disposition"].endswith('.pdf"')
    text = _pdf_text(r.content)
    for expected in (f"Statement: wallet {wallet.pk} (USD)", "Jane Doe", "Opening balance", "100.00 USD", "Closing balance",
                     "129.50 USD", "John Smith", "inv-7", "Dinner", "Card top-up",
                     "Opening 100.00 + in 50.00 - out 20.50 = closing 129.50 USD: balanced."):
        assert expected in text, expected


def test_amounts_follow_the_assets_exponent(org, client_a, points):
    wallet = customer_wallet(org, points, "120", external_id="p-1")
    body = client_a.get(f"/api/v1/wallets/{wallet.pk}/statement").json()
    assert (body["closing_balance"], body["entries"][0]["amount"]) == ("120", "120")


def test_eth_amounts_keep_eighteen_decimals(usd):
    from tests.factories.ledger_api import platform_asset

    eth = platform_asset("ETH")
    user = person()
    wallet = WalletFactory(asset=eth, customer=user.customer, funded="0.000000000000000001")
    body = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/statement").json()
    assert body["closing_balance"] == "0.000000000000000001"


def test_json_and_pdf_refuse_a_period_too_long_and_point_to_csv(story, settings):
    settings.STATEMENT_INLINE_MAX_ENTRIES = 3
    client = user_client(story["user"])
    for fmt in ("json", "pdf"):
        r = client.get(f"/api/v1/wallets/{story['wallet'].pk}/statement", {"format": fmt})
        assert r.status_code == 400, fmt
        assert r.json()["error"]["details"]["entry_count"] == 4
        assert "format=csv" in r.json()["error"]["message"]
    assert client.get(f"/api/v1/wallets/{story['wallet'].pk}/statement", {"format": "csv"}).status_code == 200


# --- Organizations --------------------------------------------------------------------------------

def test_organizations_get_their_customers_and_system_wallets(org, client_a, client_b, usd, points):
    customer = customer_wallet(org, usd, "10.00", external_id="ada", name="Ada Lovelace").customer
    second = WalletFactory(asset=points, customer=customer, funded="7")
    system = system_wallet(org, usd, label="float")
    assert client_a.get(f"/api/v1/wallets/{system.pk}/statement").status_code == 200
    assert client_b.get(f"/api/v1/wallets/{second.pk}/statement").status_code == 404

    r = client_a.get("/api/v1/customers/ada/statement")
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["customer_external_id"], body["customer_name"]) == ("ada", "Ada Lovelace")
    assert [(w["currency"], w["closing_balance"], w["customer_external_id"]) for w in body["wallets"]] == [("USD", "10.00", "ada"), ("POINTS", "7", "ada")]

    rows = list(csv.DictReader(io.StringIO(b"".join(client_a.get("/api/v1/customers/ada/statement", {"format": "csv"}).streaming_content).decode())))
    assert [r["row_type"] for r in rows].count("check") == 2
    assert {r["currency"] for r in rows} == {"USD", "POINTS"}

    text = _pdf_text(client_a.get("/api/v1/customers/ada/statement", {"format": "pdf"}).content)
    assert "Statement of Ada Lovelace" in text and "7 POINTS" in text and "10.00 USD" in text


def test_another_organizations_customer_is_a_404_and_users_cannot_call_it(org, other_org, client_b, usd):
    customer_wallet(org, usd, "10.00", external_id="ada")
    r = client_b.get("/api/v1/customers/ada/statement")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert client_b.get("/api/v1/customers/ada/statement", {"from": "bad"}).status_code == 400
    assert user_client(person()).get("/api/v1/customers/ada/statement").status_code in (403, 404)


# --- Invariant breach ------------------------------------------------------------------------------

def test_a_ledger_that_does_not_balance_is_refused_and_logged(usd, caplog):
    """A corrupted history (an entry whose balance_after does not continue the chain, inserted
    here past the posting engine; the zero-sum trigger still holds) must never print."""
    user = person()
    wallet = WalletFactory(asset=usd, customer=user.customer, funded="10.00")
    issuance = Entry.objects.exclude(wallet=wallet).filter(transaction__entries__wallet=wallet).first().wallet
    tx = Transaction.objects.create(type=Transaction.Type.ADJUSTMENT)
    Entry.objects.create(transaction=tx, wallet=wallet, direction="credit", amount=Decimal("1.00"), balance_after=Decimal("99.00"), operation_index=0)
    Entry.objects.create(transaction=tx, wallet=issuance, direction="debit", amount=Decimal("1.00"), balance_after=Decimal("-11.00"), operation_index=0)
    client = user_client(user)
    for fmt in ("json", "pdf"):
        r = client.get(f"/api/v1/wallets/{wallet.pk}/statement", {"format": fmt})
        assert r.status_code == 500, fmt
        assert r.json()["error"]["code"] == "SERVER_ERROR"
        assert "does not balance" in r.json()["error"]["message"]
    assert "statement refused: wallet %s" % wallet.pk in caplog.text


def test_a_chain_break_inside_the_period_cuts_the_csv_short(usd, caplog):
    """Totals agree (the break is undone by a later entry) but a row does not continue the one
    before: the CSV stream stops there, with no check row."""
    from ledger.statements import StatementImbalance

    user = person()
    wallet = WalletFactory(asset=usd, customer=user.customer, funded="10.00")
    issuance = Entry.objects.exclude(wallet=wallet).filter(transaction__entries__wallet=wallet).first().wallet
    for amount, wrong_after in (("1.00", "50.00"), ("1.00", "12.00")):  # 11.00 expected, then 12.00
        tx = Transaction.objects.create(type=Transaction.Type.ADJUSTMENT)
        Entry.objects.create(transaction=tx, wallet=wallet, direction="credit", amount=Decimal(amount), balance_after=Decimal(wrong_after), operation_index=0)
        Entry.objects.create(transaction=tx, wallet=issuance, direction="debit", amount=Decimal(amount), balance_after=Decimal("-1"), operation_index=0)
    r = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/statement", {"format": "csv"})
    lines = []
    with pytest.raises(StatementImbalance):
        for chunk in r.streaming_content:
            lines.append(chunk.decode())
    assert not any(line.startswith("check,") for line in lines)
    assert "statement refused" in caplog.text


# --- A large CSV streams ------------------------------------------------------------------------------

@pytest.mark.slow
def test_csv_of_20k_entries_streams_through_a_server_side_cursor(usd):
    user = person()
    wallet = wallet_open(asset=usd, customer=user.customer)
    # 2,000 transactions of 5 issues and 5 redeems: 20,000 entries on the wallet. Small
    # transactions keep the deferred zero-sum trigger (which sums the transaction's entries per
    # row) cheap.
    for _ in range(2000):
        ledger_post(type="adjustment", operations=[Issue(wallet=wallet, amount="2.00"), Redeem(wallet=wallet, amount="1.00")] * 5).raise_for_error()
    assert Entry.objects.filter(wallet=wallet).count() == 20_000

    r = user_client(user).get(f"/api/v1/wallets/{wallet.pk}/statement", {"format": "csv"})
    assert isinstance(r, StreamingHttpResponse)
    stream = iter(r.streaming_content)
    head = [next(stream) for _ in range(3)]  # header, opening, first entry
    assert head[1].startswith(b"opening,")
    with connection.cursor() as cursor:  # the entries are being read through an open server-side cursor
        cursor.execute("SELECT count(*) FROM pg_cursors WHERE is_holdable OR NOT is_holdable")
        assert cursor.fetchone()[0] >= 1
    rest = list(stream)
    lines = head + rest
    assert len(lines) == 1 + 1 + 20_000 + 4
    assert lines[-2].decode().startswith("closing,") and ",10000.00," in lines[-2].decode()
    assert lines[-1].decode().startswith("check,")
    assert "Opening 0.00 + in 20000.00 - out 10000.00 = closing 10000.00 USD: balanced." in lines[-1].decode()
