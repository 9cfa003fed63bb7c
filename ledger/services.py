"""The posting engine: the only code that writes balances, holds and entries.

`ledger_post` takes an ordered list of operations and posts them all or none:

1. Normalise: every operation becomes one *leg* (source wallet -> destination wallet, amount).
   `Issue(w)` is issuance -> w, `Redeem(w)` is w -> issuance; `Transfer` may name a platform
   account (`PlatformAccount("fee")`) instead of a wallet, for fee legs.
2. Lock every wallet involved ONCE, in ascending id order, with one `SELECT ... ORDER BY id
   FOR UPDATE` (SPEC 4.7: one global lock order, so concurrent postings cannot deadlock).
   Platform shard rows are resolved inside that same statement (see "Hot accounts").
3. Validate amounts against the asset's exponent (400, raised: nothing is recorded for a
   malformed request), then apply the legs in memory, in order: for each, the wallets must be
   active (WALLET_INACTIVE), in the same asset as each other and as the stated currency
   (CURRENCY_MISMATCH), and after it no non-issuance wallet's available balance
   (balance - held) may be below zero (INSUFFICIENT_FUNDS, with `operation_index`).
4. Write. On PostgreSQL one statement does it all: a data-modifying CTE inserts the
   transaction (`ON CONFLICT DO NOTHING` for the reference), bulk-inserts every entry with its
   `balance_after` (computed in memory, in application order, so entry ids follow the chain),
   and updates every touched balance from a VALUES list. A posting is therefore two statements
   (lock, write) plus the caller's BEGIN/COMMIT. Elsewhere (SQLite) the same rows are written
   with ordinary ORM statements.

Failures. A posting refused on the locked state (inactive wallet, currency mismatch,
insufficient funds) is recorded as a `failed` transaction with its code, message and operation
index, and `ledger_post` **returns** `PostingResult(ok=False, error=...)` instead of raising.
Nothing of the attempted work was written (validation happens in memory before any write), so
there is no savepoint to roll back and the failed record is part of the caller's transaction:
the API layer commits it together with the idempotency record and the 422 response. A caller
that wants an exception calls `result.raise_for_error()` (which returns the transaction when
the posting succeeded) - and must not expect the failed record to survive if it lets that
exception roll its own transaction back. Malformed requests (bad amounts, unknown wallets,
empty operation lists, a wallet transferring to itself) raise `ValidationFailed` /
`WalletNotFound` directly and record nothing.

A `reference` already used by the same owner (organization or customer; completed or failed)
yields `PostingResult(ok=False, error=DuplicateReference)` whose `transaction` is the existing
one; the unique constraints are the guard, hit with `ON CONFLICT DO NOTHING` (PostgreSQL) or a
savepoint around the INSERT (elsewhere), so racing duplicates are caught too.

Transactions. `ledger_post` never opens a savepoint: inside the caller's atomic block it runs
in the caller's transaction (errors it raises are raised before anything is written, so they
do not poison that transaction); called outside one, it opens its own.

Hot accounts (SPEC 4.9). Every deposit touches the asset's issuance account and every fee the
platform fee wallet; as single rows they would be one lock that all of that traffic queues on.
Each platform account is therefore `LEDGER_HOT_ACCOUNT_SHARDS` (default 16) Wallet rows with the
same (asset, purpose) and `shard` 0..N-1. A posting uses shard `counterparty_wallet_id % N`: it
is deterministic (the same customer always hits the same shard, so a reversal lands where the
original did), spreads concurrent postings across N rows, and each shard keeps its own exact
balance and `balance_after` chain, so every invariant holds per row; the account's balance is
the sum of its shards (`ledger.selectors.platform_account_balance`). Issuance shards may go
negative, so any shard serves any issue or redeem. Paying out of a sharded non-issuance account
(e.g. sweeping fees) uses `platform_wallet_covering`, which picks a shard whose available
balance covers the amount. Shard rows are created on first use (`INSERT ... ON CONFLICT DO
NOTHING`, then the lock statement is re-run), and eagerly by `asset_create`.
Deriving the balance from entries instead was rejected: it would make `balance_after` (and the
per-row invariants) meaningless for the very accounts auditors look at first.

Holds and review. `hold_place` reserves funds (held += amount) so the available balance drops;
`hold_release` undoes it; `hold_capture` releases and posts operations in one posting.
`ledger_post(..., hold_for_review=True)` validates like a posting, then leaves the transaction
`in_review` with its operations stored and holds for each wallet's largest running outflow;
`ledger_complete_reviewed` captures them and posts, `ledger_reject_reviewed` releases them.
`ledger_hold_pending` does the same but leaves the transaction `pending` (a payout in flight);
`ledger_complete_pending` posts it, `ledger_fail_pending` releases its holds and fails it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Union

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction as db_transaction
from django.db.models import F, Q, Subquery
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from core.errors import CofferError, InvalidState, ValidationFailed
from core.money import MAX_INTEGER_DIGITS, MONEY_CONTEXT, parse_amount
from ledger.checks import ledger_check  # noqa: F401  (re-exported: ledger.services.ledger_check)
from ledger.errors import (
    CurrencyMismatch,
    DuplicateReference,
    InsufficientFunds,
    LedgerPostingError,
    WalletAlreadyExists,
    WalletInactive,
    WalletNotEmpty,
    WalletNotFound,
)
from ledger.locks import holds_for_update, transactions_for_update, wallets_for_update
from ledger.models import Asset, Entry, Hold, Transaction, Wallet, hot_account_shards
from ledger.usage import UsageLeg, WalletOwner, usage_apply, usage_charges, usage_day, usage_release, usage_rows_sql

MAX_OPERATIONS = 100
_TRANSACTION_TYPES = frozenset(Transaction.Type.values)  # .values rebuilds a list on every access
ZERO = Decimal(0)

# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------

WalletRef = Union[int, Wallet]


@dataclass(frozen=True)
class PlatformAccount:
    """A sharded platform account named by purpose ("fee", "fx", "settlement"); the shard is
    chosen from the other wallet of the leg."""

    purpose: str


@dataclass(frozen=True)
class Issue:
    """Value enters from outside: credit `wallet`, debit the asset's issuance account."""

    wallet: WalletRef
    amount: Decimal | str | int
    currency: str | None = None


@dataclass(frozen=True)
class Redeem:
    """Value leaves to outside: debit `wallet`, credit the asset's issuance account."""

    wallet: WalletRef
    amount: Decimal | str | int
    currency: str | None = None


@dataclass(frozen=True)
class Transfer:
    """Wallet to wallet, same asset. Either side may be a `PlatformAccount` (fee legs)."""

    source: WalletRef | PlatformAccount
    destination: WalletRef | PlatformAccount
    amount: Decimal | str | int
    currency: str | None = None


Operation = Union[Issue, Redeem, Transfer]


