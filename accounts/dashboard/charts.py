"""Server-rendered SVG charts and the KPIs of the overview: money credited per day, net of fees,
and pay orders completed.

Invariants:
- Amounts stay Decimal (geometry included); exact amounts are formatted by
  `core.money.format_amount`, axis labels by `core.money.format_compact`.
- Every figure is the organization's own: its system wallets and its customers' wallets, its
  pay orders; days are UTC days, the last CHART_DAYS of them; money figures are in one currency.
- Read from the ledger's entries, so they agree with the statements: volume = credits to those
  wallets; fees = their debits by an operation paying the platform fee account (the settlement
  fee of a pay order, a customer's withdrawal fee); net = volume - fees (what the chart shows);
  payouts = their other debits by payout and withdrawal transactions.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.money import format_amount, format_compact
from ledger.models import Entry, Posting, Transaction, Wallet
from ledger.selectors import Viewer, wallets_owned
from payorders.models import PayOrder
from payorders.selectors import UNFINISHED_STATUSES

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
            "day": day, "title": f"{day.isoformat()}: {exact.get(day, '0')} {unit}".strip(), "value": exact.get(day, "0"),
            "label": day.strftime("%b %d") if (len(days) - 1 - i) % 7 == 0 else "",
            "label_x": (left + slot * i + slot / 2).quantize(one),
        })
    return {
        "width": width, "height": height, "left": left, "top": top, "bottom_y": top + plot_h,
        "ylabel_x": left - 6, "center_x": (left + plot_w / 2).quantize(one),
        "mid_y": (top + plot_h / 2).quantize(one), "right_x": width - right, "label_y": height - 8,
        "bars": bars, "peak": format_compact(peak) if peak else "",
        "listed": [(day, exact.get(day, str(values[day]))) for day in reversed(days) if values.get(day)],  # days with a value, newest first
        "half": format_compact(peak / 2) if peak and (not counts or peak % 2 == 0) else "",
        "unit": unit, "empty": peak == 0,
    }


def _chart_days(now: dt.datetime) -> list[dt.date]:
    today = now.astimezone(dt.timezone.utc).date()
    return [today - dt.timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]


def _per_day(entries) -> dict[dt.date, Decimal]:
    rows = entries.annotate(day=TruncDate("created_at", tzinfo=dt.timezone.utc)).values("day").annotate(total=Sum("amount"))
    return {r["day"]: r["total"] for r in rows}


def volume_charts(*, organization, currency: str | None) -> dict:
    """Per day over the last 30 days, in one currency (`currency`, else the organization's
    settlement currency when it has entries in it, else its most used): money credited to the
    organization's wallets net of fees, with the KPIs of the period; and pay orders completed."""
    days = _chart_days(timezone.now())
    start = dt.datetime.combine(days[0], dt.time.min, tzinfo=dt.timezone.utc)
    entries = Entry.objects.filter(
        wallet_id__in=wallets_owned(viewer=Viewer(organization=organization)).values("pk"), created_at__gte=start,
    )
    credits = entries.filter(direction=Entry.Direction.CREDIT)
    assets = list(
        credits.values("wallet__asset__code", "wallet__asset__exponent").annotate(n=Count("id")).order_by("-n", "wallet__asset__code")
    )
    codes = [a["wallet__asset__code"] for a in assets]
    by_code = {a["wallet__asset__code"]: a for a in assets}
    chosen = by_code.get(currency) or by_code.get(organization.settlement_currency) or (assets[0] if assets else None)
    volume = kpis = None
    if chosen is not None:
        code, exponent = chosen["wallet__asset__code"], chosen["wallet__asset__exponent"]
        mine = entries.filter(wallet__asset__code=code)
        paid_to_fee = Posting.objects.filter(
            transaction_id=OuterRef("transaction_id"), index=OuterRef("operation_index"), destination_purpose=Wallet.Purpose.FEE,
        )
        debits = mine.filter(direction=Entry.Direction.DEBIT)
        fee_entries = debits.filter(Exists(paid_to_fee))
        gross = _per_day(mine.filter(direction=Entry.Direction.CREDIT))
        fees = _per_day(fee_entries)
        net = {day: gross.get(day, Decimal(0)) - fees.get(day, Decimal(0)) for day in set(gross) | set(fees)}
        shown = {day: max(value, Decimal(0)) for day, value in net.items()}  # a day of only fees draws no bar
        payouts = debits.exclude(Exists(paid_to_fee)).filter(
            transaction__type__in=(Transaction.Type.PAYOUT, Transaction.Type.WITHDRAWAL)
        ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
        volume = bar_chart(
            days=days, values=shown, unit=code,
            exact={d: format_amount(v, exponent, trim=True) for d, v in net.items()},
        )
        total_gross, total_fees = sum(gross.values(), Decimal(0)), sum(fees.values(), Decimal(0))
        kpis = {
            "currency": code, "exponent": exponent,
            "volume": total_gross, "fees": total_fees, "net": total_gross - total_fees, "payouts": payouts,
        }
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
        "kpis": kpis,
        "open_orders": PayOrder.objects.filter(organization=organization, status__in=UNFINISHED_STATUSES).count(),
        "orders": orders,
        "orders_total": sum(counts.values(), Decimal(0)),
        "first_day": days[0],
        "last_day": days[-1],
    }
