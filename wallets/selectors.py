"""Reads for the customer wallets API, access-checked: a user sees only their own Customer's
wallets; anything else is `WalletNotFound` (404, never 403: SPEC 5)."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from accounts.models import Customer, User
from ledger.errors import WalletNotFound
from core.db import model_columns, model_from_row, query
from ledger.models import Asset, Entry, Transaction, Wallet
from ledger.selectors import wallet_entries


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


def _wallets_with_owners_sql(where: str) -> str:
    """Customer wallets with their asset and owner (customer, its user, its organization), the
    read every money request starts with, written out once per shape (the ORM compiling a
    4-join select_related on every money request was a fifth of a transfer's CPU)."""
    from accounts.models import Organization

    tables = {m: connection.ops.quote_name(m._meta.db_table) for m in (Wallet, Asset, Customer, User, Organization)}
    return (
        f"SELECT {model_columns(Wallet, 'w')}, {model_columns(Asset, 'a')}, {model_columns(Customer, 'c')},"
        f" {model_columns(User, 'u')}, {model_columns(Organization, 'o')}"
        f" FROM {tables[Wallet]} w JOIN {tables[Asset]} a ON a.id = w.asset_id"
        f" LEFT JOIN {tables[Customer]} c ON c.id = w.customer_id"
        f" LEFT JOIN {tables[User]} u ON u.id = c.user_id"
        f" LEFT JOIN {tables[Organization]} o ON o.id = c.organization_id"
        f" WHERE w.kind = %s AND ({where})"
    )


_SQL: dict[tuple[str, str], str] = {}


def _wallets_with_owners(where: str, params: list) -> dict[int, Wallet]:
    from accounts.models import Organization

    sql = _SQL.get((connection.vendor, where))
    if sql is None:
        sql = _SQL[(connection.vendor, where)] = _wallets_with_owners_sql(where)
    rows = query(sql, [Wallet.Kind.CUSTOMER, *params])
    found: dict[int, Wallet] = {}
    for row in rows:
        wallet, at = model_from_row(Wallet, row, 0)
        asset, at = model_from_row(Asset, row, at)
        customer, at = model_from_row(Customer, row, at)
        owner, at = model_from_row(User, row, at)
        organization, _ = model_from_row(Organization, row, at)
        Wallet._meta.get_field("asset").set_cached_value(wallet, asset)
        Wallet._meta.get_field("customer").set_cached_value(wallet, customer)
        if customer is not None:
            Customer._meta.get_field("user").set_cached_value(customer, owner)
            Customer._meta.get_field("organization").set_cached_value(customer, organization)
        found[wallet.pk] = wallet
    return found


def wallet_get_for_user(*, user: User, wallet_id: int) -> Wallet:
    """One of the user's customer wallets, with its asset and owner (else 404)."""
    try:
        pk = int(wallet_id)
    except (TypeError, ValueError):
        pk = None
    wallet = _wallets_with_owners("w.id = %s AND u.id = %s", [pk, user.pk]).get(pk) if pk is not None and not isinstance(wallet_id, bool) else None
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def transfer_wallets_get(*, user: User, source_wallet_id: int, destination_wallet_id: int) -> tuple[Wallet, Wallet]:
    """A transfer's two wallets in one read: the source must be one of the user's, the
    destination any customer wallet (platform and system wallets are not addressable by users,
    so they are as absent as a wallet that does not exist); else 404 naming the first missing
    one. Loaded with what the money path and the response need (asset, owners)."""
    found = _wallets_with_owners("(w.id = %s AND u.id = %s) OR w.id = %s", [source_wallet_id, user.pk, destination_wallet_id])
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