@dataclass
class PostingResult:
    transaction: Transaction | None
    ok: bool
    error: CofferError | None = None

    def raise_for_error(self) -> Transaction:
        """Raise the failure, or return the posted transaction."""
        if not self.ok:
            assert self.error is not None
            raise self.error
        assert self.transaction is not None
        return self.transaction


# A leg side: ("w", wallet_id) or ("p", purpose, counterparty_wallet_id).
_Side = tuple


@dataclass
class _Leg:
    index: int
    source: _Side
    destination: _Side
    raw_amount: Any
    currency: str | None
    op: Operation
    amount: Decimal = ZERO


def _wallet_id(ref: Any, what: str) -> int:
    if isinstance(ref, Wallet):
        if ref.pk is None:
            raise ValueError(f"{what} is an unsaved wallet")
        return ref.pk
    if isinstance(ref, bool) or not isinstance(ref, int):
        raise ValidationFailed(f"{what}: a wallet id is required.", details={"fields": {what: ["A wallet id is required."]}})
    return ref


def _legs(operations: Sequence[Operation]) -> list[_Leg]:
    if not operations:
        raise ValidationFailed("operations: at least one operation is required.", details={"fields": {"operations": ["At least one operation is required."]}})
    if len(operations) > MAX_OPERATIONS:
        raise ValidationFailed(
            f"operations: at most {MAX_OPERATIONS} operations per transaction.",
            details={"fields": {"operations": [f"At most {MAX_OPERATIONS} operations per transaction."]}},
        )
    legs: list[_Leg] = []
    for i, op in enumerate(operations):
        where = f"operations[{i}]"
        if isinstance(op, Issue):
            wid = _wallet_id(op.wallet, f"{where}.wallet_id")
            legs.append(_Leg(i, ("p", Wallet.Purpose.ISSUANCE, wid), ("w", wid), op.amount, op.currency, op))
        elif isinstance(op, Redeem):
            wid = _wallet_id(op.wallet, f"{where}.wallet_id")
            legs.append(_Leg(i, ("w", wid), ("p", Wallet.Purpose.ISSUANCE, wid), op.amount, op.currency, op))
        elif isinstance(op, Transfer):
            src_platform = isinstance(op.source, PlatformAccount)
            dst_platform = isinstance(op.destination, PlatformAccount)
            if src_platform and dst_platform:
                raise ValidationFailed(f"{where}: a transfer needs at least one concrete wallet.")
            if src_platform:
                did = _wallet_id(op.destination, f"{where}.destination_wallet_id")
                legs.append(_Leg(i, ("p", op.source.purpose, did), ("w", did), op.amount, op.currency, op))
            elif dst_platform:
                sid = _wallet_id(op.source, f"{where}.source_wallet_id")
                legs.append(_Leg(i, ("w", sid), ("p", op.destination.purpose, sid), op.amount, op.currency, op))
            else:
                sid = _wallet_id(op.source, f"{where}.source_wallet_id")
                did = _wallet_id(op.destination, f"{where}.destination_wallet_id")
                if sid == did:
                    raise ValidationFailed(
                        f"{where}: source and destination are the same wallet.",
                        details={"fields": {f"{where}.destination_wallet_id": ["Must differ from the source wallet."]}},
                    )
                legs.append(_Leg(i, ("w", sid), ("w", did), op.amount, op.currency, op))
        else:
            raise TypeError(f"not a ledger operation: {op!r}")
    return legs


def _platform_purposes() -> set[str]:
    return {p for p in Wallet.Purpose.values if p}


# --------------------------------------------------------------------------------------------
# Platform accounts
# --------------------------------------------------------------------------------------------


def _platform_kind(purpose: str) -> str:
    return Wallet.Kind.ISSUANCE if purpose == Wallet.Purpose.ISSUANCE else Wallet.Kind.SYSTEM


def platform_wallets_ensure(*, asset: Asset | int, purpose: str) -> None:
    """Create the N shard rows of a platform account if missing (idempotent, race-safe)."""
    if purpose not in _platform_purposes():
        raise ValueError(f"unknown platform account purpose {purpose!r}")
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    Wallet.objects.bulk_create(
        [
            Wallet(asset_id=asset_id, kind=_platform_kind(purpose), purpose=purpose, shard=s, label=f"platform {purpose} #{s}")
            for s in range(hot_account_shards())
        ],
        ignore_conflicts=True,
    )


def _platform_shards(asset_id: int, purpose: str):
    return Wallet.objects.filter(asset_id=asset_id, purpose=purpose, customer__isnull=True, organization__isnull=True)


def platform_wallet(asset: Asset | int, purpose: str, *, for_wallet_id: int) -> Wallet:
    """The shard of platform account (asset, purpose) that postings with `for_wallet_id` use."""
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    shard = for_wallet_id % hot_account_shards()
    found = _platform_shards(asset_id, purpose).filter(shard=shard).first()
    if found is None:
        platform_wallets_ensure(asset=asset_id, purpose=purpose)
        found = _platform_shards(asset_id, purpose).get(shard=shard)
    return found


def platform_wallet_covering(asset: Asset | int, purpose: str, amount: Decimal) -> Wallet:
    """A shard of a sharded non-issuance platform account whose available balance covers
    `amount` (the richest one); if none does, the richest, so the posting reports
    INSUFFICIENT_FUNDS under lock."""
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    platform_wallets_ensure(asset=asset_id, purpose=purpose)
    shards = list(_platform_shards(asset_id, purpose).filter(status=Wallet.Status.ACTIVE))
    if not shards:
        raise WalletInactive(f"No active {purpose} account for this asset.")
    shards.sort(key=lambda w: (w.balance - w.held, -w.pk), reverse=True)
    return shards[0]


# --------------------------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------------------------


@functools.cache
def _prepared_cursor_class() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

        def _convert_query(self, query, params=None):
            # psycopg records the statement (`_query`, what Django's query log reads) only on
            # the unprepared path; record it on the prepared one too.
            self._query = pgq = super()._convert_query(query, params)
            return pgq

    return PreparedCursor


def _pg_cursor():
    """A Django cursor (execute wrappers, query capture, error translation all apply) over a
    psycopg cursor with server-side binding that prepares its statements: the two statements
    of a posting are parsed and planned once per connection instead of on every posting
    (planning was about half of their server time). Set LEDGER_PREPARED_STATEMENTS = False
    behind a transaction-mode pooler that cannot carry prepared statements (pgbouncer < 1.21)."""
    if not getattr(settings, "LEDGER_PREPARED_STATEMENTS", True):
        return connection.cursor()
    db = connections[DEFAULT_DB_ALIAS]  # one lookup through the `connection` proxy, not six
    db.ensure_connection()
    pg = db.connection
    if pg.prepare_threshold is None:
        # Django turns psycopg's statement preparation off (None); a huge threshold turns it on
        # for explicit `prepare=True` only. Django's own cursors bind client-side and so never
        # prepare anything: only the statements run through this cursor are prepared.
        pg.prepare_threshold = 2**31 - 1
    with db.wrap_database_errors:
        return db._prepare_cursor(_prepared_cursor_class()(pg))


