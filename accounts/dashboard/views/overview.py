"""The overview page: the organization's open system wallets, its customers' totals per asset,
and the volume charts. Reads only; every figure is filtered by the current organization."""

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
            "balance": w.asset.format(w.balance),
            "available": w.asset.format(w.available_balance),
            "held": w.asset.format(w.held),
        }
        for w in system
    ]
    customer_totals = [
        {
            "code": row["asset__code"],
            "count": row["count"],
            "balance": format_amount(row["balance"] or Decimal(0), row["asset__exponent"]),
            "available": format_amount((row["balance"] or Decimal(0)) - (row["held"] or Decimal(0)), row["asset__exponent"]),
        }
        for row in open_wallets.filter(customer__organization=organization)
        .values("asset__code", "asset__exponent")
        .annotate(count=Count("id"), balance=Sum("balance"), held=Sum("held"))
        .order_by("asset__code")
    ]
    charts = volume_charts(organization=organization, currency=request.GET.get("currency"))
    return render(request, "dashboard/overview.html", {"wallets": wallets, "customer_totals": customer_totals, "charts": charts, "nav": "overview"})
