"""The overview: balances per wallet (system wallets incl. settlement) and the server-rendered
SVG volume charts."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.dashboard.charts import bar_chart
from core.money import format_compact
from ledger.services import wallet_open
from tests.factories.dashboard import complete_payorder, deposit, platform_asset, system_wallet
from tests.factories.accounts import OrgCustomerFactory

pytestmark = pytest.mark.django_db


def test_balances_and_the_volume_chart(alpha, beta, viewer_client, assets):
    settlement = system_wallet(alpha.organization, "USD", purpose="settlement")
    deposit(settlement, "100.50", organization=alpha.organization)
    deposit(settlement, "20.25", organization=alpha.organization)
    eth = system_wallet(alpha.organization, "ETH", label="treasury")
    deposit(eth, "1.5", organization=alpha.organization)
    customer_wallet = wallet_open(asset=platform_asset("USD"), customer=OrgCustomerFactory(organization=alpha.organization))
    deposit(customer_wallet, "3.00", organization=alpha.organization)
    deposit(system_wallet(beta.organization, "USD"), "999.99", organization=beta.organization)

    response = viewer_client.get("/dashboard/")
    assert response.status_code == 200
    body = response.content.decode()
    wallets = {row["wallet"].pk: row for row in response.context["wallets"]}
    assert wallets[settlement.pk]["balance"] == "120.75" and wallets[settlement.pk]["available"] == "120.75"
    assert wallets[eth.pk]["balance"] == "1.50"  # exact, without ETH's 16 trailing zeros
    assert "Settlement" in body and "treasury" in body
    assert response.context["customer_totals"] == [{"code": "USD", "count": 1, "balance": "3.00", "available": "3.00"}]
    assert "999.99" not in body

    # USD has the most credits in the window, so it is the chart shown first; today's bar holds them all.
    charts = response.context["charts"]
    assert charts["currency"] == "USD" and set(charts["currencies"]) == {"USD", "ETH"}
    today = timezone.now().astimezone(dt.timezone.utc).date().isoformat()
    assert body.count('<svg class="chart ') == 2
    bar = re.search(rf'<rect class="bar" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" data-day="{today}" data-value="123.75" tabindex="0"><title>{today}: 123.75 USD</title>', body)
    assert bar, body
    assert Decimal(bar.group(2)) == 180  # the peak day fills the plot
    assert len(charts["volume"]["bars"]) == 30
    assert sum(1 for b in charts["volume"]["bars"] if b["h"] > 0) == 1

    eth_page = viewer_client.get("/dashboard/?currency=ETH").content.decode()
    assert f"{today}: 1.50 ETH</title>" in eth_page


def test_an_empty_organization_renders_empty_charts(alpha, owner_client):
    response = owner_client.get("/dashboard/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "No money has reached your wallets" in body
    assert "Nothing in the last 30 days" in body
    assert "No system wallets yet" in body


def test_completed_pay_orders_are_counted_and_settlements_charted(alpha, owner_client, assets):
    order = complete_payorder(alpha, amount="40.00")
    response = owner_client.get("/dashboard/")
    charts = response.context["charts"]
    assert charts["orders_total"] == 1
    today = timezone.now().astimezone(dt.timezone.utc).date()
    [bar] = [b for b in charts["orders"]["bars"] if b["h"] > 0]
    assert bar["day"] == today and bar["title"] == f"{today.isoformat()}: 1 completed"
    # Settlement credited the organization's settlement wallet: net of the fee, exact.
    settled = [row for row in response.context["wallets"] if row["wallet"].purpose == "settlement"]
    assert len(settled) == 1
    assert Decimal(settled[0]["balance"]) == order.amount - order.settlement_fee
    detail = owner_client.get(f"/dashboard/pay-orders/{order.public_id}/").content.decode()
    assert "COMPLETED" in detail and "Settled" in detail


def test_bar_chart_geometry():
    days = [dt.date(2026, 5, 1) + dt.timedelta(days=i) for i in range(30)]
    values = {days[0]: Decimal("50"), days[1]: Decimal("100"), days[2]: Decimal("0.0001")}
    chart = bar_chart(days=days, values=values, exact={d: str(v) for d, v in values.items()}, unit="USD")
    heights = [b["h"] for b in chart["bars"]]
    assert heights[1] == 180 and heights[0] == 90
    assert heights[2] == 1  # tiny but not zero: still visible
    assert all(h == 0 for h in heights[3:])
    assert all(b["y"] + b["h"] == chart["bottom_y"] for b in chart["bars"])
    xs = [b["x"] for b in chart["bars"]]
    assert xs == sorted(xs) and xs[-1] + chart["bars"][-1]["w"] <= chart["right_x"]
    assert chart["peak"] == "100" and chart["half"] == "50"
    assert [b["label"] for b in chart["bars"]].count("") == 25  # a date label every 7 days
    assert [format_compact(Decimal(v)) for v in ("310.45", "155.225", "2.5", "0.061728394", "12500", "3000000", "1250")] == [
        "310", "155", "2.5", "0.0617", "12.5k", "3M", "1250"]
    empty = bar_chart(days=days, values={}, exact={}, unit="USD")
    assert empty["empty"] and all(b["h"] == 0 for b in empty["bars"]) and empty["peak"] == ""
    odd = bar_chart(days=days, values={days[0]: Decimal(3)}, exact={}, unit="completed", width=480, counts=True)
    assert (odd["peak"], odd["half"]) == ("3", "")  # no "1.5 orders" on the axis
    assert odd["bars"][-1]["x"] + odd["bars"][-1]["w"] <= odd["right_x"] == 460


def test_kpis_and_the_credited_chart_are_net_of_fees(alpha, beta, owner_client, assets):
    from django.db import transaction

    from ledger.posting import Redeem, ledger_post
    from payorders.services.settlement import settlement_wallet
    from tests.factories.dashboard import create_payorder

    order = complete_payorder(alpha, amount="40.00")
    create_payorder(alpha, description="still open")
    create_payorder(beta, description="another organization's")
    wallet = settlement_wallet(organization=alpha.organization, asset=platform_asset("USD"))
    with transaction.atomic():
        ledger_post(type="withdrawal", operations=[Redeem(wallet=wallet, amount=Decimal("10.00"))], organization=alpha.organization).raise_for_error()

    response = owner_client.get("/dashboard/")
    charts = response.context["charts"]
    kpis = charts["kpis"]
    fee, gross = order.settlement_fee, order.settlement_amount
    assert fee > 0
    assert (kpis["currency"], kpis["volume"], kpis["fees"], kpis["net"], kpis["payouts"]) == ("USD", gross, fee, gross - fee, Decimal("10.00"))
    assert charts["open_orders"] == 1
    today = timezone.now().astimezone(dt.timezone.utc).date()
    [bar] = [b for b in charts["volume"]["bars"] if b["h"] > 0]
    assert bar["day"] == today and bar["value"] == f"{gross - fee:.2f}"  # net, not gross
    body = response.content.decode()
    assert f"{gross - fee:.2f} USD" in body and "Open orders" in body