class _LockedAsset:
    """The asset of a locked row: what a posting reads of it."""

    __slots__ = ("code", "exponent")

    def __init__(self, code: str, exponent: int) -> None:
        self.code, self.exponent = code, exponent


class _LockedWallet:
    """A wallet row locked by the posting on PostgreSQL, with the attributes of `Wallet` that
    the posting reads (the SQLite path uses Wallet instances, which have the same ones). A model
    instance per locked row (and django-fsm's per-instance state tracking) was ~20% of a
    posting's Python CPU; the rows never leave the posting."""

    __slots__ = ("pk", "asset_id", "kind", "status", "purpose", "shard", "is_platform", "balance", "held", "asset", "customer_id")

    def __init__(self, values: tuple, asset: _LockedAsset) -> None:
        (self.pk, self.asset_id, self.kind, self.status, self.purpose, self.shard, self.is_platform,
         self.balance, self.held) = values[:9]
        self.customer_id = values[11]
        self.asset = asset


_Row = Union[Wallet, _LockedWallet]  # a locked wallet row: a model instance on SQLite, slots on PostgreSQL


def _pg_query(sql: str, params: list[Any], db: Any = None, *, one: bool = False) -> Any:
    """Run one statement of the posting on PostgreSQL and return its rows (`one`: the first).

    Hot path: a psycopg server-binding cursor kept per connection, prepared statements, inside
    Django's own error translation (`wrap_database_errors`: psycopg errors surface as
    django.db IntegrityError/DatabaseError, as from any Django cursor) and after the checks a
    Django cursor makes (thread sharing, a transaction already broken by an error). Django's
    CursorWrapper and a cursor per statement were ~15% of a posting's Python CPU. The
    transaction is Django's: the caller's atomic block (ledger_post always runs in one) turned
    autocommit off, so psycopg sends BEGIN before the first statement and the block commits.

    When something watches Django's cursors (query capture: DEBUG, CaptureQueriesContext,
    assertNumQueries; or execute wrappers, e.g. bench/ledger_bench.py's round-trip count), the
    statement goes through a Django cursor instead, so it is logged and wrapped as usual.
    `db`: the default connection, when the caller already has it."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    if db.queries_logged or db.execute_wrappers or not getattr(settings, "LEDGER_PREPARED_STATEMENTS", True):
        with _pg_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if one else cursor.fetchall()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    db.validate_no_broken_transaction()
    pg = db.connection
    cursor = db.__dict__.get("_ledger_cursor")
    if cursor is None or cursor.connection is not pg or cursor.closed:
        if pg.prepare_threshold is None:
            pg.prepare_threshold = 2**31 - 1  # see _pg_cursor
        from django.db.backends.postgresql.base import ServerBindingCursor

        cursor = db._ledger_cursor = ServerBindingCursor(pg)
    with db.wrap_database_errors:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone() if one else cursor.fetchall()


@functools.lru_cache(maxsize=512)
def _lock_sql_pg(wallet_ids: int, platform_conditions: int) -> str:
    """The lock statement of `_lock` on PostgreSQL, written out once per shape (the number of
    wallet ids and of platform sides): the same SELECT ... JOIN asset ... ORDER BY id FOR UPDATE
    OF wallet that `wallets_for_update()` builds, without compiling a queryset on every posting
    (the ORM compiler was ~70% of a posting's CPU in bench/ledger_bench.py's profile), and only
    the columns a posting reads (no timestamps to parse). The ids are listed (`IN (%s, %s)`)
    rather than passed as one array: for `= ANY($1)` PostgreSQL never settles on a generic plan
    and re-plans the prepared statement on every execution."""
    qn = connection.ops.quote_name
    wt, at = qn(Wallet._meta.db_table), qn(Asset._meta.db_table)
    wid = f"{wt}.{qn(Wallet._meta.pk.column)}"
    cols = ", ".join(
        [f"{wt}.{qn(c)}" for c in ("id", "asset_id", "kind", "status", "purpose", "shard")]
        + [f"({wt}.{qn('customer_id')} IS NULL AND {wt}.{qn('organization_id')} IS NULL)"]
        + [f"{wt}.{qn(c)}" for c in ("balance", "held")]
        + [f"{at}.{qn(c)}" for c in ("code", "exponent")]
        + [f"{wt}.{qn('customer_id')}"]
    )
    platform = (
        f" OR ({wt}.customer_id IS NULL AND {wt}.organization_id IS NULL AND {wt}.purpose = %s AND {wt}.shard = %s"
        f" AND {wt}.asset_id = (SELECT c.asset_id FROM {wt} c WHERE c.id = %s))"
    )
    return (
        f"SELECT {cols} FROM {wt} INNER JOIN {at} ON ({wt}.asset_id = {at}.id)"
        f" WHERE ({wid} IN ({', '.join(['%s'] * wallet_ids)}){platform * platform_conditions})"
        f" ORDER BY {wid} ASC FOR UPDATE OF {wt}"
    )


def _lock_rows_pg(ids: set[int], platform_sides: list[_Side], n: int, db: Any) -> dict[int, _LockedWallet]:
    params: list[Any] = sorted(ids)
    for _, purpose, cid in platform_sides:
        params += [purpose, cid % n, cid]
    fetched = _pg_query(_lock_sql_pg(len(ids), len(platform_sides)), params, db)
    rows: dict[int, _LockedWallet] = {}
    assets: dict[int, _LockedAsset] = {}
    for values in fetched:
        asset = assets.get(values[1])
        if asset is None:
            asset = assets[values[1]] = _LockedAsset(values[9], values[10])
        rows[values[0]] = _LockedWallet(values, asset)
    return rows


def _lock(legs: list[_Leg], extra_wallet_ids: Iterable[int] = (), db: Any = None) -> tuple[dict[int, _Row], dict[_Side, _Row]]:
    """Lock every wallet of the posting in one statement, in id order. Returns the rows by id
    and the resolution of every leg side to a row."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    n = hot_account_shards()
    ids: set[int] = set(extra_wallet_ids)
    platform_sides: set[_Side] = set()
    for leg in legs:
        for side in (leg.source, leg.destination):
            if side[0] == "w":
                ids.add(side[1])
            else:
                platform_sides.add(side)
                ids.add(side[2])

    def query() -> dict[int, _Row]:
        if db.vendor == "postgresql":
            return _lock_rows_pg(ids, sorted(platform_sides), n, db)
        cond = Q(pk__in=ids)
        for _, purpose, cid in sorted(platform_sides):
            cond |= Q(
                customer__isnull=True,
                organization__isnull=True,
                purpose=purpose,
                shard=cid % n,
                asset_id=Subquery(Wallet.objects.filter(pk=cid).values("asset_id")[:1]),
            )
        return {w.pk: w for w in wallets_for_update().filter(cond)}

    rows = query()
    missing = sorted(ids - rows.keys())
    if missing:
        raise WalletNotFound(f"Wallet {missing[0]} not found.", details={"wallet_id": missing[0]})

    def resolve(rows: dict[int, _Row]) -> tuple[dict[_Side, _Row], set[tuple[int, str]]]:
        by_key = {(w.asset_id, w.purpose, w.shard): w for w in rows.values() if w.is_platform}
        resolved: dict[_Side, _Row] = {}
        absent: set[tuple[int, str]] = set()
        for side in platform_sides:
            _, purpose, cid = side
            key = (rows[cid].asset_id, purpose, cid % n)
            if key in by_key:
                resolved[side] = by_key[key]
            else:
                absent.add((rows[cid].asset_id, purpose))
        return resolved, absent

    resolved, absent = resolve(rows)
    if absent:
        for asset_id, purpose in sorted(absent):
            platform_wallets_ensure(asset=asset_id, purpose=purpose)
        rows = query()  # rows already locked are re-locked (a no-op); new shard rows join them
        resolved, absent = resolve(rows)
        assert not absent, absent
    for leg in legs:
        for side in (leg.source, leg.destination):
            if side[0] == "w":
                resolved[side] = rows[side[1]]
    return rows, resolved


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    balances: dict[int, Decimal]
    held: dict[int, Decimal]
    # (wallet_id, direction, amount, balance_after, operation_index) in application order
    entries: list[tuple[int, str, Decimal, Decimal, int]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    drawdown: dict[int, Decimal] = field(default_factory=dict)  # largest running outflow


def _parse_amounts(legs: list[_Leg], resolved: dict[_Side, _Row]) -> None:
    for leg in legs:
        exponent = resolved[leg.source].asset.exponent
        leg.amount = parse_amount(leg.raw_amount, exponent=exponent, field=f"operations[{leg.index}].amount")


def _simulate(
    legs: list[_Leg], rows: dict[int, _Row], resolved: dict[_Side, _Row], released: dict[int, Decimal]
) -> tuple[_Plan, LedgerPostingError | None]:
    """Apply the legs in memory, in order. Returns the plan and the first failure (if any)."""
    plan = _Plan(
        balances={wid: w.balance for wid, w in rows.items()},
        held={wid: w.held - released.get(wid, ZERO) for wid, w in rows.items()},
    )
    plan.touched.update(wid for wid, amount in released.items() if amount)
    net: dict[int, Decimal] = {}
    with localcontext(MONEY_CONTEXT):
        for leg in legs:
            src, dst = resolved[leg.source], resolved[leg.destination]
            i = leg.index
            for w in (src, dst):
                if w.status != Wallet.Status.ACTIVE:
                    return plan, WalletInactive(
                        f"Operation {i}: wallet {w.pk} is {w.status}.",
                        details={"operation_index": i, "wallet_id": w.pk, "wallet_status": w.status},
                    )
            if src.asset_id != dst.asset_id:
                return plan, CurrencyMismatch(
                    f"Operation {i}: wallet {src.pk} holds {src.asset.code} but wallet {dst.pk} holds {dst.asset.code}.",
                    details={"operation_index": i, "source_currency": src.asset.code, "destination_currency": dst.asset.code},
                )
            if leg.currency is not None and leg.currency != src.asset.code:
                return plan, CurrencyMismatch(
                    f"Operation {i}: the amount is in {leg.currency} but the wallets hold {src.asset.code}.",
                    details={"operation_index": i, "currency": leg.currency, "wallet_currency": src.asset.code},
                )
            amount = leg.amount
            plan.balances[src.pk] -= amount
            plan.balances[dst.pk] += amount
            for wid in (src.pk, dst.pk):  # NUMERIC(38, 18): a balance past 20 integer digits cannot be stored
                if plan.balances[wid] and abs(plan.balances[wid]).adjusted() >= MAX_INTEGER_DIGITS:
                    raise ValidationFailed(
                        f"operations[{i}].amount: wallet {wid}'s balance would exceed {MAX_INTEGER_DIGITS} integer digits.",
                        details={"fields": {f"operations[{i}].amount": [f"The resulting balance would exceed {MAX_INTEGER_DIGITS} integer digits."]},
                                 "operation_index": i, "wallet_id": wid},
                    )
            plan.entries.append((src.pk, Entry.Direction.DEBIT, amount, plan.balances[src.pk], i))
            plan.entries.append((dst.pk, Entry.Direction.CREDIT, amount, plan.balances[dst.pk], i))
            plan.touched.update((src.pk, dst.pk))
            net[src.pk] = net.get(src.pk, ZERO) - amount
            net[dst.pk] = net.get(dst.pk, ZERO) + amount
            if -net[src.pk] > plan.drawdown.get(src.pk, ZERO):
                plan.drawdown[src.pk] = -net[src.pk]
            if src.kind != Wallet.Kind.ISSUANCE and plan.balances[src.pk] - plan.held[src.pk] < 0:
                return plan, InsufficientFunds(
                    f"Operation {i}: wallet {src.pk} has insufficient available funds.",
                    details={"operation_index": i, "wallet_id": src.pk},
                )
    return plan, None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _operations_json(legs: list[_Leg], resolved: dict[_Side, _Row] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for leg in legs:
        amount = leg.amount if leg.amount else leg.raw_amount
        item: dict[str, Any] = {"amount": str(amount)}
        op = leg.op
        if isinstance(op, Issue):
            item.update(type="issue", wallet_id=leg.destination[1])
        elif isinstance(op, Redeem):
            item.update(type="redeem", wallet_id=leg.source[1])
        else:
            item["type"] = "transfer"
            if leg.source[0] == "p":
                item["source_platform"] = leg.source[1]
            if leg.destination[0] == "p":
                item["destination_platform"] = leg.destination[1]
        if resolved is not None:
            item["source_wallet_id"] = resolved[leg.source].pk
            item["destination_wallet_id"] = resolved[leg.destination].pk
        elif leg.source[0] == "w" and leg.destination[0] == "w":
            item["source_wallet_id"], item["destination_wallet_id"] = leg.source[1], leg.destination[1]
        if leg.currency is not None:
            item["currency"] = leg.currency
        out.append(item)
    return out


def operations_from_json(items: list[dict[str, Any]]) -> list[Operation]:
    """The requested operations stored on a transaction, back as operation objects."""
    ops: list[Operation] = []
    for item in items:
        amount, currency = Decimal(item["amount"]), item.get("currency")
        if item["type"] == "issue":
            ops.append(Issue(wallet=item["wallet_id"], amount=amount, currency=currency))
        elif item["type"] == "redeem":
            ops.append(Redeem(wallet=item["wallet_id"], amount=amount, currency=currency))
        else:
            src = PlatformAccount(item["source_platform"]) if "source_platform" in item else item["source_wallet_id"]
            dst = PlatformAccount(item["destination_platform"]) if "destination_platform" in item else item["destination_wallet_id"]
            ops.append(Transfer(source=src, destination=dst, amount=amount, currency=currency))
    return ops


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))


