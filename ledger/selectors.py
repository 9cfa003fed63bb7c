"""Reads of the ledger, and who may see what (SPEC 6): the only place access is decided.

Invariants:
* A reader is a `Viewer`: exactly one of a user or an organization. A user sees the
  transactions they initiated and every one with an entry on their own wallets; an
  organization sees the ones it posted and every one with an entry on its wallets (system
  wallets and its customers'). Anything else is NOT_FOUND (404), never a 403.
* Both visibility conditions are index-backed: `(organization, -id)` / `(customer, -id)` on
  transactions and `(wallet, id)` on entries.
* Selectors never write and never lock; they run in whatever transaction the caller has.
* A viewer has a mode (core.livemode): on a live deployment it sees only its mode's wallets and
  transactions (a test key's are test mode); the other mode's are NOT_FOUND too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum

from accounts.models import Customer, Organization, User
from core.db import model_columns, model_from_row, query
from core.errors import NotFound
from core.livemode import mode_q, mode_sql
from ledger.errors import HistoryArchived, WalletNotFound
from ledger.models import ArchivedTotal, Asset, Entry, Transaction, Wallet

WALLET_RELATED = ("asset", "customer__user", "organization")


@dataclass(frozen=True)
class Viewer:
    """The caller of a ledger read: exactly one of a user or an organization, in a mode
    (core.livemode: `request_livemode`; a person, and the dashboard, are live)."""

    user: object | None = None
    organization: object | None = None
    livemode: bool = True

    def __post_init__(self):
        if (self.user is None) == (self.organization is None):
            raise ValueError("a viewer is exactly one of a user or an organization")

    def owns(self, wallet: Wallet) -> bool:
        """Whether the caller owns `wallet` (and so may see its balance snapshots). Reads
        `wallet.customer` / `wallet.organization_id`: select `wallet__customer` with it."""
        if self.organization is not None:
            if wallet.organization_id == self.organization.pk:
                return True
            return wallet.customer_id is not None and wallet.customer.organization_id == self.organization.pk
        return wallet.customer_id is not None and wallet.customer.user_id == self.user.pk


_OWNERS_SQL: dict[tuple[str, str], str] = {}


def wallets_with_owners(where: str, params: list, *, lock_customer_of_user: int | None = None) -> dict[int, Wallet]:
    """Wallets by id with their asset and owner (customer, its user, the owning organization:
    the customer's, or the wallet's own for a system wallet) in one written-out statement, the
    read every money request starts with. `where` is SQL over `w` (wallet), `c` (customer), `u`
    (user). The ORM compiling this 4-join select_related was a fifth of a transfer's CPU.

    `lock_customer_of_user`: the money path's customer lock, taken by the same statement (on
    PostgreSQL; a user's own movement, whose only checked customer is the user's): that user's
    customer row is locked FOR NO KEY UPDATE and read fresh after the lock, as
    `compliance.limits.customers_lock` does; outside a transaction (or on SQLite) no lock is
    taken here and the money path takes its own."""
    # outside a transaction a lock would end with the statement: leave it to the money path
    locking = lock_customer_of_user is not None and connection.vendor == "postgresql" and connection.in_atomic_block
    key = (connection.vendor, where, locking)
    sql = _OWNERS_SQL.get(key)
    if sql is None:
        tables = {m: connection.ops.quote_name(m._meta.db_table) for m in (Wallet, Asset, Customer, User, Organization)}
        sql = (
            f"SELECT {model_columns(Wallet, 'w')}, {model_columns(Asset, 'a')}, {model_columns(Customer, 'c')},"
            f" {model_columns(User, 'u')}, {model_columns(Organization, 'o')}"
            + (f", {model_columns(Customer, 'lc')}" if locking else "")
            + f" FROM {tables[Wallet]} w JOIN {tables[Asset]} a ON a.id = w.asset_id"
            f" LEFT JOIN {tables[Customer]} c ON c.id = w.customer_id"
            f" LEFT JOIN {tables[User]} u ON u.id = c.user_id"
            f" LEFT JOIN {tables[Organization]} o ON o.id = coalesce(c.organization_id, w.organization_id)"
            + (" LEFT JOIN lc ON lc.id = c.id" if locking else "")
            + f" WHERE {where}"
        )
        if locking:  # materialized: the lock is taken whole before the join, its rows are the locked versions
            sql = (f"WITH lc AS MATERIALIZED (SELECT * FROM {tables[Customer]} WHERE user_id = %s ORDER BY id FOR NO KEY UPDATE) "
                   + sql)
        _OWNERS_SQL[key] = sql
    found: dict[int, Wallet] = {}
    for row in query(sql, [lock_customer_of_user, *params] if locking else params):
        wallet, at = model_from_row(Wallet, row, 0)
        asset, at = model_from_row(Asset, row, at)
        customer, at = model_from_row(Customer, row, at)
        owner, at = model_from_row(User, row, at)
        organization, at = model_from_row(Organization, row, at)
        if locking:
            fresh, _ = model_from_row(Customer, row, at)
            if fresh is not None:  # the locked customer as it is now (the rest of the row is the statement's snapshot)
                customer = fresh
                wallet.customer_locked = True  # the money path takes it as locked (wallets.pipeline)
        Wallet._meta.get_field("asset").set_cached_value(wallet, asset)
        Wallet._meta.get_field("customer").set_cached_value(wallet, customer)
        Wallet._meta.get_field("organization").set_cached_value(wallet, organization if wallet.organization_id else None)
        if customer is not None:
            Customer._meta.get_field("user").set_cached_value(customer, owner)
            Customer._meta.get_field("organization").set_cached_value(customer, organization if customer.organization_id else None)
        found[wallet.pk] = wallet
    return found


def organization_wallets_get(*, organization, ids, livemode: bool = True) -> dict[int, Wallet]:
    """Those of `ids` that are the organization's wallets (its system wallets and its customers')
    of mode `livemode`, with asset and owner; the others are simply absent."""
    ids = sorted({i for i in ids if isinstance(i, int) and not isinstance(i, bool)})
    if not ids:
        return {}
    mode, mode_params = mode_sql(livemode, "w.livemode")
    return wallets_with_owners(
        f"w.id IN ({', '.join(['%s'] * len(ids))}) AND (w.organization_id = %s OR c.organization_id = %s){mode}",
        [*ids, organization.pk, organization.pk, *mode_params],
    )


def wallets_owned(*, viewer: Viewer) -> QuerySet[Wallet]:
    if viewer.organization is not None:
        return Wallet.objects.filter(Q(organization=viewer.organization) | Q(customer__organization=viewer.organization), mode_q(viewer.livemode))
    return Wallet.objects.filter(mode_q(viewer.livemode), customer__user=viewer.user)


def transactions_visible(*, viewer: Viewer) -> QuerySet[Transaction]:
    """Every transaction the viewer may see, newest first (module docstring)."""
    touches_own = Exists(
        Entry.objects.filter(transaction=OuterRef("pk"), wallet_id__in=wallets_owned(viewer=viewer).values("pk"))
    )
    if viewer.organization is not None:
        initiated = Q(organization=viewer.organization)
    else:
        initiated = Q(customer__user=viewer.user)
    return Transaction.objects.filter(initiated | touches_own, mode_q(viewer.livemode)).order_by("-id")


def transaction_get(*, viewer: Viewer, transaction_id: int) -> Transaction:
    found = transactions_visible(viewer=viewer).filter(pk=transaction_id).first()
    if found is None:
        raise NotFound("Transaction not found.", details={"transaction_id": transaction_id})
    return found


def transaction_entries_visible(*, viewer: Viewer, transaction_id: int) -> QuerySet[Entry]:
    """The entries of a visible transaction, in posting order (404 if the transaction is not)."""
    transaction = transaction_get(viewer=viewer, transaction_id=transaction_id)
    return (
        Entry.objects.filter(transaction=transaction)
        .select_related("wallet__asset", "wallet__customer")
        .order_by("id")
    )


def assets_visible(*, organization=None) -> QuerySet[Asset]:
    """Platform assets, plus the organization's own custom assets."""
    cond = Q(organization__isnull=True)
    if organization is not None:
        cond |= Q(organization=organization)
    return Asset.objects.filter(cond)


