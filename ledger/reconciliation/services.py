"""Reconciliation services: import a statement and match it; resolve lines by hand or by an
adjustment booked through the money path. The only writers of reconciliation rows.

Invariants:
* Import (`reconciliation_import`) reads and writes no ledger row: it parses the file
  (`parsers`), takes the wallet's statement for the period (`ledger.statements.statement_build`,
  which also checks the ledger balances), matches (`matching`) and stores the result with an
  audit event, in the caller's transaction. The same file (SHA-256) against the same wallet is
  the same reconciliation: the first one is returned (`created` False), also when two imports
  race (the unique constraint decides; the loser reads the winner's).
* Resolving a line locks the reconciliation row first (the parent row of the lock order), then
  reads its line: a line is resolved once. A manual match pairs an external line with a ledger
  transaction that has entries on the wallet and is not paired in this reconciliation yet.
* An adjustment (`wallets.movements.adjustments`, since it moves money) is a ledger transaction
  of type `adjustment`, `issue` (money in) or `redeem`
  (money out) of the line's amount on the wallet, posted by `wallets.pipeline.money_path`
  (no limits, 2FA or risk rules: staff correct the books; every wallet still stays >= 0), with a
  required reason, its reference `reconciliation-<id>-line-<id>` and its audit event. A refused
  posting (INSUFFICIENT_FUNDS, WALLET_INACTIVE) is recorded as a failed transaction and raised;
  the line stays unmatched.
* status is `reconciled` when no line is unmatched and the statement's closing balance (when the
  file states one) equals the ledger's at the period end plus the adjustments booked since;
  otherwise `open`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.db import IntegrityError, transaction as db_transaction
from django.db.models import Case, DecimalField, F, Min, Sum, When
from django.utils import timezone

from accounts.models import Organization, User
from accounts.orgs.services import principal_audit_data
from compliance.audit import audit_record
from core.livemode import principal_livemode
from core.errors import InvalidState, ValidationFailed
from core.money import format_amount
from ledger.errors import WalletNotFound
from ledger.models import Entry, Wallet
from ledger.reconciliation.matching import LedgerItem, match
from ledger.reconciliation.models import Reconciliation, ReconciliationLine
from ledger.reconciliation.parsers import balance_parse, statement_parse
from ledger.selectors import organization_wallets_get, wallets_with_owners
from ledger.statements import Period, statement_build

DEFAULT_WINDOW_DAYS = 3
MAX_WINDOW_DAYS = 31
MAX_FILE_BYTES = 1024 * 1024
Line = ReconciliationLine


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"fields": {field: [message]}})


def reconciliation_wallet(*, organization: Organization | None, wallet_id: int, livemode: bool = True) -> Wallet:
    """The wallet to reconcile: the organization's own (a system wallet or a customer's) of the
    caller's mode (core.livemode), or, for staff (`organization` None), any wallet. Anything else is 404."""
    if organization is not None:
        wallet = organization_wallets_get(organization=organization, ids=[wallet_id], livemode=livemode).get(wallet_id)
    else:
        wallet = wallets_with_owners("w.id = %s", [wallet_id]).get(wallet_id)
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    if wallet.kind == Wallet.Kind.ISSUANCE:
        raise _fail("wallet_id", "An issuance account mirrors every issue and redeem of its asset: reconcile a wallet that holds money.")
    return wallet


def reconciliation_owner(wallet: Wallet) -> Organization | None:
    if wallet.organization_id is not None:
        return wallet.organization
    if wallet.customer_id is not None and wallet.customer.organization_id is not None:
        return wallet.customer.organization
    return None