def _insert_transaction(tx: Transaction) -> bool:
    """INSERT in a savepoint; False if the owner's reference is taken (unique constraint)."""
    try:
        with db_transaction.atomic():
            tx.save(force_insert=True)
    except IntegrityError:
        if not tx.reference:
            raise
        return False
    return True


def _existing_by_reference(*, organization, customer, reference: str) -> Transaction:
    cond = Q()
    if organization is not None:
        cond |= Q(organization=organization)
    if customer is not None:
        cond |= Q(customer=customer)
    return Transaction.objects.filter(cond, reference=reference).order_by("id").first()  # type: ignore[return-value]


def _duplicate(*, organization, customer, reference: str) -> PostingResult:
    existing = _existing_by_reference(organization=organization, customer=customer, reference=reference)
    details: dict[str, Any] = {"reference": reference}
    if existing is not None:
        details.update(transaction_id=existing.pk, status=existing.status, type=existing.type)
    error = DuplicateReference(f"The reference {reference!r} was already used (transaction {details.get('transaction_id')}).", details=details)
    return PostingResult(transaction=existing, ok=False, error=error)


_TX_INSERT_SQL = (
    "WITH t AS ("
    " INSERT INTO ledger_transaction (type, status, organization_id, customer_id, reference, description,"
    " metadata, operations, failure_code, failure_message, failure_operation_index, created_at, completed_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, '', '', NULL, %s, %s)"
    " ON CONFLICT DO NOTHING RETURNING id)"
)


