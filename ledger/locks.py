"""Row-lock querysets of the ledger, and where the ledger's locks sit in the global order
(docs/lock-order.md has the whole order, with its advisory locks).

Invariants (STYLE 4, SPEC 4.7):
* One order everywhere: the parent row first (a payout, review case, exchange quote or pay
  order, locked by its own app; an `AuthorizationHold`, `wallets.movements.holds`; a `Schedule`,
  then its occurrence, `wallets.schedules`), then the ledger
  transaction (a held or pending one being completed; the ORIGINAL of a reversal,
  `wallets.movements.reversals`, so racing partial reversals of one transaction run one after the other),
  then customers by ascending id (`compliance.limits.customers_lock`), then wallets by
  ascending id (a posting's shard rows in the same statement), then holds. Nothing locks
  backwards, so postings cannot deadlock.
* Entries and postings are insert-only and never locked.
* `of=("self",)` keeps joined rows (the asset) unlocked.
* Every lock lasts until the caller's transaction ends: call these inside one.
"""

from django.db.models import QuerySet

from ledger.models import Hold, Transaction, Wallet


def wallets_for_update() -> QuerySet[Wallet]:
    return Wallet.objects.select_related("asset").order_by("pk").select_for_update(of=("self",))


def transactions_for_update() -> QuerySet[Transaction]:
    return Transaction.objects.order_by("pk").select_for_update(of=("self",))


def holds_for_update() -> QuerySet[Hold]:
    return Hold.objects.order_by("pk").select_for_update(of=("self",))
