"""A reviewer's decision on a case the risk rules held (`compliance.review`): it moves the held
money, so it lives with the money path.

Invariants:
* `review_approve` / `review_reject` (reason required) lock the case, move it with its FSM
  transition, call `ledger_complete_reviewed` (holds captured, operations posted) or
  `ledger_reject_reviewed` (holds released), let a held withdrawal's payout follow
  (`payout_review_decided`), and append to the audit chain, all in one database transaction.
* Four-eyes: approving a case whose amount is at or above the four-eyes amount of its asset
  (settings REVIEW_FOUR_EYES_AMOUNT, REVIEW_FOUR_EYES_AMOUNTS per currency) takes two calls by
  two different staff members: the first records itself on the case (still open, nothing
  posted), the same officer again gets `SecondApproverRequired`, another officer's approval posts.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction as db_transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.backoffice import review_needs_second_approval
from compliance.models import ReviewCase
from compliance.review import SecondApproverRequired
from core.errors import InvalidState, ValidationFailed
from ledger.posting import ledger_complete_reviewed, ledger_reject_reviewed
from wallets.movements.payouts import payout_review_decided


def _decide(*, case: ReviewCase | int, actor, reason: str, approve: bool) -> ReviewCase:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason: a reason is required.", details={"fields": {"reason": ["A reason is required."]}})
    case_id = case.pk if isinstance(case, ReviewCase) else case
    with db_transaction.atomic():
        locked = ReviewCase.objects.select_for_update(of=("self",)).select_related("transaction").get(pk=case_id)
        if locked.status != ReviewCase.Status.OPEN:
            raise InvalidState(f"Review case {case_id} is {locked.status}, not open.", details={"status": locked.status})
        data: dict[str, Any] = {"transaction_id": locked.transaction_id, "reason": reason}
        if approve and review_needs_second_approval(locked):
            actor_id = getattr(actor, "pk", None)
            if actor_id is None:
                raise SecondApproverRequired("An approval above the four-eyes amount needs a named staff member.")
            if locked.first_approved_by_id is None:
                locked.first_approved_by_id = actor_id
                locked.first_approved_at = timezone.now()
                locked.first_approval_reason = reason[:500]
                locked.save(update_fields=["first_approved_by", "first_approved_at", "first_approval_reason"])
                audit_record(actor=actor, action="review.first_approval", target=locked, data={**data, "four_eyes": True})
                return locked
            if locked.first_approved_by_id == actor_id:
                raise SecondApproverRequired(
                    f"Review case {case_id} needs a second approval by another staff member (four-eyes).",
                    details={"first_approved_by": actor_id},
                )
            data.update(four_eyes=True, first_approved_by=locked.first_approved_by_id, first_approval_reason=locked.first_approval_reason)
        if approve:
            result = ledger_complete_reviewed(locked.transaction_id)
            data["posted"] = result.ok
            if not result.ok and result.error is not None:
                data["failure_code"] = result.error.code
                data["failure_message"] = result.error.message
            locked.approve()
        else:
            ledger_reject_reviewed(locked.transaction_id, reason=reason)
            locked.reject()
        locked.decision_reason = reason[:500]
        locked.decided_by = actor if getattr(actor, "pk", None) else None
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decision_reason", "decided_by", "decided_at"])
        payout_review_decided(case=locked)  # a held withdrawal's payout follows the decision
        audit_record(actor=actor, action="review.approved" if approve else "review.rejected", target=locked, data=data)
    locked.transaction.refresh_from_db()
    return locked


def review_approve(*, case: ReviewCase | int, actor, reason: str) -> ReviewCase:
    """Approve: the held transaction is posted (its holds captured). If the ledger refuses it
    now (e.g. a wallet was suspended meanwhile) the transaction ends `failed` with its holds
    released; the case is still approved and the audit event says so."""
    return _decide(case=case, actor=actor, reason=reason, approve=True)


def review_reject(*, case: ReviewCase | int, actor, reason: str) -> ReviewCase:
    """Reject: the transaction becomes `rejected` and its holds are released."""
    return _decide(case=case, actor=actor, reason=reason, approve=False)