def _tx_params(tx: Transaction) -> list[Any]:
    return [
        tx.type, tx.status, tx.organization_id, tx.customer_id, tx.reference, tx.description,
        _dumps(tx.metadata), _dumps(tx.operations), tx.created_at, tx.completed_at,
    ]


def _usage_cte(charges: dict | None, now) -> tuple[str, list[Any]]:
    """The usage counters' upsert as a CTE of a write statement (runs only if `t` inserted)."""
    if not charges:
        return "", []
    usage_rows, usage_params = usage_rows_sql(charges, usage_day(now))
    sql = (
        ", c AS (INSERT INTO ledger_usagecounter (customer_id, asset_id, movement_type, direction, day, amount, count)"
        " SELECT v.* FROM t CROSS JOIN (VALUES "
        + usage_rows.replace("(%s, %s, %s, %s, %s, %s, %s)", "(%s::bigint, %s::bigint, %s::varchar, %s::varchar, %s::date, %s::numeric, %s::int)")
        + ") AS v(customer_id, asset_id, movement_type, direction, day, amount, count)"
        " ON CONFLICT (customer_id, asset_id, movement_type, direction, day) DO UPDATE"
        " SET amount = ledger_usagecounter.amount + excluded.amount, count = ledger_usagecounter.count + excluded.count)"
    )
    return sql, usage_params


def _write_pg(
    tx: Transaction, plan: _Plan, now, captured_hold_ids: list[int], db: Any = None, charges: dict | None = None
) -> tuple[int, list[int]] | None:
    """One statement: insert the transaction (unless its reference is taken), its entries,
    every touched balance and the customers' usage counters (`ledger.usage`). Returns the
    transaction id and the entry ids in plan order (ids are drawn in insertion order), or None
    on a reference conflict (then nothing is written)."""
    params: list[Any] = _tx_params(tx)
    params.append(now)  # entry created_at, placed before the VALUES list in the SQL
    entry_rows = []
    for ord_, (wid, direction, amount, after, op_index) in enumerate(plan.entries):
        entry_rows.append("(%s::bigint, %s::int, %s, %s::numeric, %s::numeric, %s::int)")
        params += [wid, ord_, direction, amount, after, op_index]
    params.append(now)  # wallet updated_at
    wallet_rows = []
    for wid in sorted(plan.touched):
        wallet_rows.append("(%s::bigint, %s::numeric, %s::numeric)")
        params += [wid, plan.balances[wid], plan.held[wid]]
    holds_sql = ""
    if captured_hold_ids:
        holds_sql = (
            ", h AS (UPDATE ledger_hold AS hd SET status = 'captured', updated_at = %s, transaction_id = t.id "
            "FROM t WHERE hd.id = ANY(%s) AND hd.status = 'held')"
        )
        params += [now, captured_hold_ids]
    usage_sql, usage_params = _usage_cte(charges, now)
    params += usage_params
    sql = (
        _TX_INSERT_SQL
        + ", e AS ("
        " INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
        " SELECT t.id, v.wallet_id, v.direction, v.amount, v.balance_after, v.operation_index, %s"
        f" FROM t CROSS JOIN (VALUES {', '.join(entry_rows)}) AS v(wallet_id, ord, direction, amount, balance_after, operation_index)"
        " ORDER BY v.ord RETURNING id"
        "), u AS ("
        " UPDATE ledger_wallet AS w SET balance = v.balance, held = v.held, updated_at = %s"
        f" FROM t, (VALUES {', '.join(wallet_rows)}) AS v(id, balance, held)"
        " WHERE w.id = v.id"
        f"){holds_sql}{usage_sql} SELECT t.id, (SELECT array_agg(e.id ORDER BY e.id) FROM e) FROM t"
    )
    row = _pg_query(sql, params, db, one=True)
    return (row[0], row[1]) if row else None


def _write_held_pg(tx: Transaction, holds: list[tuple[int, Decimal, Decimal]], why: str, now, db: Any, charges: dict | None) -> int | None:
    """One statement for a transaction left in review or pending: insert it (unless its
    reference is taken), hold `(wallet_id, amount, held after)` on each wallet and charge the
    customers' usage. Returns the transaction id, or None on a reference conflict."""
    params: list[Any] = _tx_params(tx)
    holds_sql = ""
    if holds:
        params.append(now)
        params += [v for wid, _, after in holds for v in (wid, after)]
        params += [why, now, now]
        params += [v for wid, amount, _ in holds for v in (wid, amount)]
        holds_sql = (
            ", u AS (UPDATE ledger_wallet AS w SET held = v.held, updated_at = %s"
            f" FROM t, (VALUES {', '.join(['(%s::bigint, %s::numeric)'] * len(holds))}) AS v(id, held) WHERE w.id = v.id)"
            ", h AS (INSERT INTO ledger_hold (wallet_id, transaction_id, amount, status, reason, created_at, updated_at)"
            " SELECT v.wallet_id, t.id, v.amount, 'held', 'transaction ' || t.id || ' ' || %s::text, %s, %s"
            f" FROM t CROSS JOIN (VALUES {', '.join(['(%s::bigint, %s::numeric)'] * len(holds))}) AS v(wallet_id, amount))"
        )
    usage_sql, usage_params = _usage_cte(charges, now)
    params += usage_params
    row = _pg_query(_TX_INSERT_SQL + holds_sql + usage_sql + " SELECT t.id FROM t", params, db, one=True)
    return row[0] if row else None


