"""Reads for the customer wallets API, access-checked: a user sees only their own Customer's
wallets; anything else is `WalletNotFound` (404, never 403: SPEC 5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from accounts.models import Customer, User
from ledger.errors import WalletNotFound
from ledger.models import Entry, Transaction, Wallet
from ledger.selectors import wallet_entries, wallet_owner_name


def customer_of(*, user: User) -> Customer | None:
    return Customer.objects.filter(user=user).first()


def wallets_of_user(*, user: User) -> QuerySet[Wallet]:
    return Wallet.objects.filter(customer__user=user, kind=Wallet.Kind.CUSTOMER).select_related("asset", "customer__user").order_by("id")


def wallet_get_for_user(*, user: User, wallet_id: int) -> Wallet:
    wallet = wallets_of_user(user=user).filter(pk=wallet_id).first()
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def wallet_entries_for_user(*, user: User, wallet_id: int) -> QuerySet[Entry]:
    """The statement of one of the user's wallets, newest first."""
    wallet = wallet_get_for_user(user=user, wallet_id=wallet_id)
    return wallet_entries(wallet=wallet)


def transfer_destination_get(*, wallet_id: int) -> Wallet:
    """A transfer may go to any customer's wallet by id; platform and system wallets are not
    addressable by users, so they are as absent as a wallet that does not exist."""
    wallet = Wallet.objects.filter(pk=wallet_id, kind=Wallet.Kind.CUSTOMER).select_related("asset").first()
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def transaction_view(*, transaction: Transaction, viewer: User) -> dict[str, Any]:
    """A deposit's or transfer's representation for its initiator (SPEC 6 "A transaction in
    responses"): amounts at the asset's exponent, the caller's own `balance_after`."""
    entries = list(transaction.entries.select_related("wallet__asset", "wallet__customer__user", "wallet__organization").order_by("id"))
    wallets = {e.wallet_id: e.wallet for e in entries}
    operation = (transaction.operations or [{}])[0]
    op_type = operation.get("type")
    source_id = operation.get("source_wallet_id")
    destination_id = operation.get("destination_wallet_id")
    if op_type == "issue":
        source_id, destination_id = None, operation.get("wallet_id")
    elif op_type == "redeem":
        source_id, destination_id = operation.get("wallet_id"), None
    missing = {i for i in (source_id, destination_id) if i is not None and i not in wallets}
    if missing:
        wallets.update({w.pk: w for w in Wallet.objects.filter(pk__in=missing).select_related("asset", "customer__user", "organization")})
    source, destination = wallets.get(source_id), wallets.get(destination_id)
    asset = (source or destination).asset
    amount = Decimal(operation.get("amount", "0"))
    fee = sum(
        (Decimal(op["amount"]) for op in transaction.operations[1:] if op.get("destination_platform") == Wallet.Purpose.FEE),
        Decimal(0),
    )
    own = [w.pk for w in (source, destination) if w is not None and w.customer_id and w.customer.user_id == viewer.pk]
    balance_after = None
    if own:
        mine = [e for e in entries if e.wallet_id == own[0]]
        if mine:
            balance_after = asset.format(mine[-1].balance_after)
    return {
        "id": transaction.pk,
        "type": transaction.type,
        "status": transaction.status,
        "amount": asset.format(amount),
        "currency": asset.code,
        "fee": asset.format(fee),
        "source_wallet_id": source.pk if source else None,
        "source_wallet_name": wallet_owner_name(source) if source else None,
        "destination_wallet_id": destination.pk if destination else None,
        "destination_wallet_name": wallet_owner_name(destination) if destination else None,
        "reference": transaction.reference,
        "description": transaction.description,
        "created_at": transaction.created_at,
        "completed_at": transaction.completed_at,
        "balance_after": balance_after,
    }


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
