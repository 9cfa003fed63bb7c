"""Two-phase postings: holds, review and payouts in flight; reversal.

Invariants:
* A transaction in review (`ledger_post(hold_for_review=True)`) or pending (a payout in flight,
  `ledger_hold_pending`) has its operations stored, no entries, its usage charged, and a `held`
  hold per wallet for that wallet's largest running outflow; `Wallet.held` is the sum of its
  `held` holds.
* It ends exactly once: posted with its holds captured (`ledger_complete_reviewed`,
  `ledger_complete_pending`), or released with its usage given back (`ledger_reject_reviewed`,
  `ledger_fail_pending`; also when the deferred posting is refused).
* Lock order: the transaction, then its wallets (ascending id), then its holds.
* A pending transaction that is an authorization hold (`wallets.movements.holds`) may instead be captured
  in part (`ledger_capture_pending`: a NEW transaction posts the smaller amount, capturing the
  holds, and the pending one is `voided` with its usage given back) or voided
  (`ledger_void_pending`: holds released, usage given back, `voided`).
* `ledger_reverse` posts the inverse legs of a completed transaction on the same shards.
* Every function runs in the caller's transaction, or its own when there is none.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from decimal import Decimal

from django.db.models import F
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from core.errors import InvalidState
from ledger.locks import transactions_for_update, wallets_for_update
from ledger.models import Hold, Transaction, Wallet
from ledger.posting.engine import TRANSACTION_TYPES, in_transaction, post
from ledger.posting.operations import Operation, PostingResult, inverse, json_dumps, legs_of, operations_of
from ledger.usage import usage_release


def _lock_transaction(transaction: Transaction | int) -> Transaction:
    pk = transaction.pk if isinstance(transaction, Transaction) else transaction
    return transactions_for_update().get(pk=pk)


def _capture_and_post(tx: Transaction) -> PostingResult:
    """Post a held transaction's stored operations, capturing its holds; if the posting is refused
    now, release them (the posting has locked the wallets either way)."""
    holds = list(Hold.objects.filter(transaction=tx, status=Hold.Status.HELD))
    result = post(legs_of(operations_of(tx.postings.order_by("index"))), tx=tx, captured=holds, existing=True)
    if not result.ok:
        for hold in holds:
            _release(hold)
        usage_release(tx)
    return result


def _release(hold: Hold) -> None:
    """Release a hold whose wallet is already locked by the caller."""
    hold.release()
    hold.save(update_fields=["status", "updated_at"])
    Wallet.objects.filter(pk=hold.wallet_id).update(held=F("held") - hold.amount, updated_at=timezone.now())


def _release_holds(tx: Transaction) -> None:
    """Release a transaction's holds, its wallets locked first (lock order: wallets, then holds;
    a posting may be changing `held` right now)."""
    holds = list(Hold.objects.filter(transaction=tx, status=Hold.Status.HELD).order_by("wallet_id"))
    if holds:
        list(wallets_for_update().filter(pk__in=[h.wallet_id for h in holds]))
    for hold in holds:
        _release(hold)


def ledger_complete_reviewed(transaction: Transaction | int) -> PostingResult:
    """Approve a transaction in review: capture its holds and post its operations. If the
    posting is refused now (a wallet suspended meanwhile...), the transaction becomes `failed`
    with the reason and its holds are released; either way the result is returned."""
    with in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.IN_REVIEW:
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not in review.", details={"status": tx.status})
        return _capture_and_post(tx)


def ledger_hold_pending(
    *,
    type: str,  # noqa: A002
    operations: Sequence[Operation],
    organization=None,
    customer=None,
    reference: str = "",
    description: str = "",
    metadata: dict | None = None,
    rates=None,
) -> PostingResult:
    """Validate `operations` like a posting, then leave the transaction `pending` with its
    operations stored and holds for each wallet's largest running outflow (a payout in flight:
    wallets.movements.withdrawals). `ledger_complete_pending` posts it (holds captured),
    `ledger_fail_pending` releases the holds and marks it failed. Refusals are recorded and
    returned as by `ledger_post`."""
    if type not in TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {type!r}")
    legs = legs_of(operations)
    with in_transaction():
        return post(
            legs,
            tx=Transaction(
                type=type, organization=organization, customer=customer, reference=reference or "",
                description=description or "", metadata=json.loads(json_dumps(metadata or {})),
            ),
            hold_pending=True,
            rates=rates,
        )


def ledger_complete_pending(transaction: Transaction | int) -> PostingResult:
    """Post a transaction left pending by `ledger_hold_pending`, capturing its holds. If the
    posting is refused now, the transaction becomes `failed` and its holds are released (as
    `ledger_complete_reviewed`); a caller that wants to keep it pending runs this in a savepoint
    and rolls that back on `not result.ok`."""
    with in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.PENDING or tx.entries.exists():
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not pending.", details={"status": tx.status})
        return _capture_and_post(tx)


def _close_pending(transaction: Transaction | int, *, close: str, code: str, reason: str) -> Transaction:
    """Release a pending transaction's holds, give its usage back and move it by the FSM
    transition `close` (`fail` or `void`) with `code` and `reason`; no entries are written."""
    with in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.PENDING or tx.entries.exists():
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not pending.", details={"status": tx.status})
        _release_holds(tx)
        usage_release(tx)
        getattr(tx, close)()
        tx.failure_code = code[:64]
        tx.failure_message = reason[:500]
        tx.completed_at = timezone.now()
        tx.save(update_fields=["status", "failure_code", "failure_message", "completed_at"])
        return tx


def ledger_fail_pending(transaction: Transaction | int, *, code: str, reason: str = "") -> Transaction:
    """A pending transaction that will not post (its payout failed): `failed`, holds released."""
    return _close_pending(transaction, close="fail", code=code, reason=reason or "Failed.")


def ledger_void_pending(transaction: Transaction | int, *, code: str, reason: str = "") -> Transaction:
    """An authorization that will not be captured (voided, expired): `voided`, holds released."""
    return _close_pending(transaction, close="void", code=code, reason=reason or "Voided.")


def ledger_capture_pending(
    transaction: Transaction | int, *, amount: Decimal | None = None, reference: str = "", description: str = "", metadata: dict | None = None,
) -> PostingResult:
    """Capture a pending single-operation transaction (an authorization hold). In full (`amount`
    None or the whole): as `ledger_complete_pending`, the transaction itself posts. In part
    (0 < amount < the whole): a NEW transaction of the same type and owner posts `amount` of the
    same operation, capturing the holds (the rest of the reservation goes back to the available
    balance in that same posting), and the pending one becomes `voided` with its usage given
    back (the new one is charged its own). A refused posting is recorded as by `post`; in part,
    the pending transaction and its holds are then left as they were."""
    with in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.PENDING or tx.entries.exists():
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not pending.", details={"status": tx.status})
        postings = list(tx.postings.order_by("index"))
        if amount is None or (len(postings) == 1 and amount == postings[0].amount):
            return _capture_and_post(tx)
        if len(postings) != 1:
            raise ValueError("a partial capture needs a single-operation transaction")
        if not 0 < amount < postings[0].amount:
            raise ValueError("a partial capture is more than zero and less than the whole")
        holds = list(Hold.objects.filter(transaction=tx, status=Hold.Status.HELD))
        operation = dataclasses.replace(operations_of(postings)[0], amount=amount)
        result = post(
            legs_of([operation]),
            tx=Transaction(
                type=tx.type, organization=tx.organization, customer=tx.customer, reference=reference or "",
                description=description or tx.description, metadata=json.loads(json_dumps(metadata or {})),
            ),
            captured=holds,
        )
        if result.ok:
            usage_release(tx)
            tx.void()
            tx.failure_code = "CAPTURED_IN_PART"
            tx.failure_message = f"Captured in part by transaction {result.transaction.pk}."[:500]
            tx.completed_at = timezone.now()
            tx.save(update_fields=["status", "failure_code", "failure_message", "completed_at"])
        return result


def ledger_reject_reviewed(transaction: Transaction | int, *, reason: str = "") -> Transaction:
    """Reject a transaction in review: release its holds; no entries are written."""
    with in_transaction():
        tx = _lock_transaction(transaction)
        try:
            tx.reject()
        except TransitionNotAllowed:
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not in review.", details={"status": tx.status}) from None
        _release_holds(tx)
        usage_release(tx)
        tx.failure_code = "REJECTED"
        tx.failure_message = (reason or "Rejected in review.")[:500]
        tx.completed_at = timezone.now()
        tx.save(update_fields=["status", "failure_code", "failure_message", "completed_at"])
        return tx


def ledger_reverse(transaction: Transaction | int, *, reference: str = "", description: str = "") -> PostingResult:
    """Post the inverse of a completed transaction (legs swapped, in reverse order) as a
    `reversal` and mark the original `reversed`. Platform legs land on the same shard as the
    original (the shard follows the counterparty wallet). If the inverse is refused (the money
    was spent), a failed reversal is recorded and the original stays completed."""
    with in_transaction():
        original = _lock_transaction(transaction)
        if original.status != Transaction.Status.COMPLETED:
            raise InvalidState(f"Transaction {original.pk} is {original.status}, not completed.", details={"status": original.status})
        ops = [inverse(op) for op in reversed(operations_of(original.postings.order_by("index")))]
        result = post(
            legs_of(ops),
            tx=Transaction(
                type=Transaction.Type.REVERSAL,
                organization=original.organization,
                customer=original.customer,
                reference=reference,
                description=description or f"Reversal of transaction {original.pk}",
                metadata={"reverses": original.pk},
            ),
        )
        if result.ok:
            original.reverse()
            original.save(update_fields=["status"])
            usage_release(original)
        return result
