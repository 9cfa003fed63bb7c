"""Small database helpers the hot paths share."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def insert_or_skip(instance: models.Model, *, conflict: Sequence[str], where: str = "") -> bool:
    """INSERT `instance` unless a row with the same `conflict` columns exists (a unique
    constraint; `where` names a partial one's predicate, e.g. "NOT (key = '')"). One statement
    and no savepoint, on PostgreSQL and SQLite: the caller's transaction is never broken by the
    conflict. Sets the primary key and returns True when inserted; False when skipped (a
    concurrent insert of the same key waits for that transaction, then skips if it committed)."""
    meta = instance._meta
    qn = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not (f.primary_key and getattr(instance, f.attname) is None)]
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in fields]
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES ({', '.join(['%s'] * len(fields))})"
        f" ON CONFLICT ({', '.join(qn(meta.get_field(name).column) for name in conflict)}){f' WHERE {where}' if where else ''}"
        f" DO NOTHING RETURNING {qn(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True
