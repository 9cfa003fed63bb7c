"""Payouts: the worker's side of a withdrawal. The provider is called with no database
transaction open and under no lock (STYLE 4): claim (committed) -> send -> record the answer in a
short transaction that locks the payout row; a `payout.check` outbox message comes back at the
provider's time and follows the answer in the ledger (`ledger_complete_pending`, or release the
holds). `wallets.payouts` is the provider interface."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction as db_transaction
from django.utils import timezone

from compliance.audit import audit_record
from core.outbox import outbox_emit
from ledger.models import Transaction
from ledger.posting import ledger_complete_pending, ledger_fail_pending, ledger_reverse
from wallets.models import Payout
from wallets.payouts import ACCEPTED, FAILED, get_payout_provider

PAYOUT_TOPIC = "payout.send"
PAYOUT_CHECK_TOPIC = "payout.check"


def _payout_check_later(payout: Payout) -> None:
    """In the caller's transaction: a `payout.check` outbox message due at `next_check_at` (a
    time the worker comes back, never a sleep). Keyed by that time, so recording the same
    provider answer twice schedules one check."""
    outbox_emit(
        topic=PAYOUT_CHECK_TOPIC, payload={"payout_id": payout.pk}, available_at=payout.next_check_at,
        key=f"payout:{payout.pk}:check:{payout.next_check_at.isoformat()}",
    )


def payout_payload(tx: Transaction) -> dict[str, int]:
    return {"transaction_id": tx.pk}


def payout_id_of(payload: dict) -> int | None:
    """The payout an outbox message names: by id, or by its transaction (`payout_payload`)."""
    if "payout_id" in payload:
        return int(payload["payout_id"])
    return Payout.objects.filter(transaction_id=int(payload["transaction_id"])).values_list("pk", flat=True).first()


def _payout_locked(payout_id: int) -> Payout | None:
    return Payout.objects.select_for_update(of=("self",)).select_related("transaction").filter(pk=payout_id).first()


def _require_no_transaction(what: str) -> None:
    """The payout provider is called over the network: never inside a database transaction,
    never under a row lock (STYLE 4)."""
    connection = db_transaction.get_connection()
    if connection.in_atomic_block or not connection.get_autocommit():
        raise RuntimeError(f"{what} calls the payout provider: call it outside any database transaction.")


def _payout_claim_send(payout_id: int) -> Payout | None:
    """Step 1 of a send, committed before the provider is called: pending -> sending. A payout
    already `sending` (an earlier attempt died between its claim and its record) is sent again:
    the provider takes `reference` as its idempotency key. Anything else: nothing to send."""
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout is None or payout.status not in (Payout.Status.PENDING, Payout.Status.SENDING):
            return None
        if payout.status == Payout.Status.PENDING:
            payout.claim_send()
        payout.attempts += 1
        payout.save(update_fields=["status", "attempts", "updated_at"])
    return payout


def payout_send(*, payout_id: int) -> Payout | None:
    """The `payout.send` outbox handler, in three steps, so the provider is never called under
    a lock or inside a transaction: (1) claim the payout (pending -> sending, committed); (2)
    hand it to the provider with no transaction open, `reference` as the idempotency key; (3)
    record the answer in a short transaction that locks the payout row: accepted -> `sent`, with
    a `payout.check` due when the provider said to ask again; completed -> settled at once;
    refused -> failed (holds released). A second run finds it `sent` or settled and does nothing."""
    _require_no_transaction("payout_send")
    claimed = _payout_claim_send(payout_id)
    if claimed is None:
        return Payout.objects.filter(pk=payout_id).first()
    result = get_payout_provider(claimed.provider).send(claimed)
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout.status != Payout.Status.SENDING:  # a concurrent run recorded it first
            return payout
        payout.provider_reference = result.provider_reference or payout.provider_reference
        if result.status == FAILED:
            _payout_failed(payout, reason=result.reason or "Refused by the payout provider.")
            return payout
        payout.mark_sent()
        payout.sent_at = timezone.now()
        payout.next_check_at = result.check_at or payout.sent_at
        payout.save(update_fields=["status", "provider_reference", "sent_at", "next_check_at", "updated_at"])
        audit_record(action="payout.sent", target=payout, data={"transaction_id": payout.transaction_id, "provider": payout.provider,
                                                                "provider_reference": payout.provider_reference})
        _payout_follow(payout, result)
    return payout


def _payout_failed(payout: Payout, *, reason: str) -> None:
    """Release the held funds (or, for a payout whose transaction a reviewer already posted,
    reverse it) and fail the payout. Caller holds the payout lock."""
    tx = payout.transaction
    if tx.status == Transaction.Status.PENDING:
        ledger_fail_pending(tx, code="PAYOUT_FAILED", reason=reason)
    elif tx.status == Transaction.Status.COMPLETED:
        ledger_reverse(tx, description=f"Payout {payout.pk} failed: {reason}"[:500]).raise_for_error()
    payout.fail()
    payout.failure_reason = reason[:500]
    payout.settled_at = timezone.now()
    payout.next_check_at = None
    payout.save(update_fields=["status", "failure_reason", "settled_at", "next_check_at", "attempts", "provider_reference", "updated_at"])
    audit_record(action="withdrawal.failed", target=tx, data={"payout_id": payout.pk, "reason": reason})
    if tx.reference.startswith("schedule:"):  # a schedule's occurrence (wallets.schedules): record it and tell the owner
        from wallets.schedules import schedule_payout_failed

        schedule_payout_failed(transaction=tx, reason=reason)


def _payout_follow(payout: Payout, result) -> None:
    """Follow the provider's answer about a LOCKED `sent` payout in the ledger, once: completed
    -> `ledger_complete_pending` (holds captured, Redeem + fee posted, transaction completed);
    failed -> holds released, transaction failed; still in flight -> check again at the
    provider's time. If the ledger refuses the posting of money the bank already paid out (a
    wallet suspended meanwhile), the payout stays `sent`, the refusal is audited and a check is
    due in a minute: the money did leave."""
    if result.status == ACCEPTED:
        payout.next_check_at = result.check_at or timezone.now() + timedelta(seconds=30)
        payout.save(update_fields=["next_check_at", "updated_at"])
        _payout_check_later(payout)
        return
    if result.status == FAILED:
        _payout_failed(payout, reason=result.reason or "The payout failed.")
        return
    tx = payout.transaction
    if tx.status == Transaction.Status.PENDING:
        with db_transaction.atomic():
            posted = ledger_complete_pending(tx)
            if not posted.ok:
                db_transaction.set_rollback(True)  # keep the transaction pending, its funds held
        if not posted.ok:
            payout.failure_reason = f"Posting refused: {posted.error.code}: {posted.error.message}"[:500]
            payout.next_check_at = timezone.now() + timedelta(seconds=60)
            payout.save(update_fields=["failure_reason", "next_check_at", "updated_at"])
            audit_record(action="payout.posting_refused", target=payout, data={"transaction_id": tx.pk, "code": posted.error.code})
            _payout_check_later(payout)
            return
    payout.complete()
    payout.settled_at = timezone.now()
    payout.next_check_at = None
    payout.failure_reason = ""
    payout.save(update_fields=["status", "settled_at", "next_check_at", "failure_reason", "updated_at"])
    audit_record(action="withdrawal.completed", target=tx, data={"payout_id": payout.pk, "provider_reference": payout.provider_reference})


def payout_settle(*, payout_id: int) -> Payout | None:
    """The `payout.check` outbox handler (and the admin's "ask now"): ask the provider where a
    `sent` payout stands, with no transaction open, then follow the answer in a short
    transaction that locks the payout row (`_payout_follow`); only a payout still `sent` moves,
    so a second run does nothing."""
    _require_no_transaction("payout_settle")
    payout = Payout.objects.filter(pk=payout_id).first()
    if payout is None or payout.status != Payout.Status.SENT:
        return payout
    result = get_payout_provider(payout.provider).status(payout)
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout is None or payout.status != Payout.Status.SENT:
            return payout
        _payout_follow(payout, result)
    return payout


def payout_review_decided(*, case) -> None:
    """A reviewer decided a held withdrawal: called by the review decision
    (`wallets.review.review_approve` / `review_reject`) inside its transaction, after the ledger
    followed it. Approved and posted -> the payout is released to the provider (a `payout.send`
    outbox row); rejected, or approved but refused by the ledger -> the payout is cancelled (its
    holds were released by the ledger)."""
    payout = Payout.objects.select_for_update(of=("self",)).select_related("transaction").filter(
        transaction_id=case.transaction_id, status=Payout.Status.IN_REVIEW
    ).first()
    if payout is None or case.status == "open":
        return
    payout.transaction.refresh_from_db()
    if case.status == "approved" and payout.transaction.status == Transaction.Status.COMPLETED:
        payout.approve()
        payout.save(update_fields=["status", "updated_at"])
        outbox_emit(topic=PAYOUT_TOPIC, payload=payout_payload(payout.transaction), key=f"payout:tx:{payout.transaction_id}")
    else:
        payout.cancel()
        payout.failure_reason = (case.decision_reason or "Rejected in review.")[:500]
        payout.save(update_fields=["status", "failure_reason", "updated_at"])
