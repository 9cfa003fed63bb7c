"""Services and reads of the compliance back office (SPEC 8, issue 14 items 7 and 8).

Invariants:
- Money moves only through the review services (`wallets.review.review_approve` /
  `review_reject`, which call the ledger's posting engine); nothing here writes a balance or an
  entry.
- Four-eyes: a review case whose held amount is at or above the four-eyes amount of its asset
  (`four_eyes_amount`) needs two approvals by two different staff members; the first is recorded
  on the case (which stays open), the second posts. The check lives in `risk._decide`, so every
  caller honours it.
- A KYC level changes only through `customer_kyc_set`: reason required, a `KycChange` row and an
  audit event with before/after, all in one transaction with the change itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction as db_transaction
from django.utils import timezone

from accounts.models import Customer
from compliance.audit import audit_record
from compliance.models import KycChange, ReviewCase, ScreeningHit
from core.errors import NotFound, ValidationFailed
from core.money import format_amount
from ledger.models import Posting
from wallets.models import Payout


@dataclass(frozen=True)
class MovementSummary:
    """What a held or posted transaction moves: its first posting's amount and asset, the
    customer-side wallet it moves (`wallet`: the destination of an issue, else the source), and
    who is on the other side (a wallet's owner, a payout's beneficiary, or outside)."""

    amount: Decimal | None
    currency: str
    exponent: int
    counterparty: str
    wallet: Any = None

    @property
    def amount_display(self) -> str:
        if self.amount is None:
            return ""
        return f"{format_amount(self.amount, self.exponent)} {self.currency}".strip()


def _owner_name(wallet) -> str:
    if wallet is None:
        return ""
    if wallet.customer_id:
        customer = wallet.customer
        return customer.name or customer.external_id or f"customer {customer.pk}"
    if wallet.organization_id:
        return f"{wallet.organization.name} ({wallet.purpose or 'system'})"
    return f"platform {wallet.purpose or wallet.kind}"


def transaction_summaries(transactions: Iterable[Any]) -> dict[int, MovementSummary]:
    """`MovementSummary` by transaction id, from each transaction's first posting (index 0), in
    two queries whatever the number of transactions (postings with their wallets, owners and
    assets; payouts). A transaction without postings gets an empty summary."""
    ids = [tx.pk for tx in transactions]
    postings = {
        p.transaction_id: p
        for p in Posting.objects.filter(transaction_id__in=ids, index=0).select_related(
            "asset", "source_wallet__customer", "source_wallet__organization",
            "destination_wallet__customer", "destination_wallet__organization",
        )
    }
    beneficiaries = dict(Payout.objects.filter(transaction_id__in=ids).values_list("transaction_id", "beneficiary_name_masked"))
    out: dict[int, MovementSummary] = {}
    for tx_id in ids:
        posting = postings.get(tx_id)
        if posting is None:
            out[tx_id] = MovementSummary(amount=None, currency="", exponent=0, counterparty=beneficiaries.get(tx_id, ""))
            continue
        if tx_id in beneficiaries:
            counterparty = beneficiaries[tx_id]
        elif posting.kind == Posting.Kind.ISSUE:
            counterparty = "outside (deposit)"
        elif posting.kind == Posting.Kind.REDEEM:
            counterparty = "outside (withdrawal)"
        else:
            counterparty = _owner_name(posting.destination_wallet)
        wallet = posting.destination_wallet if posting.kind == Posting.Kind.ISSUE else posting.source_wallet
        if wallet.asset_id == posting.asset_id:
            wallet.asset = posting.asset  # the same row: no query for it later
        out[tx_id] = MovementSummary(
            amount=posting.amount, currency=posting.asset.code, exponent=posting.asset.exponent, counterparty=counterparty, wallet=wallet,
        )
    return out


# --- Four-eyes ----------------------------------------------------------------------------------


def four_eyes_amount(currency: str) -> Decimal | None:
    """The amount (major units of `currency`) from which an approval needs a second officer:
    REVIEW_FOUR_EYES_AMOUNTS[currency] if set, else REVIEW_FOUR_EYES_AMOUNT; None (or blank)
    switches four-eyes off."""
    per_currency = getattr(settings, "REVIEW_FOUR_EYES_AMOUNTS", {}) or {}
    value = per_currency.get(currency, getattr(settings, "REVIEW_FOUR_EYES_AMOUNT", None))
    if value in (None, ""):
        return None
    return Decimal(str(value))


def review_needs_second_approval(case, summary: MovementSummary | None = None) -> bool:
    """Whether approving `case` takes two staff members (`summary`: its transaction's, if read)."""
    summary = summary or transaction_summaries([case.transaction])[case.transaction_id]
    threshold = four_eyes_amount(summary.currency)
    return threshold is not None and summary.amount is not None and summary.amount >= threshold


# --- KYC ----------------------------------------------------------------------------------------


def customer_kyc_set(*, customer_id: int, level: str, reason: str, evidence_reference: str = "", actor) -> KycChange:
    """Change a customer's KYC level (limits follow at once: `compliance.limits` reads the level
    on every movement). Refused without a reason, to an unknown level, or to the current one."""
    reason = (reason or "").strip()
    evidence_reference = (evidence_reference or "").strip()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = ["A reason is required."]
    if level not in Customer.KycLevel.values:
        errors["level"] = [f"Unknown KYC level {level!r}."]
    if errors:
        raise ValidationFailed("; ".join(f"{k}: {v[0]}" for k, v in errors.items()), details={"fields": errors})
    with db_transaction.atomic():
        # The customer lock is the money path's too (SPEC 4.7): a movement in flight finishes on
        # the old level, the next one reads the new.
        customer = Customer.objects.select_for_update(of=("self",)).filter(pk=customer_id).first()
        if customer is None:
            raise NotFound(f"Customer {customer_id} does not exist.")
        before = customer.kyc_level
        if before == level:
            raise ValidationFailed(f"level: the customer is already {level}.", details={"fields": {"level": ["Already at this level."]}})
        Customer.objects.filter(pk=customer.pk).update(kyc_level=level, updated_at=timezone.now())
        change = KycChange.objects.create(
            customer=customer, from_level=before, to_level=level, reason=reason[:500],
            evidence_reference=evidence_reference[:200], actor=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor, action="customer.kyc_changed", target=customer,
            data={"before": {"kyc_level": before}, "after": {"kyc_level": level}, "reason": reason, "evidence_reference": evidence_reference,
                  "kyc_change_id": change.pk},
        )
    return change


# --- The admin home -------------------------------------------------------------------------------


def backoffice_home_status(user) -> dict[str, Any]:
    """What the admin home shows above the apps: open review cases (for who may see them), how
    many are past the SLA, and whether the sanctions rule screens against an empty list."""
    import datetime as dt

    from compliance.sanctions import sanctions_list_needed

    status: dict[str, Any] = {"sanctions_list_missing": sanctions_list_needed()}
    if user.has_perm("compliance.view_reviewcase"):
        open_cases = ReviewCase.objects.filter(status=ReviewCase.Status.OPEN)
        sla = dt.timedelta(hours=settings.REVIEW_SLA_HOURS)
        status.update(
            open_review_cases=open_cases.count(),
            late_review_cases=open_cases.filter(created_at__lte=timezone.now() - sla).count(),
            review_sla_hours=f"{sla.total_seconds() / 3600:g}",
        )
    if user.has_perm("compliance.view_screeninghit"):
        status["open_screening_hits"] = ScreeningHit.objects.filter(status=ScreeningHit.Status.OPEN).count()
    return status