def _write_orm(tx: Transaction, plan: _Plan, now, captured: list[Hold], *, existing: bool) -> list[int | None] | None:
    """The same rows with ORM statements (SQLite). Returns the entry ids (None where the
    database does not return them), or None if the owner's reference is taken."""
    if existing:
        tx.save()
    elif not _insert_transaction(tx):
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


def _record_failure(tx: Transaction, error: LedgerPostingError, *, existing: bool) -> bool:
    tx.failure_code = error.code
    tx.failure_message = error.message[:500]
    tx.failure_operation_index = error.details.get("operation_index")
    tx.fail()
    if existing:
        tx.save()
        return True
    return _insert_transaction(tx)


# --------------------------------------------------------------------------------------------
# Posting
# --------------------------------------------------------------------------------------------


class _in_transaction:
    """Run in the caller's transaction if there is one (no savepoint: nothing is written
    before validation passes), else in a transaction of our own."""

    def __enter__(self):
        self._atomic = None if connection.in_atomic_block else db_transaction.atomic()
        if self._atomic is not None:
            self._atomic.__enter__()

    def __exit__(self, *exc):
        if self._atomic is not None:
            return self._atomic.__exit__(*exc)
        return False


def ledger_post(
    *,
    type: str,  # noqa: A002 - the transaction type, as in the API
    operations: Sequence[Operation],
    organization=None,
    customer=None,
    reference: str = "",
    description: str = "",
    metadata: dict | None = None,
    status_on_success: str = Transaction.Status.COMPLETED,
    hold_for_review: bool = False,
) -> PostingResult:
    """Post `operations` all or none. See the module docstring for the steps and failures."""
    if type not in _TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {type!r}")
    if status_on_success not in (Transaction.Status.COMPLETED, Transaction.Status.PENDING):
        raise ValueError("status_on_success must be 'completed' or 'pending'")
    legs = _legs(operations)
    with _in_transaction():
        return _post(
            legs,
            tx=Transaction(
                type=type,
                organization=organization,
                customer=customer,
                reference=reference or "",
                description=description or "",
                metadata=json.loads(_dumps(metadata)) if metadata else {},  # Decimals etc. as strings
            ),
            complete=status_on_success == Transaction.Status.COMPLETED,
            hold_for_review=hold_for_review,
        )


def _post(
    legs: list[_Leg],
    *,
    tx: Transaction,
    complete: bool = True,
    hold_for_review: bool = False,
    hold_pending: bool = False,
    captured: Sequence[Hold] = (),
    existing: bool = False,
) -> PostingResult:
    """Lock, validate, simulate, write. `tx` is a new pending transaction, or (existing=True)
    a locked transaction in review whose operations these legs are."""
    db = connections[DEFAULT_DB_ALIAS]  # resolved once: each `connection.x` is a lookup through a thread-local proxy
    rows, resolved = _lock(legs, extra_wallet_ids=[h.wallet_id for h in captured], db=db)
    for leg in legs:
        if resolved[leg.source].pk == resolved[leg.destination].pk:
            raise ValidationFailed(f"operations[{leg.index}]: source and destination are the same wallet.")
    if captured:  # the holds' wallets are locked now: re-read the holds under that lock
        fresh = {h.pk: h for h in holds_for_update().filter(pk__in=[h.pk for h in captured])}
        captured = [fresh[h.pk] for h in captured]
        for hold in captured:
            if hold.status != Hold.Status.HELD:
                raise InvalidState(f"Hold {hold.pk} is {hold.status}, not held.", details={"hold_id": hold.pk, "status": hold.status})
    _parse_amounts(legs, resolved)
    released: dict[int, Decimal] = {}
    for hold in captured:
        released[hold.wallet_id] = released.get(hold.wallet_id, ZERO) + hold.amount
    plan, error = _simulate(legs, rows, resolved, released)
    now = timezone.now()
    if not existing:
        tx.operations = _operations_json(legs, resolved)
        tx.created_at = now

    if error is not None:
        if not _record_failure(tx, error, existing=existing):
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference)
        error.details["transaction_id"] = tx.pk
        return PostingResult(transaction=tx, ok=False, error=error)

    charges = {} if existing else _charges(tx, legs, resolved)  # an existing transaction was charged when held
    if hold_for_review:
        tx.hold_for_review()
        return _place_review_holds(tx, plan, rows, now, charges=charges)
    if hold_pending:  # a payout in flight: stays pending, funds held (ledger_hold_pending)
        return _place_review_holds(tx, plan, rows, now, why="payout in flight", charges=charges)

    if complete:
        tx.complete()
        tx.completed_at = now
    if db.vendor == "postgresql" and not existing:
        written = _write_pg(tx, plan, now, [h.pk for h in captured], db, charges)
        if written is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference)
        tx.pk, entry_ids = written
        tx._state.adding = False
        tx._state.db = "default"
        for hold in captured:
            hold.capture()
            hold.transaction = tx
    else:
        entry_ids = _write_orm(tx, plan, now, list(captured), existing=existing)
        if entry_ids is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference)
        usage_apply(charges, day=usage_day(now))
    _attach_entries(tx, plan, now, entry_ids)
    return PostingResult(transaction=tx, ok=True)


def _attach_entries(tx: Transaction, plan: _Plan, now, entry_ids: list[int | None]) -> None:
    """Give the posted transaction its entries as written (`tx.posted_entries`, with their
    ids), so a caller can answer from what the posting already knows without reading them back."""
    tx.posted_entries = [
        Entry(pk=pk, transaction_id=tx.pk, wallet_id=wid, direction=d, amount=a, balance_after=after, operation_index=i, created_at=now)
        for pk, (wid, d, a, after, i) in zip(entry_ids, plan.entries, strict=True)
    ]


_OPERATION_NAMES = {Issue: "issue", Redeem: "redeem", Transfer: "transfer"}


def _charges(tx: Transaction, legs: list[_Leg], resolved: dict[_Side, _Row]) -> dict:
    """What this posting counts toward its customers' usage (`ledger.usage`)."""
    usage_legs, owners = [], {}
    for leg in legs:
        src, dst = resolved[leg.source], resolved[leg.destination]
        usage_legs.append(UsageLeg(_OPERATION_NAMES[type(leg.op)], src.pk, dst.pk, src.asset_id, leg.amount))
        for w in (src, dst):
            owners[w.pk] = WalletOwner(w.customer_id, w.is_platform and w.purpose == Wallet.Purpose.FEE)
    return usage_charges(tx_type=tx.type, legs=usage_legs, owners=owners)


