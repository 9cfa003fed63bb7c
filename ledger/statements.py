"""Wallet statements: opening balance, every entry of a period, closing balance, totals, and the
proof that they agree. Read-only: nothing here writes or locks.

Invariants:
* A statement is taken as of one entry: `as_of_entry_id`, the wallet's last entry at or before
  the period's end when the statement is built. Within a wallet, entries are inserted under the
  wallet's row lock and take their `created_at` after it, so ids and times rise together and an
  entry committed later has a larger id: every read of the statement (opening, totals, the rows
  streamed afterwards) is bounded by that id, and a concurrent posting cannot tear it.
* opening + total in - total out = closing, and each row's `balance_after` continues the one
  before it. The totals are checked before anything is returned; the rows while they stream.
  A mismatch is a broken ledger invariant: it is logged and the statement refused (a 500, or a
  stream cut short with no closing row), never printed wrong.
* Opening and closing balances are single descents of the (wallet, created_at, id) index; rows
  are read through a server-side cursor in chunks, so a CSV of any size is never held in memory.
* Amounts are rendered at the asset's exponent (`core.money.format_amount`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, Count, OuterRef, Q, Subquery, Sum, When
from django.utils import timezone

from core.errors import CofferError, ValidationFailed
from core.filters import parse_instant
from core.money import format_amount
from ledger.models import Entry, Posting, Wallet
from ledger.selectors import wallet_archived_guard, wallet_balance_at, wallet_balance_before, wallet_owner_name, wallets_with_owners

logger = logging.getLogger("coffer.ledger.statements")

FORMATS = ("json", "csv", "pdf")
CHUNK = 2000
ZERO = Decimal(0)


class StatementImbalance(CofferError):
    """The ledger contradicts itself for this wallet: refuse, never print a wrong statement."""

    code, status = "SERVER_ERROR", 500
    default_message = "This statement does not balance, so it was not produced; the incident is logged."


def inline_max_entries() -> int:
    """The most entries a JSON or PDF statement carries (CSV streams any number)."""
    return int(getattr(settings, "STATEMENT_INLINE_MAX_ENTRIES", 10_000))


# --- Parameters ---------------------------------------------------------------------------------

def _instant(params, name: str, *, bound: str) -> dt.datetime | None:
    """`from` / `to` / `at` through the shared date-range parser (`core.filters.parse_instant`:
    a naive time is UTC; offsets and years the database cannot compare are refused); a bare
    `from` date starts that UTC day, a bare `to` date ends it."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = parse_instant(str(raw))
    except ValueError as exc:
        message = str(exc)
        raise ValidationFailed(f"{name}: {message}", details={"fields": {name: [message]}}) from None
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time.min if bound == "from" else dt.time.max, tzinfo=dt.timezone.utc)


def balance_at_parse(params) -> dt.datetime | None:
    """`at` for GET /wallets/{id}/balance: an instant (a bare date means the end of that UTC day);
    None when absent (now)."""
    return _instant(params, "at", bound="to")


@dataclass(frozen=True)
class Period:
    start: dt.datetime | None  # inclusive; None: since the wallet's first entry
    end: dt.datetime  # inclusive


def period_parse(params) -> Period:
    """`from` and `to` of a statement request. `to` defaults to now; `from` > `to` is a 400."""
    start = _instant(params, "from", bound="from")
    end = _instant(params, "to", bound="to") or timezone.now()
    if start is not None and start > end:
        message = "'from' must not be after 'to'."
        raise ValidationFailed(message, details={"fields": {"from": [message]}, "from": start.isoformat(), "to": end.isoformat()})
    return Period(start=start, end=end)


def format_parse(params, default: str = "json") -> str:
    value = (params.get("format") or default).strip().lower()
    if value not in FORMATS:
        message = f"One of {', '.join(FORMATS)}."
        raise ValidationFailed(f"format: {message}", details={"fields": {"format": [message]}})
    return value


# --- Building -----------------------------------------------------------------------------------

