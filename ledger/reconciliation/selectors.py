"""Reads of reconciliations, access-checked, and their representations.

Invariants:
* An organization sees the reconciliations of its wallets (its system wallets and its
  customers'); staff (`organization` None) see all. Anyone else's is 404, never 403.
* Amounts render at the wallet asset's exponent; signed amounts: + money in, - money out.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from core.errors import NotFound
from core.livemode import mode_q
from core.money import format_amount
from ledger.reconciliation.models import Reconciliation, ReconciliationLine

Line = ReconciliationLine


def reconciliations_visible(*, organization, livemode: bool = True) -> QuerySet[Reconciliation]:
    """The organization's reconciliations of wallets of mode `livemode` (core.livemode); all of them for staff (None)."""
    qs = Reconciliation.objects.select_related("wallet__asset").order_by("-id")
    return qs if organization is None else qs.filter(mode_q(livemode, "wallet__livemode"), organization=organization)


def reconciliation_get(*, organization, reconciliation_id: int, livemode: bool = True) -> Reconciliation:
    found = reconciliations_with_counts(reconciliations_visible(organization=organization, livemode=livemode).filter(pk=reconciliation_id)).first()
    if found is None:
        raise NotFound(f"Reconciliation {reconciliation_id} not found.", details={"reconciliation_id": reconciliation_id})
    return found


def reconciliations_with_counts(qs: QuerySet[Reconciliation]) -> QuerySet[Reconciliation]:
    return qs.annotate(
        n_pairs=Count("lines", filter=Q(lines__kind=Line.Kind.PAIR)),
        n_external=Count("lines", filter=Q(lines__kind=Line.Kind.EXTERNAL)),
        n_ledger=Count("lines", filter=Q(lines__kind=Line.Kind.LEDGER)),
        n_unmatched=Count("lines", filter=Q(lines__status=Line.Status.UNMATCHED)),
        n_resolved=Count("lines", filter=Q(lines__status=Line.Status.RESOLVED)),
    )


def reconciliation_lines(*, reconciliation: Reconciliation, kind: str | None = None, status: str | None = None) -> QuerySet[Line]:
    qs = reconciliation.lines.order_by("id")
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    return qs


def _fmt(value, exponent: int) -> str | None:
    return None if value is None else format_amount(value, exponent)


def reconciliation_representation(rec: Reconciliation) -> dict[str, Any]:
    exponent = rec.wallet.asset.exponent
    return {
        "id": rec.pk,
        "wallet_id": rec.wallet_id,
        "currency": rec.wallet.asset.code,
        "status": rec.status,
        "source_format": rec.source_format,
        "source_name": rec.source_name,
        "source_digest": rec.source_digest,
        "statement_id": rec.statement_id,
        "period_from": rec.period_start,
        "period_to": rec.period_end,
        "date_window_days": rec.date_window_days,
        "statement_opening_balance": _fmt(rec.statement_opening_balance, exponent),
        "statement_closing_balance": _fmt(rec.statement_closing_balance, exponent),
        "ledger_opening_balance": _fmt(rec.ledger_opening_balance, exponent),
        "ledger_closing_balance": _fmt(rec.ledger_closing_balance, exponent),
        "as_of_entry_id": rec.as_of_entry_id,
        "balance_difference": _fmt(rec.balance_difference, exponent),
        "adjustments_total": _fmt(rec.adjustments_total, exponent),
        "remaining_difference": _fmt(rec.remaining_difference, exponent),
        "summary": {
            "matched": getattr(rec, "n_pairs", 0),
            "unmatched_external": getattr(rec, "n_external", 0),
            "unmatched_ledger": getattr(rec, "n_ledger", 0),
            "unresolved": getattr(rec, "n_unmatched", 0),
            "resolved": getattr(rec, "n_resolved", 0),
        },
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
    }


def line_representation(line: Line, exponent: int) -> dict[str, Any]:
    return {
        "id": line.pk,
        "kind": line.kind,
        "status": line.status,
        "method": line.method or None,
        "line_number": line.line_number,
        "date": line.date,
        "amount": _fmt(line.amount, exponent),
        "reference": line.reference,
        "description": line.description,
        "transaction_id": line.transaction_id,
        "transaction_amount": _fmt(line.transaction_amount, exponent),
        "transaction_at": line.transaction_at,
        "adjustment_transaction_id": line.adjustment_transaction_id,
        "paired_line_id": line.paired_line_id,
        "note": line.note,
        "resolution_reason": line.resolution_reason,
        "resolved_at": line.resolved_at,
    }
