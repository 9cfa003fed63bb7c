"""The ledger's posting engine: the only code that writes balances, holds, entries and usage.

Invariants (each module states its own):
* Callers build `Issue` / `Redeem` / `Transfer` operations and call `ledger_post` (or the
  two-phase functions of `pending`) inside their own database transaction; nothing else
  writes `Wallet.balance`, `Wallet.held`, `Entry`, `Hold` or `UsageCounter` rows.
* Layout: `operations` (what is asked), `engine` (lock -> simulate -> write), `pg` / `orm`
  (the writers per database), `shards` (hot platform accounts), `pending` (review, payouts
  in flight, authorization holds, reversal). Import the public names from this package.
"""

from ledger.posting.engine import ledger_post
from ledger.posting.operations import MAX_OPERATIONS, Issue, Operation, PlatformAccount, PostingResult, Redeem, Transfer
from ledger.posting.pending import (
    ledger_capture_pending,
    ledger_complete_pending,
    ledger_complete_reviewed,
    ledger_fail_pending,
    ledger_hold_pending,
    ledger_reject_reviewed,
    ledger_reverse,
    ledger_void_pending,
)
from ledger.posting.shards import platform_wallet_covering, platform_wallets_ensure

__all__ = [
    "MAX_OPERATIONS",
    "Issue",
    "Operation",
    "PlatformAccount",
    "PostingResult",
    "Redeem",
    "Transfer",
    "ledger_capture_pending",
    "ledger_complete_pending",
    "ledger_complete_reviewed",
    "ledger_fail_pending",
    "ledger_hold_pending",
    "ledger_post",
    "ledger_reject_reviewed",
    "ledger_reverse",
    "ledger_void_pending",
    "platform_wallet_covering",
    "platform_wallets_ensure",
]