@dataclass
class Statement:
    """One wallet's statement over `period` (module docstring). `rows()` yields its entries."""

    wallet: Wallet
    period: Period
    as_of_entry_id: int | None
    opening: Decimal
    closing: Decimal
    total_in: Decimal
    total_out: Decimal
    entry_count: int
    _names: dict[int, tuple[str, bool]] = field(default_factory=dict, repr=False)  # wallet id -> (name, id shown)

    @property
    def currency(self) -> str:
        return self.wallet.asset.code

    def fmt(self, amount: Decimal) -> str:
        return format_amount(amount, self.wallet.asset.exponent)

    @property
    def check_text(self) -> str:
        return (
            f"Opening {self.fmt(self.opening)} + in {self.fmt(self.total_in)} - out {self.fmt(self.total_out)}"
            f" = closing {self.fmt(self.closing)} {self.currency}: balanced."
        )

    def entries(self):
        """The period's entries, oldest first, bounded by `as_of_entry_id`, each with its
        counterparty wallet id (the other side of its posting) and its transaction."""
        bounded = self.as_of_entry_id if self.as_of_entry_id is not None else 0
        postings = Posting.objects.filter(transaction_id=OuterRef("transaction_id"), index=OuterRef("operation_index"))
        qs = Entry.objects.filter(wallet_id=self.wallet.pk, created_at__lte=self.period.end, id__lte=bounded)
        if self.period.start is not None:
            qs = qs.filter(created_at__gte=self.period.start)
        return (
            qs.annotate(
                counterparty_wallet_id=Case(
                    When(direction=Entry.Direction.DEBIT, then=Subquery(postings.values("destination_wallet_id")[:1])),
                    default=Subquery(postings.values("source_wallet_id")[:1]),
                )
            )
            .select_related("transaction")
            .order_by("created_at", "id")
        )

    def rows(self) -> Iterator[dict]:
        """Every entry as a dict of display strings, read in chunks through a server-side
        cursor. Each `balance_after` must continue the last: a break is logged and raised."""
        running = self.opening
        batch: list[Entry] = []
        for entry in self.entries().iterator(chunk_size=CHUNK):
            batch.append(entry)
            if len(batch) >= CHUNK:
                yield from self._render(batch, running)
                running = batch[-1].balance_after
                batch = []
        if batch:
            yield from self._render(batch, running)
            running = batch[-1].balance_after
        if running != self.closing:
            self._refuse(f"the last row ends at {running}, the closing balance is {self.closing}")

    def _render(self, batch: list[Entry], running: Decimal) -> Iterator[dict]:
        self._resolve_names({e.counterparty_wallet_id for e in batch if e.counterparty_wallet_id is not None})
        for entry in batch:
            running += entry.signed_amount
            if running != entry.balance_after:
                self._refuse(f"entry {entry.pk} has balance_after {entry.balance_after}, its predecessors sum to {running}")
            tx = entry.transaction
            cp = entry.counterparty_wallet_id
            cp_name, cp_visible = self._names.get(cp, ("", False)) if cp is not None else ("", False)
            yield {
                "entry_id": entry.pk,
                "transaction_id": entry.transaction_id,
                "created_at": entry.created_at,
                "transaction_type": tx.type,
                "entry_type": entry.direction,
                "amount": self.fmt(entry.amount),
                "balance_after": self.fmt(entry.balance_after),
                "counterparty_wallet_id": cp if cp_visible else None,
                "counterparty": cp_name,
                "reference": tx.reference,
                "description": tx.description,
            }

    def _resolve_names(self, wallet_ids: set[int]) -> None:
        missing = sorted(wallet_ids - self._names.keys())
        if not missing:
            return
        if len(self._names) > 50_000:  # bounded memory on statements with many counterparties
            self._names.clear()
        found = wallets_with_owners(f"w.id IN ({', '.join(['%s'] * len(missing))})", missing)
        for wid in missing:
            wallet = found.get(wid)
            if wallet is None:
                self._names[wid] = ("", False)
            elif wallet.is_platform:  # a platform account: its purpose, never its internal shard id
                self._names[wid] = (f"Coffer {wallet.purpose or 'platform'} account", False)
            else:
                self._names[wid] = (wallet_owner_name(wallet) or "", True)

    def _refuse(self, why: str) -> None:
        logger.error(
            "statement refused: wallet %s, period %s..%s, as of entry %s: %s",
            self.wallet.pk, self.period.start, self.period.end, self.as_of_entry_id, why,
        )
        raise StatementImbalance(details={"wallet_id": self.wallet.pk})


