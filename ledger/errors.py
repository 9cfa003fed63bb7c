"""Ledger error types (SPEC 5 error table).

Invariants:
* All are `CofferError`s with a fixed code and status, rendered by
  `core.exceptions.api_exception_handler` as `{"error": {"code", "message", "details"}}`.
* A refusal on locked state (`LedgerPostingError`: WALLET_INACTIVE, CURRENCY_MISMATCH,
  INSUFFICIENT_FUNDS) carries `operation_index` in its details and is returned by the engine
  in `PostingResult`, not raised; the others are raised before anything is written.
"""

from core.errors import CofferError, InvalidState, NotFound, ValidationFailed

__all__ = [
    "ArchiveRefused",
    "CurrencyMismatch",
    "DuplicateReference",
    "HistoryArchived",
    "InsufficientFunds",
    "InvalidState",
    "LedgerPostingError",
    "LivemodeMismatch",
    "NotFound",
    "ValidationFailed",
    "WalletAlreadyExists",
    "WalletInactive",
    "WalletNotEmpty",
    "WalletNotFound",
]


class LedgerPostingError(CofferError):
    """A posting refused on the locked state of its wallets. `ledger_post` records these as a
    failed transaction (code, message, operation index) before reporting them."""


class InsufficientFunds(LedgerPostingError):
    code, status = "INSUFFICIENT_FUNDS", 422
    default_message = "The wallet's available balance does not cover this operation."


class CurrencyMismatch(LedgerPostingError):
    code, status = "CURRENCY_MISMATCH", 400
    default_message = "The wallets or the amount are in different assets."


class WalletInactive(LedgerPostingError):
    code, status = "WALLET_INACTIVE", 409
    default_message = "A suspended or closed wallet cannot take part in a transaction."


class WalletNotEmpty(CofferError):
    code, status = "WALLET_NOT_EMPTY", 409
    default_message = "A wallet can only be closed when its balance and holds are zero."


class DuplicateReference(CofferError):
    code, status = "DUPLICATE_REFERENCE", 409
    default_message = "This reference was already used for another transaction."


class WalletAlreadyExists(CofferError):
    """One active wallet per owner and asset unless labelled (SPEC 6, POST /wallets)."""

    code, status = "WALLET_EXISTS", 409
    default_message = "This owner already has an active wallet in this asset; give the new one a label."


class WalletNotFound(NotFound):
    default_message = "Wallet not found."


class HistoryArchived(CofferError):
    """A balance or statement asked for a period whose entries were archived (`ledger.archive`):
    refused rather than answered from the remaining entries, which would be wrong."""

    code, status = "HISTORY_ARCHIVED", 410
    default_message = "The entries of this period were archived; balances and statements start after the archived months."


class ArchiveRefused(CofferError):
    """`archive_entries` will not archive this month (too recent, not a monthly partition, not
    clean, or its lock not taken in time); nothing was changed."""

    code, status = "ARCHIVE_REFUSED", 409


class LivemodeMismatch(CofferError):
    """A transaction naming live-mode and test-mode wallets (core.livemode): raised before
    anything is written. A caller of one mode never sees the other mode's wallets (404), so this
    is what a wallet id reached some other way (a person paying into a test wallet) meets."""

    code, status = "LIVEMODE_MISMATCH", 400
    default_message = "A transaction cannot mix live-mode and test-mode wallets."
