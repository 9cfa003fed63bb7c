"""Server-rendered SVG charts of the overview: volume credited per day and pay orders completed.

Invariants:
- Amounts stay Decimal (geometry included); exact amounts are formatted by
  `core.money.format_amount`, axis labels by `core.money.format_compact`.
- Every figure is the organization's own: its system wallets and its customers' wallets, its
  pay orders; days are UTC days, the last CHART_DAYS of them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.money import format_amount, format_compact
from ledger.models import Entry
from ledger.selectors import Viewer, wallets_owned
from payorders.models import PayOrder

CHART_DAYS = 30


def bar_chart(*, days: list[dt.date], values: dict[dt.date, Decimal], exact: dict[dt.date, str], unit: str,
              width: int = 720, counts: bool = False) -> dict:
    """Geometry of a server-rendered SVG bar chart (one bar per day), all in Decimal. `width` is
    the viewBox width (a narrower chart keeps its text the same size on the page); `counts`
    keeps axis labels whole numbers."""
    width, height = Decimal(width), Decimal(220)
    left, right, top, bottom = Decimal(76), Decimal(20), Decimal(12), Decimal(28)
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(days)
    bar_w = (slot * Decimal("0.72")).quantize(Decimal("0.1"))
    peak = max(values.values(), default=Decimal(0))
    one = Decimal("0.1")
    bars = []
    for i, day in enumerate(days):
        value = values.get(day, Decimal(0))
        h = (value / peak * plot_h).quantize(one) if peak > 0 else Decimal(0)
        if value > 0 and h < 1:
            h = Decimal(1)  # a non-zero day stays visible
        x = (left + slot * i + (slot - bar_w) / 2).quantize(one)
        bars.append({
            "x": x, "y": (top + plot_h - h).quantize(one), "w": bar_w, "h": h,
            "day": day, "title": f"{day.isoformat()}: {exact.get(day, '0')} {unit}".strip(),
            "label": day.strftime("%b %d") if (len(days) - 1 - i) % 7 == 0 else "",
            "label_x": (left + slot * i + slot / 2).quantize(one),
        })
    return {
        "width": width, "height": height, "left": left, "top": top, "bottom_y": top + plot_h,
        "ylabel_x": left - 6, "center_x": (left + plot_w / 2).quantize(one),
        "mid_y": (top + plot_h / 2).quantize(one), "right_x": width - right, "label_y": height - 8,
        "bars": bars, "peak": format_compact(peak) if peak else "",
        "half": format_compact(peak / 2) if peak and (not counts or peak % 2 == 0) else "",
        "unit": unit, "empty": peak == 0,
    }


def _chart_days(now: dt.datetime) -> list[dt.date]:
    today = now.astimezone(dt.timezone.utc).date()
    return [today - dt.timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]


def volume_charts(*, organization, currency: str | None) -> dict:
    """Per day over the last 30 days: money credited to the organization's wallets (its system
    wallets and its customers') in one currency, and pay orders completed."""
    days = _chart_days(timezone.now())
    start = dt.datetime.combine(days[0], dt.time.min, tzinfo=dt.timezone.utc)
    credits = Entry.objects.filter(
        wallet_id__in=wallets_owned(viewer=Viewer(organization=organization)).values("pk"),
        direction=Entry.Direction.CREDIT,
        created_at__gte=start,
    )
    assets = list(
        credits.values("wallet__asset__code", "wallet__asset__exponent").annotate(n=Count("id")).order_by("-n", "wallet__asset__code")
    )
    codes = [a["wallet__asset__code"] for a in assets]
    chosen = next((a for a in assets if a["wallet__asset__code"] == currency), assets[0] if assets else None)
    volume = None
    if chosen is not None:
        exponent = chosen["wallet__asset__exponent"]
        rows = (
            credits.filter(wallet__asset__code=chosen["wallet__asset__code"])
            .annotate(day=TruncDate("created_at", tzinfo=dt.timezone.utc))
            .values("day")
            .annotate(total=Sum("amount"))
        )
        values = {r["day"]: r["total"] for r in rows}
        volume = bar_chart(
            days=days, values=values, exact={d: format_amount(v, exponent) for d, v in values.items()}, unit=chosen["wallet__asset__code"]
        )
    completed = (
        PayOrder.objects.filter(organization=organization, completed_at__gte=start)
        .annotate(day=TruncDate("completed_at", tzinfo=dt.timezone.utc))
        .values("day")
        .annotate(n=Count("id"))
    )
    counts = {r["day"]: Decimal(r["n"]) for r in completed}
    orders = bar_chart(days=days, values=counts, exact={d: str(n) for d, n in counts.items()}, unit="completed", width=480, counts=True)
    return {
        "currencies": codes,
        "currency": chosen["wallet__asset__code"] if chosen else None,
        "volume": volume,
        "orders": orders,
        "orders_total": sum(counts.values(), Decimal(0)),
        "first_day": days[0],
        "last_day": days[-1],
    }
