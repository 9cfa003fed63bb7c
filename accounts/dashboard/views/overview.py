"""The overview page: the KPIs of the last 30 days (volume, fees, net, payouts, open orders), the
net-credited and completed-orders charts, the organization's open system wallets and its
customers' totals per asset. Reads only; every figure is filtered by the current organization."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, Sum
from django.shortcuts import render

from accounts.dashboard.access import dashboard_view
from accounts.dashboard.charts import volume_charts
from core.money import format_amount
from ledger.models import Wallet
from ledger.selectors import wallet_list


@dashboard_view()
def overview(request):
    organization = request.organization
    open_wallets = wallet_list(organization=organization).exclude(status=Wallet.Status.CLOSED)
    system = list(open_wallets.filter(organization=organization).select_related("organization").order_by("asset__code", "purpose", "label", "id"))
    wallets = [
        {
            "wallet": w,
            "name": w.label or (w.get_purpose_display() if w.purpose else f"{w.asset.code} wallet"),
            "balance": format_amount(w.balance, w.asset.exponent, trim=True),
            "available": format_amount(w.available_balance, w.asset.exponent, trim=True),
            "held": format_amount(w.held, w.asset.exponent, trim=True),
        }
        for w in system
    ]
    customer_totals = [
        {
            "code": row["asset__code"],
            "count": row["count"],
            "balance": format_amount(row["balance"] or Decimal(0), row["asset__exponent"], trim=True),
            "available": format_amount((row["balance"] or Decimal(0)) - (row["held"] or Decimal(0)), row["asset__exponent"], trim=True),
        }
        for row in open_wallets.filter(customer__organization=organization)
        .values("asset__code", "asset__exponent")
        .annotate(count=Count("id"), balance=Sum("balance"), held=Sum("held"))
        .order_by("asset__code")
    ]
    charts = volume_charts(organization=organization, currency=request.GET.get("currency"))
    return render(request, "dashboard/overview.html", {"wallets": wallets, "customer_totals": customer_totals, "charts": charts, "nav": "overview"})