def _place_review_holds(tx: Transaction, plan: _Plan, rows: dict[int, _Row], now, why: str = "in review", charges: dict | None = None) -> PostingResult:
    """Leave `tx` (in review, or pending) with holds for each wallet's largest running outflow
    (not on issuance accounts) and its usage charged: one statement on PostgreSQL."""
    holds = [
        (wid, plan.drawdown[wid], rows[wid].held + plan.drawdown[wid])
        for wid in sorted(plan.drawdown)
        if plan.drawdown[wid] > 0 and rows[wid].kind != Wallet.Kind.ISSUANCE
    ]
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        tx_id = _write_held_pg(tx, holds, why, now, db, charges)
        if tx_id is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference)
        tx.pk = tx_id
        tx._state.adding = False
        tx._state.db = "default"
    else:
        if not _insert_transaction(tx):
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference)
        usage_apply(charges or {}, day=usage_day(now))
        for wid, _, after in holds:
            Wallet.objects.filter(pk=wid).update(held=after, updated_at=now)
        Hold.objects.bulk_create([Hold(wallet_id=wid, transaction=tx, amount=amount, reason=f"transaction {tx.pk} {why}") for wid, amount, _ in holds])
    tx.posted_entries = []  # nothing posted yet: nothing to read back for the answer
    return PostingResult(transaction=tx, ok=True)


# --------------------------------------------------------------------------------------------
# Review, reversal
# --------------------------------------------------------------------------------------------


def _lock_transaction(transaction: Transaction | int) -> Transaction:
    pk = transaction.pk if isinstance(transaction, Transaction) else transaction
    return transactions_for_update().get(pk=pk)


def _capture_and_post(tx: Transaction) -> PostingResult:
    """Post a held transaction's stored operations, capturing its holds; if the posting is refused
    now, release them (the posting has locked the wallets either way)."""
    holds = list(Hold.objects.filter(transaction=tx, status=Hold.Status.HELD))
    result = _post(_legs(operations_from_json(tx.operations)), tx=tx, captured=holds, existing=True)
    if not result.ok:
        for hold in holds:
            _release(hold)
        usage_release(tx)
    return result


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
    with _in_transaction():
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
) -> PostingResult:
    """Validate `operations` like a posting, then leave the transaction `pending` with its
    operations stored and holds for each wallet's largest running outflow (a payout in flight:
    wallets.services withdrawals). `ledger_complete_pending` posts it (holds captured),
    `ledger_fail_pending` releases the holds and marks it failed. Refusals are recorded and
    returned as by `ledger_post`."""
    if type not in _TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {type!r}")
    legs = _legs(operations)
    with _in_transaction():
        return _post(
            legs,
            tx=Transaction(
                type=type, organization=organization, customer=customer, reference=reference or "",
                description=description or "", metadata=json.loads(_dumps(metadata or {})),
            ),
            hold_pending=True,
        )


def ledger_complete_pending(transaction: Transaction | int) -> PostingResult:
    """Post a transaction left pending by `ledger_hold_pending`, capturing its holds. If the
    posting is refused now, the transaction becomes `failed` and its holds are released (as
    `ledger_complete_reviewed`); a caller that wants to keep it pending runs this in a savepoint
    and rolls that back on `not result.ok`."""
    with _in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.PENDING or tx.entries.exists():
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not pending.", details={"status": tx.status})
        return _capture_and_post(tx)


def ledger_fail_pending(transaction: Transaction | int, *, code: str, reason: str = "") -> Transaction:
    """A pending transaction that will not post (its payout failed): release its holds and mark
    it `failed` with `code` and `reason`; no entries are written."""
    with _in_transaction():
        tx = _lock_transaction(transaction)
        if tx.status != Transaction.Status.PENDING or tx.entries.exists():
            raise InvalidState(f"Transaction {tx.pk} is {tx.status}, not pending.", details={"status": tx.status})
        _release_holds(tx)
        usage_release(tx)
        tx.fail()
        tx.failure_code = code[:64]
        tx.failure_message = (reason or "Failed.")[:500]
        tx.completed_at = timezone.now()
        tx.save(update_fields=["status", "failure_code", "failure_message", "completed_at"])
        return tx


def ledger_reject_reviewed(transaction: Transaction | int, *, reason: str = "") -> Transaction:
    """Reject a transaction in review: release its holds; no entries are written."""
    with _in_transaction():
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


def _inverse(op: Operation) -> Operation:
    if isinstance(op, Issue):
        return Redeem(wallet=op.wallet, amount=op.amount, currency=op.currency)
    if isinstance(op, Redeem):
        return Issue(wallet=op.wallet, amount=op.amount, currency=op.currency)
    return Transfer(source=op.destination, destination=op.source, amount=op.amount, currency=op.currency)