def asset_get(*, code: str, organization=None) -> Asset:
    """By code: the organization's custom asset wins over a platform asset of the same code.
    Raises Asset.DoesNotExist."""
    code = (code or "").strip().upper()
    if organization is not None:
        own = Asset.objects.filter(organization=organization, code=code).first()
        if own is not None:
            return own
    return Asset.objects.get(organization__isnull=True, code=code)


def platform_asset(code: str) -> Asset | None:
    """The one lookup of a platform asset (not an organization's custom one) by code, or None."""
    return Asset.objects.filter(code=code, organization__isnull=True).first()


def platform_exponents() -> dict[str, int]:
    """The exponent of each platform asset, by code."""
    return dict(Asset.objects.filter(organization__isnull=True).values_list("code", "exponent"))


def customer_wallets(*, customer) -> list[Wallet]:
    """A customer's wallets with their assets, oldest first."""
    return list(Wallet.objects.select_related("asset").filter(customer=customer).order_by("id"))


def wallet_list(*, customer=None, organization=None, livemode: bool = True) -> QuerySet[Wallet]:
    """A customer's wallets, or an organization's system wallets and its customers' wallets of
    mode `livemode` (a customer's wallets are of its mode)."""
    qs = Wallet.objects.select_related("asset", "customer")
    if customer is not None:
        return qs.filter(customer=customer)
    if organization is not None:
        return qs.filter(Q(organization=organization) | Q(customer__organization=organization), mode_q(livemode))
    return qs.none()


