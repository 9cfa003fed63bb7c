"""Small database helpers the hot paths share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models


def insert_or_skip(instance: models.Model, *, conflict: Sequence[str], where: str = "") -> bool:
    """INSERT `instance` unless a row with the same `conflict` columns exists (a unique
    constraint; `where` names a partial one's predicate, e.g. "NOT (key = '')"). One statement
    and no savepoint, on PostgreSQL and SQLite: the caller's transaction is never broken by the
    conflict. Sets the primary key and returns True when inserted; False when skipped (a
    concurrent insert of the same key waits for that transaction, then skips if it committed)."""
    row = Insert(instance, conflict, where)
    insert_all([row])
    return not instance._state.adding


@dataclass
class Insert:
    """One row for `insert_all`: unique on `conflict` (skipped if taken), `on_saved(instance)`
    called once it is inserted."""

    instance: models.Model
    conflict: Sequence[str] = ()
    where: str = ""
    on_saved: Callable[[models.Model], None] | None = None


def _insert_sql(row: Insert) -> tuple[str, list[Any]]:
    meta = row.instance._meta
    qn = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not (f.primary_key and getattr(row.instance, f.attname) is None)]
    values = [f.get_db_prep_save(f.pre_save(row.instance, add=True), connection) for f in fields]
    sql = f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES ({', '.join(['%s'] * len(fields))})"
    if row.conflict:
        sql += f" ON CONFLICT ({', '.join(qn(meta.get_field(name).column) for name in row.conflict)}){f' WHERE {row.where}' if row.where else ''} DO NOTHING"
    return sql + f" RETURNING {qn(meta.pk.column)}", values


def _saved(row: Insert, pk: Any) -> None:
    if pk is None:
        return
    row.instance.pk = pk
    row.instance._state.adding = False
    row.instance._state.db = connection.alias
    if row.on_saved is not None:
        row.on_saved(row.instance)


def insert_all(rows: Sequence[Insert]) -> None:
    """Insert rows of any tables in ONE statement on PostgreSQL (data-modifying CTEs; the money
    path writes its side rows, such as a payout, its outbox message and its audit event, in one
    round trip), one INSERT each elsewhere. Rows must not depend on each other's ids."""
    if connection.vendor != "postgresql" or len(rows) == 1:
        for row in rows:
            sql, values = _insert_sql(row)
            with connection.cursor() as cursor:
                cursor.execute(sql, values)
                found = cursor.fetchone()
            _saved(row, found[0] if found else None)
        return
    parts, params = [], []
    for i, row in enumerate(rows):
        sql, values = _insert_sql(row)
        parts.append(f"r{i} AS ({sql})")
        params += values
    selects = ", ".join(f"(SELECT * FROM r{i})" for i in range(len(rows)))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {selects}", params)
        ids = cursor.fetchone()
    for row, pk in zip(rows, ids, strict=True):
        _saved(row, pk)