def ledger_reverse(transaction: Transaction | int, *, reference: str = "", description: str = "") -> PostingResult:
    """Post the inverse of a completed transaction (legs swapped, in reverse order) as a
    `reversal` and mark the original `reversed`. Platform legs land on the same shard as the
    original (the shard follows the counterparty wallet). If the inverse is refused (the money
    was spent), a failed reversal is recorded and the original stays completed."""
    with _in_transaction():
        original = _lock_transaction(transaction)
        if original.status != Transaction.Status.COMPLETED:
            raise InvalidState(f"Transaction {original.pk} is {original.status}, not completed.", details={"status": original.status})
        ops = [_inverse(op) for op in reversed(operations_from_json(original.operations))]
        result = _post(
            _legs(ops),
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


# --------------------------------------------------------------------------------------------
# Holds
# --------------------------------------------------------------------------------------------


def hold_place(*, wallet: Wallet | int, amount: Decimal | str | int, reason: str, transaction: Transaction | None = None) -> Hold:
    """Reserve `amount` on `wallet` (raises WALLET_INACTIVE / INSUFFICIENT_FUNDS; nothing is
    recorded for a refused hold)."""
    wid = _wallet_id(wallet, "wallet_id")
    with _in_transaction():
        try:
            locked = wallets_for_update().get(pk=wid)
        except Wallet.DoesNotExist:
            raise WalletNotFound(f"Wallet {wid} not found.", details={"wallet_id": wid}) from None
        value = parse_amount(amount, exponent=locked.asset.exponent)
        if locked.status != Wallet.Status.ACTIVE:
            raise WalletInactive(f"Wallet {wid} is {locked.status}.", details={"wallet_id": wid, "wallet_status": locked.status})
        if locked.kind != Wallet.Kind.ISSUANCE and locked.balance - locked.held < value:
            raise InsufficientFunds(f"Wallet {wid} has insufficient available funds for this hold.", details={"wallet_id": wid})
        Wallet.objects.filter(pk=wid).update(held=locked.held + value, updated_at=timezone.now())
        return Hold.objects.create(wallet_id=wid, amount=value, reason=reason, transaction=transaction)


def _release(hold: Hold) -> None:
    """Release a hold whose wallet is already locked by the caller."""
    hold.release()
    hold.save(update_fields=["status", "updated_at"])
    Wallet.objects.filter(pk=hold.wallet_id).update(held=F("held") - hold.amount, updated_at=timezone.now())


def hold_release(*, hold: Hold | int) -> Hold:
    """Give the held amount back to the available balance."""
    hold_id = hold.pk if isinstance(hold, Hold) else hold
    with _in_transaction():
        wallet_id = Hold.objects.values_list("wallet_id", flat=True).get(pk=hold_id)
        wallets_for_update().get(pk=wallet_id)  # lock order: wallet, then hold
        locked = holds_for_update().get(pk=hold_id)
        try:
            _release(locked)
        except TransitionNotAllowed:
            raise InvalidState(f"Hold {hold_id} is {locked.status}, not held.", details={"hold_id": hold_id, "status": locked.status}) from None
        return locked


def hold_capture(
    *,
    hold: Hold | int,
    operations: Sequence[Operation],
    type: str,  # noqa: A002
    organization=None,
    customer=None,
    reference: str = "",
    description: str = "",
    metadata: dict | None = None,
) -> PostingResult:
    """Release the hold and post `operations` in one posting (same DB transaction). If the
    posting is refused, the hold stays held and the failed attempt is recorded."""
    hold_id = hold.pk if isinstance(hold, Hold) else hold
    if type not in _TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {type!r}")
    legs = _legs(operations)
    with _in_transaction():
        current = Hold.objects.get(pk=hold_id)
        return _post(
            legs,
            tx=Transaction(
                type=type, organization=organization, customer=customer,
                reference=reference, description=description, metadata=json.loads(_dumps(metadata or {})),
            ),
            captured=[current],
        )


# --------------------------------------------------------------------------------------------
# Assets and wallets
# --------------------------------------------------------------------------------------------


def asset_create(*, code: str, name: str, exponent: int, kind: str = Asset.Kind.CUSTOM, organization=None) -> Asset:
    code = (code or "").strip().upper()
    errors: dict[str, list[str]] = {}
    if not code or len(code) > 16 or not code.replace("_", "").replace("-", "").isalnum():
        errors["code"] = ["1-16 letters, digits, '-' or '_'."]
    if isinstance(exponent, bool) or not isinstance(exponent, int) or not 0 <= exponent <= 18:
        errors["exponent"] = ["An integer from 0 to 18."]
    if kind not in Asset.Kind.values:
        errors["kind"] = [f"One of {', '.join(Asset.Kind.values)}."]
    if errors:
        raise ValidationFailed("Invalid asset: " + ", ".join(errors), details={"fields": errors})
    clash = Asset.objects.filter(code=code).filter(Q(organization__isnull=True) | Q(organization=organization))
    if clash.exists():
        raise ValidationFailed(f"code: an asset {code} already exists.", details={"fields": {"code": ["An asset with this code already exists."]}})
    with _in_transaction():
        try:
            with db_transaction.atomic():
                asset = Asset.objects.create(code=code, name=name, exponent=exponent, kind=kind, organization=organization)
        except IntegrityError:
            raise ValidationFailed(f"code: an asset {code} already exists.", details={"fields": {"code": ["An asset with this code already exists."]}}) from None
        platform_wallets_ensure(asset=asset, purpose=Wallet.Purpose.ISSUANCE)
        return asset


def wallet_open(*, asset: Asset, customer=None, organization=None, kind: str | None = None, label: str = "", purpose: str = "") -> Wallet:
    """Open a customer wallet (customer=...) or an organization's system wallet
    (organization=..., kind="system"). One open unlabelled wallet per owner and asset."""
    if (customer is None) == (organization is None):
        raise ValueError("a wallet belongs to exactly one of customer or organization")
    kind = kind or (Wallet.Kind.CUSTOMER if customer is not None else Wallet.Kind.SYSTEM)
    if (customer is not None and kind != Wallet.Kind.CUSTOMER) or (organization is not None and kind != Wallet.Kind.SYSTEM):
        raise ValueError(f"kind {kind!r} does not match the owner")
    owner_org_id = organization.pk if organization is not None else customer.organization_id
    if asset.organization_id is not None and asset.organization_id != owner_org_id:
        raise ValidationFailed("currency: unknown asset.", details={"fields": {"currency": ["Unknown asset."]}})
    wallet = Wallet(asset=asset, kind=kind, customer=customer, organization=organization, label=label or "", purpose=purpose or "")
    with _in_transaction():
        try:
            with db_transaction.atomic():
                wallet.save(force_insert=True)
        except IntegrityError:
            open_wallets = Wallet.objects.filter(asset=asset, label="").exclude(status=Wallet.Status.CLOSED)
            existing = (open_wallets.filter(customer=customer) if customer is not None else open_wallets.filter(organization=organization, purpose=purpose or "")).first()
            raise WalletAlreadyExists(details={"wallet_id": existing.pk if existing else None}) from None
        return wallet


def _audit(*, actor, action: str, target, data: dict | None = None) -> None:
    from compliance.services import audit_record

    audit_record(actor=actor, action=action, target=target, data=data)


def _transition_wallet(wallet: Wallet | int, name: str, *, actor, reason: str = "") -> Wallet:
    wid = _wallet_id(wallet, "wallet_id")
    with _in_transaction():
        try:
            locked = wallets_for_update().get(pk=wid)
        except Wallet.DoesNotExist:
            raise WalletNotFound(f"Wallet {wid} not found.") from None
        before = locked.status
        if name == "close" and locked.status != Wallet.Status.CLOSED and (locked.balance != 0 or locked.held != 0):
            raise WalletNotEmpty(
                f"Wallet {wid} still holds {locked.asset.format(locked.balance)} {locked.asset.code}"
                + (f" with {locked.asset.format(locked.held)} on hold." if locked.held else "."),
                details={"wallet_id": wid, "balance": locked.asset.format(locked.balance), "held": locked.asset.format(locked.held)},
            )
        try:
            getattr(locked, name)()
        except TransitionNotAllowed:
            raise InvalidState(f"A {before} wallet cannot be {'closed' if name == 'close' else name + 'd'}.", details={"wallet_id": wid, "status": before}) from None
        locked.save(update_fields=["status", "updated_at"])
        _audit(actor=actor, action=f"wallet.{name}", target=locked, data={"from": before, "to": locked.status, "reason": reason})
        return locked


def wallet_suspend(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "suspend", actor=actor, reason=reason)


def wallet_activate(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "activate", actor=actor, reason=reason)


def wallet_close(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "close", actor=actor, reason=reason)
