"""The PostgreSQL writer of the posting engine: two prepared statements per posting.

Invariants:
* Statements run through `core.db.query` (bound server-side, prepared once per connection;
  through a Django cursor when something watches them, so statement budgets count them). The
  ledger's own use of Django internals (a saved instance's `_state`) is here and nowhere else;
  `tests/ledger/test_writers.py` pins the Django minor version both were written against.
* A posting is two statements: `lock_rows` (SELECT ... ORDER BY id FOR UPDATE OF wallet, shard
  rows resolved in the same statement) and `write_posted` / `write_held` / `write_failed` (one
  data-modifying CTE: the transaction with `ON CONFLICT DO NOTHING` on its reference, its
  postings, entries, balances, holds and usage counters, each only if the transaction row was
  inserted). A reference conflict writes nothing and returns None.
* Runs only inside the caller's atomic block (the engine's), never commits, never opens a
  savepoint. Errors are Django's (`wrap_database_errors`), as from any Django cursor.
* `ledger.posting.orm` writes the same rows on other databases (SQLite).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection

from core.db import query

from ledger.models import Asset, Posting, Transaction, Wallet
from ledger.posting.operations import Plan, Side, json_dumps
from ledger.usage import USAGE_ROW, usage_day, usage_rows_sql


class LockedAsset:
    """The asset of a locked row: what a posting reads of it."""

    __slots__ = ("code", "exponent")

    def __init__(self, code: str, exponent: int) -> None:
        self.code, self.exponent = code, exponent


class LockedWallet:
    """A wallet row locked by the posting on PostgreSQL, with the attributes of `Wallet` that
    the posting reads (the SQLite path uses Wallet instances, which have the same ones). A model
    instance per locked row (and django-fsm's per-instance state tracking) was ~20% of a
    posting's Python CPU; the rows never leave the posting."""

    __slots__ = ("pk", "asset_id", "kind", "status", "purpose", "shard", "is_platform", "balance", "held", "asset", "customer_id", "livemode")

    def __init__(self, values: tuple, asset: LockedAsset) -> None:
        (self.pk, self.asset_id, self.kind, self.status, self.purpose, self.shard, self.is_platform,
         self.balance, self.held) = values[:9]
        self.customer_id = values[11]
        self.livemode = values[12]
        self.asset = asset


@functools.lru_cache(maxsize=512)
def lock_sql(wallet_ids: int, platform_conditions: int) -> str:
    """The lock statement of the engine's `lock` on PostgreSQL, written out once per shape (the number of
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
        + [f"{wt}.{qn('customer_id')}", f"{wt}.{qn('livemode')}"]
    )
    # a platform side is the shard of its counterparty's asset and mode (core.livemode)
    platform = (
        f" OR ({wt}.customer_id IS NULL AND {wt}.organization_id IS NULL AND {wt}.purpose = %s AND {wt}.shard = %s"
        f" AND ({wt}.asset_id, {wt}.livemode) = (SELECT c.asset_id, c.livemode FROM {wt} c WHERE c.id = %s))"
    )
    return (
        f"SELECT {cols} FROM {wt} INNER JOIN {at} ON ({wt}.asset_id = {at}.id)"
        f" WHERE ({wid} IN ({', '.join(['%s'] * wallet_ids)}){platform * platform_conditions})"
        f" ORDER BY {wid} ASC FOR UPDATE OF {wt}"
    )


def lock_rows(ids: set[int], platform_sides: list[Side], n: int) -> dict[int, LockedWallet]:
    params: list[Any] = sorted(ids)
    for _, purpose, cid in platform_sides:
        params += [purpose, cid % n, cid]
    fetched = query(lock_sql(len(ids), len(platform_sides)), params)
    rows: dict[int, LockedWallet] = {}
    assets: dict[int, LockedAsset] = {}
    for values in fetched:
        asset = assets.get(values[1])
        if asset is None:
            asset = assets[values[1]] = LockedAsset(values[9], values[10])
        rows[values[0]] = LockedWallet(values, asset)
    return rows



_TX_INSERT_SQL = (
    "WITH t AS ("
    " INSERT INTO ledger_transaction (type, status, organization_id, customer_id, reference, description,"
    " metadata, failure_code, failure_message, failure_operation_index, created_at, completed_at, reversal_of_id, livemode)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s::int, %s, %s, %s::bigint, %s::boolean)"
    " ON CONFLICT DO NOTHING RETURNING id)"
)
_POSTING_ROW = "(%s::int, %s::varchar, %s::bigint, %s::varchar, %s::bigint, %s::varchar, %s::numeric, %s::bigint, %s::numeric)"


def _tx_params(tx: Transaction, postings: list[Posting]) -> list[Any]:
    """The parameters of `_TX_INSERT_SQL` and of `_postings_cte`, which always follows it."""
    params = [
        tx.type, tx.status, tx.organization_id, tx.customer_id, tx.reference, tx.description, json_dumps(tx.metadata),
        tx.failure_code, tx.failure_message, tx.failure_operation_index, tx.created_at, tx.completed_at, tx.reversal_of_id, tx.livemode,
    ]
    for p in postings:
        params += [
            p.index, p.kind, p.source_wallet_id, p.source_purpose, p.destination_wallet_id, p.destination_purpose, p.amount, p.asset_id,
            p.reference_rate,
        ]
    return params


def _postings_cte(postings: list[Posting]) -> str:
    """The transaction's posting rows, inserted with it (only if `t` inserted)."""
    return (
        ', p AS (INSERT INTO ledger_posting (transaction_id, "index", kind, source_wallet_id, source_purpose,'
        " destination_wallet_id, destination_purpose, amount, asset_id, reference_rate) SELECT t.id, v.* FROM t CROSS JOIN"
        f" (VALUES {', '.join([_POSTING_ROW] * len(postings))}) AS v(i, kind, sw, sp, dw, dp, amount, asset_id, reference_rate))"
    )


def _usage_cte(charges: dict | None, now) -> tuple[str, list[Any]]:
    """The usage counters' upsert as a CTE of a write statement (runs only if `t` inserted)."""
    if not charges:
        return "", []
    usage_rows, usage_params = usage_rows_sql(charges, usage_day(now))
    sql = (
        ", c AS (INSERT INTO ledger_usagecounter (customer_id, asset_id, movement_type, direction, day, amount, reference_amount, count)"
        " SELECT v.* FROM t CROSS JOIN (VALUES "
        + usage_rows.replace(
            USAGE_ROW, "(%s::bigint, %s::bigint, %s::varchar, %s::varchar, %s::date, %s::numeric, %s::numeric, %s::int)"
        )
        + ") AS v(customer_id, asset_id, movement_type, direction, day, amount, reference_amount, count)"
        " ON CONFLICT (customer_id, asset_id, movement_type, direction, day) DO UPDATE"
        " SET amount = ledger_usagecounter.amount + excluded.amount,"
        " reference_amount = ledger_usagecounter.reference_amount + excluded.reference_amount,"
        " count = ledger_usagecounter.count + excluded.count)"
    )
    return sql, usage_params


def write_posted(
    tx: Transaction, postings: list[Posting], plan: Plan, now, captured_hold_ids: list[int], charges: dict | None = None
) -> tuple[int, list[int]] | None:
    """One statement: insert the transaction (unless its reference is taken), its postings, its
    entries, every touched balance and the customers' usage counters (`ledger.usage`). Returns
    the transaction id and the entry ids in plan order (ids are drawn in insertion order), or
    None on a reference conflict (then nothing is written)."""
    params: list[Any] = _tx_params(tx, postings)
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
        + _postings_cte(postings)
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
    row = query(sql, params, one=True)
    return (row[0], row[1]) if row else None


def write_held(
    tx: Transaction, postings: list[Posting], holds: list[tuple[int, Decimal, Decimal]], why: str, now, charges: dict | None
) -> int | None:
    """One statement for a transaction left in review or pending: insert it (unless its
    reference is taken) with its postings, hold `(wallet_id, amount, held after)` on each
    wallet and charge the customers' usage. Returns the transaction id, or None on a reference
    conflict."""
    params: list[Any] = _tx_params(tx, postings)
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
    row = query(_TX_INSERT_SQL + _postings_cte(postings) + holds_sql + usage_sql + " SELECT t.id FROM t", params, one=True)
    return row[0] if row else None


def write_failed(tx: Transaction, postings: list[Posting]) -> int | None:
    """One statement for a refused attempt: the failed transaction with the postings it tried.
    Returns its id, or None when the owner's reference is taken (nothing written)."""
    row = query(_TX_INSERT_SQL + _postings_cte(postings) + " SELECT t.id FROM t", _tx_params(tx, postings), one=True)
    return row[0] if row else None


def mark_saved(tx: Transaction, pk: int) -> None:
    """`tx` was inserted by one of the statements above: make the instance a saved row."""
    tx.pk = pk
    tx._state.adding = False
    tx._state.db = DEFAULT_DB_ALIAS
