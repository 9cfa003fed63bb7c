"""Reads for the customer wallets API, access-checked: a user sees only their own Customer's
wallets; anything else is `WalletNotFound` (404, never 403: SPEC 5)."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Customer, User
from ledger.errors import WalletNotFound
from ledger.models import Entry, Transaction, Wallet
from ledger.selectors import wallet_entries, wallets_with_owners


def customer_of(*, user: User) -> Customer | None:
    return Customer.objects.filter(user=user).first()


def wallets_of_user(*, user: User) -> QuerySet[Wallet]:
    return Wallet.objects.filter(customer__user=user, kind=Wallet.Kind.CUSTOMER).select_related(
        "asset", "customer__user", "customer__organization"
    ).order_by("id")


def wallet_entries_for_user(*, user: User, wallet_id: int) -> QuerySet[Entry]:
    """The statement of one of the user's wallets, newest first."""
    wallet = wallet_get_for_user(user=user, wallet_id=wallet_id)
    return wallet_entries(wallet=wallet)


def _wallets_with_owners(where: str, params: list, lock_customer_of_user: int | None = None) -> dict[int, Wallet]:
    """Customer wallets matching `where` with their asset and owner (ledger.selectors)."""
    return wallets_with_owners(f"w.kind = %s AND ({where})", [Wallet.Kind.CUSTOMER, *params], lock_customer_of_user=lock_customer_of_user)


def wallet_get_for_user(*, user: User, wallet_id: int, lock_customer: bool = False) -> Wallet:
    """One of the user's customer wallets, with its asset and owner (else 404). `lock_customer`:
    the money path's customer lock in the same statement (see `ledger.selectors.wallets_with_owners`;
    the movement then says `customer_locked=True`)."""
    try:
        pk = int(wallet_id)
    except (TypeError, ValueError):
        pk = None
    wallet = _wallets_with_owners(
        "w.id = %s AND u.id = %s", [pk, user.pk], user.pk if lock_customer else None,
    ).get(pk) if pk is not None and not isinstance(wallet_id, bool) else None
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def transfer_wallets_get(*, user: User, source_wallet_id: int, destination_wallet_id: int, lock_customer: bool = False) -> tuple[Wallet, Wallet]:
    """A transfer's two wallets in one read: the source must be one of the user's, the
    destination any customer wallet (platform and system wallets are not addressable by users,
    so they are as absent as a wallet that does not exist); else 404 naming the first missing
    one. Loaded with what the money path and the response need (asset, owners); `lock_customer`
    as for `wallet_get_for_user` (the user's customer only, never the destination's)."""
    found = _wallets_with_owners(
        "(w.id = %s AND u.id = %s) OR w.id = %s", [source_wallet_id, user.pk, destination_wallet_id], user.pk if lock_customer else None,
    )
    for wallet_id in (source_wallet_id, destination_wallet_id):
        if wallet_id not in found:
            raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return found[source_wallet_id], found[destination_wallet_id]


def withdrawal_get_for_user(*, user: User, transaction_id: int) -> Transaction:
    """One of the user's withdrawals (a transaction with a payout), else 404."""
    from core.errors import NotFound

    tx = (
        Transaction.objects.filter(pk=transaction_id, type=Transaction.Type.WITHDRAWAL, payout__customer__user=user)
        .select_related("payout__wallet__asset").first()
    )
    if tx is None:
        raise NotFound(f"Withdrawal {transaction_id} not found.", details={"transaction_id": transaction_id})
    return tx


def withdrawals_of_user(*, user: User) -> QuerySet[Transaction]:
    return (
        Transaction.objects.filter(type=Transaction.Type.WITHDRAWAL, payout__customer__user=user)
        .select_related("payout__wallet__asset").order_by("-id")
    )
