"""The transactions page and its CSV export, filtered exactly as `GET /transactions`
(ledger.filters.TransactionFilter, ledger.selectors) for the current organization.

Invariants:
- The export streams in keyset batches of CSV_BATCH (newest first), so its memory is bounded.
- A cell that a spreadsheet would run as a formula gets a leading quote (`csv_safe`).
- Money columns are exact at the asset's exponent (`core.money.format_amount`): `fee` is what the
  transaction paid the platform, `net` = amount - fee, `running_balance` the balance of the
  organization's wallet in the transaction right after it (`balance_wallet_id` names that wallet;
  empty when neither side is the organization's).
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from accounts.dashboard.access import dashboard_view, page_of
from accounts.dashboard.forms import TransactionFilterForm
from core.money import MAX_EXPONENT, format_amount
from ledger.filters import TransactionFilter
from ledger.selectors import Viewer, assets_visible, transactions_visible, wallets_owned
from ledger.serializers import TransactionPresenter, transactions_with_entries

CSV_BATCH = 500

CSV_COLUMNS = (
    "id", "created_at", "completed_at", "type", "status", "amount", "currency", "fee", "net",
    "source_wallet_id", "source_wallet_name", "destination_wallet_id", "destination_wallet_name",
    "reference", "description", "running_balance", "balance_wallet_id",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading quote
    (OWASP CSV injection). Amounts are positive decimal strings, so they never change."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def with_net(rows: list[dict], viewer) -> list[dict]:
    """Adds `net` (amount - fee, exact at the amount's exponent) and the wallet whose balance
    `running_balance` is (the presenter's `balance_after`: the first side the viewer owns)."""
    sides = {w for row in rows for w in (row.get("source_wallet_id"), row.get("destination_wallet_id")) if w is not None}
    owned = set(wallets_owned(viewer=viewer).filter(pk__in=sides).values_list("pk", flat=True)) if sides else set()
    for row in rows:
        _add_net(row, owned)
    return rows


def _add_net(row: dict, owned: set[int]) -> None:
    try:
        amount, fee = Decimal(str(row.get("amount"))), Decimal(str(row.get("fee") or "0"))
    except ArithmeticError:
        row["net"] = ""
    else:
        places = max(-amount.as_tuple().exponent, -fee.as_tuple().exponent, 0)
        row["net"] = format_amount(amount - fee, min(places, MAX_EXPONENT))
    row["running_balance"] = row.get("balance_after")
    mine = [w for w in (row.get("source_wallet_id"), row.get("destination_wallet_id")) if w in owned]
    row["balance_wallet_id"] = mine[0] if mine and row["running_balance"] is not None else None


def _positive(text) -> bool:
    try:
        return Decimal(str(text)) > 0
    except ArithmeticError:
        return False


class _Echo:
    def write(self, value):
        return value


def _transaction_rows(queryset, viewer):
    """The filtered transactions, newest first, in batches by id (keyset pagination)."""
    presenter = TransactionPresenter(viewer=viewer)
    last_id = None
    while True:
        batch_qs = queryset.order_by("-id")
        if last_id is not None:
            batch_qs = batch_qs.filter(id__lt=last_id)
        batch = list(transactions_with_entries(batch_qs)[:CSV_BATCH])
        if not batch:
            return
        yield from with_net(presenter.many(batch), viewer)
        last_id = batch[-1].pk


def transactions_csv(queryset, viewer, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def stream():
        yield writer.writerow(CSV_COLUMNS)
        for row in _transaction_rows(queryset, viewer):
            yield writer.writerow([csv_safe(row.get(col)) for col in CSV_COLUMNS])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    add_never_cache_headers(response)
    return response


@dashboard_view()
def transaction_list(request):
    organization = request.organization
    viewer = Viewer(organization=organization)
    currencies = list(assets_visible(organization=organization).order_by("code").values_list("code", flat=True).distinct())
    params = request.GET.copy()
    export = params.pop("format", [""])[-1] == "csv"
    form = TransactionFilterForm(params or None, currencies=currencies)
    transactions = transactions_visible(viewer=viewer)
    if form.is_bound and not form.is_valid():
        transactions = transactions.none()
    elif form.is_bound:
        filterset = TransactionFilter(data=form.filter_data(), queryset=transactions)
        # The form checked each value already; should the API's filter still refuse one, show nothing.
        transactions = filterset.qs if filterset.is_valid() else transactions.none()
    if export:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return transactions_csv(transactions, viewer, f"coffer-transactions-{organization.slug}-{stamp}.csv")
    page = page_of(request, transactions_with_entries(transactions.order_by("-id")))
    rows = with_net(TransactionPresenter(viewer=viewer).many(page.object_list), viewer)
    for row in rows:
        row["has_fee"] = _positive(row.get("fee"))
    csv_query = params.copy()
    csv_query.pop("page", None)
    csv_query["format"] = "csv"
    return render(
        request, "dashboard/transaction_list.html",
        {"form": form, "page": page, "rows": rows, "csv_url": f"{reverse('dashboard:transactions')}?{csv_query.urlencode()}", "nav": "transactions"},
    )