def statement_build(*, wallet: Wallet, period: Period) -> Statement:
    """Opening, closing and totals of `wallet` over `period`, checked (module docstring). The
    wallet must already be access-checked (`ledger.selectors.wallet_get_visible`). A period that
    reaches into an archived month of the wallet is refused (HISTORY_ARCHIVED), never printed
    without its entries."""
    wallet_archived_guard(wallet_id=wallet.pk, starts_by=period.end, ends_after=period.start)
    closing = wallet_balance_at(wallet=wallet, at=period.end)
    opening = wallet_balance_before(wallet=wallet, before=period.start) if period.start is not None else None
    opening_balance = opening.balance if opening is not None else ZERO
    bounded = closing.entry_id if closing.entry_id is not None else 0
    qs = Entry.objects.filter(wallet_id=wallet.pk, created_at__lte=period.end, id__lte=bounded)
    if period.start is not None:
        qs = qs.filter(created_at__gte=period.start)
    totals = qs.aggregate(
        total_in=Sum("amount", filter=Q(direction=Entry.Direction.CREDIT)),
        total_out=Sum("amount", filter=Q(direction=Entry.Direction.DEBIT)),
        count=Count("id"),
    )
    statement = Statement(
        wallet=wallet,
        period=period,
        as_of_entry_id=closing.entry_id,
        opening=opening_balance,
        closing=closing.balance,
        total_in=totals["total_in"] or ZERO,
        total_out=totals["total_out"] or ZERO,
        entry_count=totals["count"],
    )
    if statement.opening + statement.total_in - statement.total_out != statement.closing:
        statement._refuse(
            f"opening {statement.opening} + in {statement.total_in} - out {statement.total_out} != closing {statement.closing}"
        )
    return statement


def statement_inline_check(statements: Iterable[Statement]) -> None:
    """JSON and PDF statements carry their rows in one document: refuse a period too long for
    that (a 400 that points to the CSV, which streams any size)."""
    count = sum(s.entry_count for s in statements)
    limit = inline_max_entries()
    if count > limit:
        raise ValidationFailed(
            f"This period has {count} entries; JSON and PDF statements carry at most {limit}. Use format=csv or a shorter period.",
            details={"entry_count": count, "limit": limit, "fields": {"format": ["Use csv for this period."]}},
        )


# --- Rendering ----------------------------------------------------------------------------------

def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def statement_header(statement: Statement) -> dict:
    wallet = statement.wallet
    return {
        "wallet_id": wallet.pk,
        "currency": statement.currency,
        "owner_name": wallet_owner_name(wallet),
        "customer_external_id": wallet.customer.external_id if wallet.customer_id and wallet.customer.organization_id else None,
        "from": _iso(statement.period.start),
        "to": _iso(statement.period.end),
        "as_of_entry_id": statement.as_of_entry_id,
        "opening_balance": statement.fmt(statement.opening),
        "total_in": statement.fmt(statement.total_in),
        "total_out": statement.fmt(statement.total_out),
        "closing_balance": statement.fmt(statement.closing),
        "entry_count": statement.entry_count,
        "balanced": True,
        "check": statement.check_text,
    }


def statement_json(statement: Statement) -> dict:
    entries = [{**row, "created_at": _iso(row["created_at"])} for row in statement.rows()]
    return {**statement_header(statement), "entries": entries}


CSV_COLUMNS = [
    "row_type", "wallet_id", "currency", "entry_id", "transaction_id", "created_at", "transaction_type", "entry_type",
    "amount", "balance_after", "counterparty_wallet_id", "counterparty", "reference", "description",
]


