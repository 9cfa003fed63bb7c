"""Review cases: a movement the risk rules held for review is posted `in_review` with its funds
held, and the money path opens its `ReviewCase` here, in the same database transaction. Deciding
a case posts or releases the money: that is `wallets.review` (`review_approve` / `review_reject`).
"""

from __future__ import annotations

from django.db import transaction as db_transaction

from compliance.audit import audit_record
from compliance.models import ReviewCase
from compliance.risk import RiskDecision, risk_hits_data
from core.errors import CofferError, InvalidState
from ledger.models import Transaction


class SecondApproverRequired(CofferError):
    """Four-eyes: the officer who gave a case its first approval cannot give the second."""

    code, status = "SECOND_APPROVER_REQUIRED", 403


def review_case_open(*, transaction: Transaction, decision: RiskDecision, customer=None, actor=None) -> ReviewCase:
    """Open the case for a transaction the caller just left `in_review`
    (`ledger_post(..., hold_for_review=True)`), in the same database transaction."""
    if transaction.status != Transaction.Status.IN_REVIEW:
        raise InvalidState(f"Transaction {transaction.pk} is {transaction.status}, not in review.", details={"status": transaction.status})
    with db_transaction.atomic(savepoint=False):
        case = ReviewCase.objects.create(
            transaction=transaction,
            customer=customer if customer is not None else transaction.customer,
            rule=decision.rule,
            rule_kind=decision.rule.kind if decision.rule else "",
            reason=(decision.reason or "Held for review")[:500],
        )
        audit_record(
            actor=actor, action="review.opened", target=case,
            data={"transaction_id": transaction.pk, "rule_kind": case.rule_kind, "reason": case.reason, "hits": risk_hits_data(decision)},
        )
    return case