def wallet_owner_name(wallet: Wallet | None) -> str | None:
    """Who a wallet belongs to, as shown in wallet and transaction representations: a user's
    full name; an organization's customer by name, else external id; an organization's system
    wallet by label, else the organization's name; a platform wallet is "Coffer". Reads
    `wallet.customer(.user)` and `wallet.organization`: select them with the wallet."""
    if wallet is None:
        return None
    customer = wallet.customer
    if customer is not None:
        if customer.user_id is not None and customer.user.full_name:
            return customer.user.full_name
        return customer.name or customer.external_id or f"customer {customer.pk}"
    if wallet.organization_id is not None:
        return wallet.label or wallet.organization.name
    return "Coffer"


def wallet_entries(*, wallet: Wallet | int) -> QuerySet[Entry]:
    """A wallet's statement, newest first."""
    wid = wallet.pk if isinstance(wallet, Wallet) else wallet
    return Entry.objects.filter(wallet_id=wid).select_related("wallet__asset").order_by("-id")


def platform_account_balance(asset: Asset | int, purpose: str, *, livemode: bool | None = None) -> Decimal:
    """The logical balance of a sharded platform account: the sum of its shard rows (in mode
    `livemode`, core.livemode; both modes' rows when None)."""
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    rows = Wallet.objects.filter(asset_id=asset_id, purpose=purpose, customer__isnull=True, organization__isnull=True)
    if livemode is not None:
        rows = rows.filter(livemode=livemode)
    total = rows.aggregate(total=Sum("balance"))["total"]
    return total or Decimal(0)


def org_wallets_for(organization, livemode: bool = True) -> QuerySet[Wallet]:
    """An organization's system wallets and its customers' wallets of mode `livemode`, with assets and owners."""
    return wallets_owned(viewer=Viewer(organization=organization, livemode=livemode)).select_related(*WALLET_RELATED).order_by("id")


def org_wallet_get(organization, wallet_id: int, livemode: bool = True) -> Wallet:
    wallet = org_wallets_for(organization, livemode).filter(pk=wallet_id).first()
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def wallet_get_visible(*, viewer: Viewer, wallet_id: int) -> Wallet:
    """A wallet the viewer owns, with asset and owner: a user's own customer wallets; an
    organization's system wallets and its customers' wallets. Anything else is WalletNotFound
    (404), whether it exists or not."""
    pk = wallet_id if isinstance(wallet_id, int) and not isinstance(wallet_id, bool) else None
    found = None
    if pk is not None and viewer.organization is not None:
        found = organization_wallets_get(organization=viewer.organization, ids=[pk], livemode=viewer.livemode).get(pk)
    elif pk is not None:
        mode, mode_params = mode_sql(viewer.livemode, "w.livemode")
        found = wallets_with_owners(f"w.kind = %s AND w.id = %s AND u.id = %s{mode}", [Wallet.Kind.CUSTOMER, pk, viewer.user.pk, *mode_params]).get(pk)
    if found is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return found