def _cell(value) -> str:
    """Text a spreadsheet must not run as a formula (CSV injection) is prefixed with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def statement_csv_lines(statements: Iterable[Statement]) -> Iterator[str]:
    """The CSV, line by line: per wallet an `opening` row, its `entry` rows, `total_in`,
    `total_out`, `closing` and a `check` row. A stream cut short has no `check` row."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for st in statements:
        base = {"wallet_id": st.wallet.pk, "currency": st.currency}

        def line(row_type: str, **values) -> str:
            row = {**base, **values, "row_type": row_type}
            return writer.writerow([
                _cell(row.get(c)) if c in ("counterparty", "reference", "description") else ("" if row.get(c) is None else row.get(c))
                for c in CSV_COLUMNS
            ])

        yield line("opening", created_at=_iso(st.period.start) or "", balance_after=st.fmt(st.opening))
        for row in st.rows():
            yield line("entry", **{**row, "created_at": _iso(row["created_at"])})
        yield line("total_in", amount=st.fmt(st.total_in))
        yield line("total_out", amount=st.fmt(st.total_out))
        yield line("closing", created_at=_iso(st.period.end), balance_after=st.fmt(st.closing))
        yield line("check", description=st.check_text)


def statement_pdf(statements: list[Statement], *, title: str) -> bytes:
    """A PDF document (reportlab): per wallet a summary, the entries table (header repeated on
    every page), the totals and the balance check."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7.5, leading=9)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm, bottomMargin=12 * mm,
        title=title, author="Coffer", subject="Wallet statement",
    )
    story: list = []
    if not statements:
        story.append(Paragraph(f"{_escape(title)}: no wallets.", styles["Title"]))
    for n, st in enumerate(statements):
        head = statement_header(st)
        if n:
            story.append(PageBreak())
        story.append(Paragraph(f"{_escape(title)}: wallet {st.wallet.pk} ({st.currency})", styles["Title"]))
        summary = [
            ["Owner", head["owner_name"] or ""],
            ["Period", f"{head['from'] or 'first entry'} to {head['to']} (UTC)"],
            ["Opening balance", f"{head['opening_balance']} {st.currency}"],
            ["Total in", f"{head['total_in']} {st.currency}"],
            ["Total out", f"{head['total_out']} {st.currency}"],
            ["Closing balance", f"{head['closing_balance']} {st.currency}"],
            ["Entries", str(st.entry_count)],
        ]
        story.append(Table(summary, hAlign="LEFT", style=TableStyle([("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold")])))
        story.append(Spacer(1, 4 * mm))
        data = [["Date (UTC)", "Entry", "Tx", "Type", "In", "Out", "Balance", "Counterparty", "Reference", "Description"]]
        for row in st.rows():
            credit = row["entry_type"] == Entry.Direction.CREDIT
            data.append([
                _iso(row["created_at"])[:19].replace("T", " "), str(row["entry_id"]), str(row["transaction_id"]), row["transaction_type"],
                row["amount"] if credit else "", "" if credit else row["amount"], row["balance_after"],
                Paragraph(_escape(row["counterparty"]), small), Paragraph(_escape(row["reference"]), small),
                Paragraph(_escape(row["description"]), small),
            ])
        if len(data) == 1:
            story.append(Paragraph("No entries in this period: the closing balance is the opening balance.", styles["BodyText"]))
        else:
            table = Table(data, repeatRows=1, colWidths=[30 * mm, 16 * mm, 14 * mm, 20 * mm, 26 * mm, 26 * mm, 28 * mm, 36 * mm, 30 * mm, None])
            table.setStyle(TableStyle([
                ("FONTSIZE", (0, 0), (-1, -1), 7.5),
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("ALIGN", (4, 1), (6, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
            ]))
            story.append(table)
        story.append(Spacer(1, 4 * mm))
        story.append(Paragraph(f"Check: {_escape(st.check_text)}", styles["BodyText"]))
    doc.build(story)
    return buffer.getvalue()


def _escape(text: str) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