def _day_bounds(value: dt.date | dt.datetime, *, end: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return dt.datetime.combine(value, dt.time.max if end else dt.time.min, tzinfo=dt.timezone.utc)


def _ledger_items(wallet: Wallet, start: dt.datetime | None, end: dt.datetime | None, *, transaction_id: int | None = None) -> list[LedgerItem]:
    """Each transaction with entries on `wallet` in [start, end] (or the one transaction), with its
    net effect on the wallet."""
    signed = Case(When(direction=Entry.Direction.CREDIT, then=F("amount")), default=-F("amount"),
                  output_field=DecimalField(max_digits=38, decimal_places=18))
    entries = Entry.objects.filter(wallet_id=wallet.pk)
    entries = entries.filter(transaction_id=transaction_id) if transaction_id is not None else entries.filter(created_at__gte=start, created_at__lte=end)
    rows = (
        entries
        .values("transaction_id", "transaction__reference", "transaction__description")
        .annotate(net=Sum(signed), at=Min("created_at"))
        .order_by("transaction_id")
    )
    return [
        LedgerItem(r["transaction_id"], r["net"], r["at"], r["transaction__reference"] or "", r["transaction__description"] or "")
        for r in rows if r["net"]
    ]


def reconciliation_status(rec: Reconciliation) -> str:
    open_lines = rec.lines.filter(status=Line.Status.UNMATCHED).exists()
    remaining = rec.remaining_difference
    if open_lines or (remaining is not None and remaining != 0):
        return Reconciliation.Status.OPEN
    return Reconciliation.Status.RECONCILED


def _read(upload) -> bytes:
    if upload is None:
        raise _fail("file", "Upload the statement as the multipart field 'file'.")
    if upload.size is not None and upload.size > MAX_FILE_BYTES:
        raise _fail("file", f"At most {MAX_FILE_BYTES} bytes.")
    upload.seek(0)
    data = upload.read(MAX_FILE_BYTES + 1)
    if not data.strip():
        raise _fail("file", "The file is empty.")
    return data


def reconciliation_import(
    *, organization: Organization | None, actor: Any, wallet_id: int, upload, fmt: str | None = None,
    date_window_days: int = DEFAULT_WINDOW_DAYS, closing_balance: str | None = None,
    period_from: dt.date | None = None, period_to: dt.date | None = None,
) -> tuple[Reconciliation, bool]:
    """Import `upload` against the wallet and match it (module docstring). Returns the
    reconciliation and whether this call created it."""
    wallet = reconciliation_wallet(organization=organization, wallet_id=wallet_id, livemode=principal_livemode(actor))
    data = _read(upload)
    digest = hashlib.sha256(data).hexdigest()
    existing = Reconciliation.objects.filter(wallet=wallet, source_digest=digest).first()
    if existing is not None:
        return existing, False
    asset = wallet.asset
    parsed = statement_parse(data, fmt=fmt, currency=asset.code, exponent=asset.exponent)
    if closing_balance not in (None, ""):
        value = balance_parse(str(closing_balance), exponent=asset.exponent, field="closing_balance")
        if parsed.closing_balance is not None and parsed.closing_balance != value:
            raise _fail("closing_balance", f"The file states a closing balance of {format_amount(parsed.closing_balance, asset.exponent)}.")
        parsed.closing_balance = value
    dates = [line.date for line in parsed.lines]
    start_value = period_from or parsed.period_start or (min(dates) if dates else None)
    end_value = period_to or parsed.period_end or (max(dates) if dates else None)
    if start_value is None or end_value is None:
        raise ValidationFailed(
            "period_from and period_to are required: the file has no lines or dates to take the period from.",
            details={"fields": {"period_from": ["Required for a file without lines."], "period_to": ["Required for a file without lines."]}},
        )
    start, end = _day_bounds(start_value, end=False), _day_bounds(end_value, end=True)
    for name, moment in (("period_from", start), ("period_to", end)):
        if not 1900 <= moment.year <= 9000:
            raise _fail(name, f"{moment.date().isoformat()}: a date from 1900 to 9000.")
    if start > end:
        raise _fail("period_from", "The period starts after it ends.")
    statement = statement_build(wallet=wallet, period=Period(start=start, end=end))
    window = dt.timedelta(days=date_window_days)
    items = _ledger_items(wallet, start - window, end + window)
    result = match(parsed.lines, items, window_days=date_window_days)
    difference = None if parsed.closing_balance is None else parsed.closing_balance - statement.closing
    rec = Reconciliation(
        wallet=wallet, organization=reconciliation_owner(wallet), source_format=parsed.format,
        source_name=(getattr(upload, "name", "") or "")[:255], source_digest=digest, statement_id=parsed.statement_id,
        period_start=start, period_end=end, date_window_days=date_window_days,
        statement_opening_balance=parsed.opening_balance, statement_closing_balance=parsed.closing_balance,
        ledger_opening_balance=statement.opening, ledger_closing_balance=statement.closing, as_of_entry_id=statement.as_of_entry_id,
        balance_difference=difference, created_by=actor if isinstance(actor, User) else None,
        created_by_label=str(actor)[:100] if actor is not None else "",
    )
    try:
        with db_transaction.atomic():  # a savepoint: a concurrent import of the same file wins the constraint
            rec.save(force_insert=True)
    except IntegrityError:
        return Reconciliation.objects.get(wallet=wallet, source_digest=digest), False
    rows: list[Line] = []
    for line, item, method in result.pairs:
        rows.append(Line(
            reconciliation=rec, kind=Line.Kind.PAIR, status=Line.Status.MATCHED, method=method, line_number=line.line_number,
            date=line.date, amount=line.amount, reference=line.reference, description=line.description,
            transaction_id=item.transaction_id, transaction_amount=item.amount, transaction_at=item.at,
        ))
    for line in result.unmatched_lines:
        rows.append(Line(
            reconciliation=rec, kind=Line.Kind.EXTERNAL, status=Line.Status.UNMATCHED, line_number=line.line_number, date=line.date,
            amount=line.amount, reference=line.reference, description=line.description, note=result.notes.get(line.line_number, "")[:300],
        ))
    for item in result.unmatched_items:
        if start <= item.at <= end:  # the window's margins only serve matching
            rows.append(Line(
                reconciliation=rec, kind=Line.Kind.LEDGER, status=Line.Status.UNMATCHED, transaction_id=item.transaction_id,
                transaction_amount=item.amount, transaction_at=item.at, reference=item.reference[:200], description=item.description[:500],
            ))
    rows.sort(key=lambda r: (r.line_number is None, r.line_number or 0, r.transaction_at or start))
    Line.objects.bulk_create(rows)
    rec.status = reconciliation_status(rec)
    rec.save(update_fields=["status", "updated_at"])
    audit_record(actor=actor if isinstance(actor, User) else None, action="reconciliation.imported", target=rec, data={
        "wallet_id": wallet.pk, "format": parsed.format, "digest": digest, "lines": len(parsed.lines), "matched": len(result.pairs),
        "status": rec.status, "balance_difference": None if difference is None else format_amount(difference, asset.exponent),
        **principal_audit_data(actor),
    })
    return rec, True


# --- Resolving lines (staff, from the admin) ----------------------------------------------------------

def reconciliation_line_locked(line_id: int) -> tuple[Reconciliation, Line]:
    reconciliation_id = Line.objects.filter(pk=line_id).values_list("reconciliation_id", flat=True).first()
    if reconciliation_id is None:
        raise ValidationFailed(f"No reconciliation line {line_id}.", details={"line_id": line_id})
    rec = Reconciliation.objects.select_for_update().select_related("wallet__asset").get(pk=reconciliation_id)
    line = Line.objects.get(pk=line_id)
    if line.status != Line.Status.UNMATCHED:
        raise InvalidState(f"Line {line.pk} is {line.status}.", details={"line_id": line.pk, "status": line.status})
    return rec, line


def reconciliation_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise _fail("reason", "A reason is required.")
    return reason[:500]


def reconciliation_line_resolved(rec: Reconciliation, line: Line, *, actor: User, reason: str, method: str) -> None:
    line.status, line.method = Line.Status.RESOLVED, method
    line.resolution_reason, line.resolved_by, line.resolved_at = reason, actor, timezone.now()


@db_transaction.atomic
def reconciliation_line_match(*, line_id: int, transaction_id: int, actor: User, reason: str) -> Line:
    """Pair an unmatched statement line with a ledger transaction on the wallet, by hand."""
    reason = reconciliation_reason(reason)
    rec, line = reconciliation_line_locked(line_id)
    if line.kind != Line.Kind.EXTERNAL:
        raise InvalidState("Only a statement line is matched by hand; book an adjustment for a ledger line.",
                           details={"line_id": line.pk, "kind": line.kind})
    found = _ledger_items(rec.wallet, None, None, transaction_id=transaction_id)
    item = found[0] if found else None
    if item is None:
        raise _fail("transaction_id", f"Transaction {transaction_id} moved nothing on wallet {rec.wallet_id}.")
    if rec.lines.filter(kind=Line.Kind.PAIR, transaction_id=transaction_id).exists():
        raise InvalidState(f"Transaction {transaction_id} is already matched in this reconciliation.",
                           details={"transaction_id": transaction_id})
    line.kind, line.transaction_id, line.transaction_amount, line.transaction_at = Line.Kind.PAIR, transaction_id, item.amount, item.at
    if item.amount != line.amount:
        line.note = f"Matched by hand with a different amount: ledger {item.amount.normalize():f}, statement {line.amount.normalize():f}."
    reconciliation_line_resolved(rec, line, actor=actor, reason=reason, method=Line.Method.MANUAL)
    line.save()
    ledger_line = rec.lines.filter(kind=Line.Kind.LEDGER, transaction_id=transaction_id, status=Line.Status.UNMATCHED).first()
    if ledger_line is not None:
        reconciliation_line_resolved(rec, ledger_line, actor=actor, reason=reason, method=Line.Method.MANUAL)
        ledger_line.paired_line = line
        ledger_line.save()
    rec.status = reconciliation_status(rec)
    rec.save(update_fields=["status", "updated_at"])
    audit_record(actor=actor, action="reconciliation.line_matched", target=rec, data={
        "line_id": line.pk, "transaction_id": transaction_id, "reason": reason, "status": rec.status})
    return line
