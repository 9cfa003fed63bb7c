"""The ORM writer of the posting engine: the rows `ledger.posting.pg` writes, for SQLite.

Invariants:
* Writes exactly the rows the PostgreSQL writer writes for the same plan (transaction,
  postings, entries in plan order, balances, holds); `tests/ledger/test_writers.py`
  checks the two agree.
* A reference already taken by the owner is caught by the unique constraints in a savepoint
  around the INSERT (the only savepoint of a posting) and reported as None: nothing written.
* Runs only inside the engine's transaction; never commits.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction as db_transaction
from django.db.models import Q, Subquery

from ledger.locks import wallets_for_update
from ledger.models import Entry, Hold, Posting, Transaction, Wallet
from ledger.posting.operations import Plan, Side


def lock_rows(ids: set[int], platform_sides: list[Side], n: int) -> dict[int, Wallet]:
    """The wallets `ids` and the shards of `platform_sides`, locked in id order."""
    cond = Q(pk__in=ids)
    for _, purpose, cid in platform_sides:
        cond |= Q(
            customer__isnull=True,
            organization__isnull=True,
            purpose=purpose,
            shard=cid % n,
            asset_id=Subquery(Wallet.objects.filter(pk=cid).values("asset_id")[:1]),
            livemode=Subquery(Wallet.objects.filter(pk=cid).values("livemode")[:1]),  # the counterparty's mode (core.livemode)
        )
    return {w.pk: w for w in wallets_for_update().filter(cond)}


def insert_transaction(tx: Transaction) -> bool:
    """INSERT in a savepoint; False if the owner's reference is taken (unique constraint)."""
    try:
        with db_transaction.atomic():
            tx.save(force_insert=True)
    except IntegrityError:
        if not tx.reference:
            raise
        return False
    return True


def insert_with_postings(tx: Transaction, postings: list[Posting]) -> bool:
    """The transaction and its posting rows; False if the owner's reference is taken."""
    if not insert_transaction(tx):
        return False
    for posting in postings:
        posting.transaction = tx
    Posting.objects.bulk_create(postings)
    return True


def write_posted(tx: Transaction, postings: list[Posting], plan: Plan, now, captured: list[Hold], *, existing: bool) -> list[int | None] | None:
    """The same rows with ORM statements (SQLite). Returns the entry ids (None where the
    database does not return them), or None if the owner's reference is taken. An existing
    transaction (held, now posted) already has its postings."""
    if existing:
        tx.save()
    elif not insert_with_postings(tx, postings):
        return None
    entries = Entry.objects.bulk_create(
        [
            Entry(transaction=tx, wallet_id=wid, direction=d, amount=a, balance_after=after, operation_index=i, created_at=now)
            for wid, d, a, after, i in plan.entries
        ]
    )
    for wid in sorted(plan.touched):
        Wallet.objects.filter(pk=wid).update(balance=plan.balances[wid], held=plan.held[wid], updated_at=now)
    for hold in captured:
        hold.capture()
        hold.transaction = tx
        hold.save(update_fields=["status", "transaction", "updated_at"])
    return [e.pk for e in entries]


def write_held(tx: Transaction, postings: list[Posting], holds: list[tuple[int, Decimal, Decimal]], why: str, now) -> bool:
    """A transaction left in review or pending, with its postings and `(wallet_id, amount, held
    after)` holds. False if the owner's reference is taken (nothing written)."""
    if not insert_with_postings(tx, postings):
        return False
    for wid, _, after in holds:
        Wallet.objects.filter(pk=wid).update(held=after, updated_at=now)
    Hold.objects.bulk_create([Hold(wallet_id=wid, transaction=tx, amount=amount, reason=f"transaction {tx.pk} {why}") for wid, amount, _ in holds])
    return True