@dataclass(frozen=True)
class BalanceAt:
    """A wallet's posted balance right after its last entry at or before `at` (0 and no entry
    before its first one)."""

    balance: Decimal
    entry_id: int | None


def wallet_balance_at(*, wallet: Wallet | int, at) -> BalanceAt:
    """The `balance_after` of the wallet's last entry with `created_at <= at` (ties by id): one
    descent of the (wallet, created_at, id) index, never a scan of the wallet's history."""
    wid = wallet.pk if isinstance(wallet, Wallet) else wallet
    wallet_archived_guard(wallet_id=wid, starts_by=at, ends_after=at)
    block = _archived_before(wallet_id=wid, until=at)
    row = wallet_last_entry_query(wallet_id=wid, at=at).first()
    return _latest(row, block)


def _latest(row, block) -> BalanceAt:
    """The later (by entry id) of the last remaining entry and the last archived month before
    the instant asked: an archived month's last balance stands for its entries."""
    if block is not None and (row is None or block[0] > row[0]):
        return BalanceAt(balance=block[1], entry_id=block[0])
    if row is None:
        return BalanceAt(balance=Decimal(0), entry_id=None)
    return BalanceAt(balance=row[1], entry_id=row[0])


def wallet_archived_guard(*, wallet_id: int, starts_by, ends_after) -> None:
    """Refuse (HISTORY_ARCHIVED) a read that needs entries of an archived month of `wallet_id`
    (`ledger.archive`): one with `month_start <= starts_by` and `month_end > ends_after`
    (`ends_after` None: any month starting by then). A balance at an instant asks
    (at, at); a balance strictly before an instant (before - 1 µs, before); a statement
    (end, start). One descent of the (wallet, month_start) index."""
    found = ArchivedTotal.objects.filter(wallet_id=wallet_id, month_start__lte=starts_by)
    if ends_after is not None:
        found = found.filter(month_end__gt=ends_after)
    months = sorted(found.values_list("month_start", "month_end")[:24])
    if months:
        available = months[-1][1]
        names = [f"{m:%Y-%m}" for m, _ in months]
        raise HistoryArchived(
            f"The entries of {', '.join(names)} of this wallet were archived; ask for balances at and periods from"
            f" {available:%Y-%m-%dT%H:%M:%SZ} on.",
            details={"wallet_id": wallet_id, "archived_months": names, "available_from": available.isoformat().replace("+00:00", "Z")},
        )


def _archived_before(*, wallet_id: int, until) -> tuple[int, Decimal] | None:
    """(last_entry_id, last_balance_after) of the wallet's latest archived month ending by `until`."""
    return (
        ArchivedTotal.objects.filter(wallet_id=wallet_id, month_end__lte=until)
        .order_by("-month_start").values_list("last_entry_id", "last_balance_after").first()
    )


def wallet_last_entry_query(*, wallet_id: int, at) -> QuerySet:
    """(id, balance_after) of the wallet's entries at or before `at`, latest first: its first
    row is read backwards off the (wallet, created_at, id) index."""
    return (
        Entry.objects.filter(wallet_id=wallet_id, created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("id", "balance_after")
    )


def wallet_balance_before(*, wallet: Wallet | int, before) -> BalanceAt:
    """As `wallet_balance_at`, for entries strictly before `before` (a statement's opening)."""
    wid = wallet.pk if isinstance(wallet, Wallet) else wallet
    wallet_archived_guard(wallet_id=wid, starts_by=before - dt.timedelta(microseconds=1), ends_after=before)
    block = _archived_before(wallet_id=wid, until=before)
    row = (
        Entry.objects.filter(wallet_id=wid, created_at__lt=before)
        .order_by("-created_at", "-id")
        .values_list("id", "balance_after")
        .first()
    )
    return _latest(row, block)
