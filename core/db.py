"""Small database helpers the hot paths share.

- `query` runs a written-out statement of a money request. On PostgreSQL it is bound server-side
  and prepared once per connection (parsed and planned once, no client-side quoting of values),
  unless something watches Django's cursors (query capture, execute wrappers: then a Django
  cursor runs it, so statement budgets count it) or LEDGER_PREPARED_STATEMENTS is off (a
  transaction-mode pooler without prepared statements). Errors surface as django.db errors.
- `insert_all` writes rows of several tables in one statement; `insert_or_skip` one row unless a
  unique key is taken. Both without savepoints.
- `insert_later` hands rows nobody reads back in this transaction (an audit event) to the
  enclosing `gathered_inserts()` block, which writes them with its own last insert (the
  idempotency record: one statement for both) or at its end; outside such a block they are
  inserted at once. A block left by an exception drops them with the transaction.
- `model_columns` / `model_from_row` read model instances from such statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from psycopg import pq

_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1  # psycopg's threshold: prepare only `execute(..., prepare=True)`


def query(sql: str, params: Sequence[Any] = (), *, one: bool = False) -> Any:
    """Rows of one statement (`one`: the first row, or None); see the module docstring."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or db.queries_logged or db.execute_wrappers or not settings.LEDGER_PREPARED_STATEMENTS:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if one else cursor.fetchall()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    db.validate_no_broken_transaction()
    pg = db.connection
    cursor = db.__dict__.get("_prepared_cursor")
    if cursor is None or cursor.connection is not pg or cursor.closed:
        if pg.prepare_threshold is None:  # Django turns psycopg's preparation off
            pg.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
        from psycopg import RawCursor

        cursor = db._prepared_cursor = RawCursor(pg)  # $n placeholders: no %s parsing per call
    with db.wrap_database_errors:
        cursor.execute(native(sql), params, prepare=True)
        if cursor.pgresult.status != _TUPLES_OK:  # not `cursor.description`: it builds a Column per field each time
            return None
        return cursor.fetchone() if one else cursor.fetchall()


_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_NATIVE: dict[str, str] = {}


def native(sql: str) -> str:
    """`sql` with PostgreSQL's own placeholders ($1, $2, ...) for its %s (and % for %%),
    converted once per statement text: psycopg caches its own conversion only for statements
    under 4 KiB and 50 parameters, and the engine's were re-split by a regex on every call."""
    converted = _NATIVE.get(sql)
    if converted is None:
        if len(_NATIVE) > 4096:  # statements are a fixed set; a runaway caller must not grow this
            _NATIVE.clear()
        if "%(" in sql:
            raise ValueError("core.db.query takes positional %s parameters only")
        parts = sql.replace("%%", "\0").split("%s")
        converted = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
        converted = _NATIVE[sql] = converted.replace("\0", "%")
    return converted


def insert_or_skip(instance: models.Model, *, conflict: Sequence[str], where: str = "", with_rows: Sequence["Insert"] = ()) -> bool:
    """INSERT `instance` unless a row with the same `conflict` columns exists (a unique
    constraint; `where` names a partial one's predicate, e.g. "NOT (key = '')"). One statement
    and no savepoint, on PostgreSQL and SQLite: the caller's transaction is never broken by the
    conflict. Sets the primary key and returns True when inserted; False when skipped (a
    concurrent insert of the same key waits for that transaction, then skips if it committed)."""
    row = Insert(instance, conflict, where)
    insert_all([*with_rows, row])  # `with_rows`: other rows written by the same statement
    return not instance._state.adding


class _Gathered(list):
    def take(self) -> list["Insert"]:
        rows = list(self)
        self.clear()
        return rows


@contextmanager
def gathered_inserts() -> Iterator[_Gathered]:
    """Collect `insert_later` rows for the block (module docstring); use inside the transaction
    they belong to. `take()` hands them to the caller's own insert; what is left is written when
    the block ends normally. Nested blocks share the outermost one."""
    db = connections[DEFAULT_DB_ALIAS]
    outer = db.__dict__.get("_gathered_inserts")
    if outer is not None:
        yield outer
        return
    gathered = db._gathered_inserts = _Gathered()
    try:
        yield gathered
        if gathered:
            insert_all(gathered.take())
    finally:
        db._gathered_inserts = None


def insert_later(rows: Sequence["Insert"]) -> None:
    """Rows to write in this transaction that nothing reads back before it ends (no `on_saved`
    needed now): gathered by the enclosing `gathered_inserts()` block, or inserted at once."""
    gathered = connections[DEFAULT_DB_ALIAS].__dict__.get("_gathered_inserts")
    if gathered is None:
        insert_all(rows)
    else:
        gathered.extend(rows)


@dataclass
class Insert:
    """One row for `insert_all`: unique on `conflict` (skipped if taken), `on_saved(instance)`
    called once it is inserted."""

    instance: models.Model
    conflict: Sequence[str] = ()
    where: str = ""
    on_saved: Callable[[models.Model], None] | None = None


_INSERT_SQL: dict[tuple, tuple[str, tuple]] = {}


def _insert_sql(row: Insert) -> tuple[str, list[Any]]:
    """The INSERT of `row` (written once per model, column set and conflict clause) and its values."""
    db = connections[DEFAULT_DB_ALIAS]
    meta = row.instance._meta
    instance = row.instance
    with_pk = getattr(instance, meta.pk.attname) is not None
    shape = (db.vendor, meta.label, with_pk, tuple(row.conflict), row.where)
    cached = _INSERT_SQL.get(shape)
    if cached is None:
        qn = db.ops.quote_name
        fields = tuple(f for f in meta.concrete_fields if with_pk or not f.primary_key)
        sql = f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES ({', '.join(['%s'] * len(fields))})"
        if row.conflict:
            sql += f" ON CONFLICT ({', '.join(qn(meta.get_field(name).column) for name in row.conflict)}){f' WHERE {row.where}' if row.where else ''} DO NOTHING"
        cached = _INSERT_SQL[shape] = (sql + f" RETURNING {qn(meta.pk.column)}", fields)
    sql, fields = cached
    return sql, [f.get_db_prep_save(f.pre_save(instance, add=True), db) for f in fields]


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
            found = query(sql, values, one=True)
            _saved(row, found[0] if found else None)
        return
    parts, params = [], []
    for i, row in enumerate(rows):
        sql, values = _insert_sql(row)
        parts.append(f"r{i} AS ({sql})")
        params += values
    selects = ", ".join(f"(SELECT * FROM r{i})" for i in range(len(rows)))
    ids = query(f"WITH {', '.join(parts)} SELECT {selects}", params, one=True)
    for row, pk in zip(rows, ids, strict=True):
        _saved(row, pk)


def model_columns(model: type[models.Model], alias: str) -> str:
    """`alias.col, ...` for every concrete field of `model`, in `model_from_row`'s order."""
    qn = connection.ops.quote_name
    return ", ".join(f"{alias}.{qn(f.column)}" for f in model._meta.concrete_fields)


_READERS: dict[tuple, tuple] = {}


def _reader(model: type[models.Model], db) -> tuple:
    """(attnames, pk position, [(position, converters, expression)]) of `model` on `db`, built once."""
    key = (db.vendor, model)
    reader = _READERS.get(key)
    if reader is None:
        fields = model._meta.concrete_fields
        conversions = []
        for i, field in enumerate(fields):
            converters = field.get_db_converters(db) + db.ops.get_db_converters(field.cached_col)
            if converters:
                conversions.append((i, tuple(converters), field.cached_col))
        pk_at = [f.primary_key for f in fields].index(True)
        # Instances can be built without Model.__init__ (one setattr per field, signals) when
        # nothing hooks into it: no custom __init__ in the class's own code, no init signals.
        plain = _plain_init(model)
        if plain and _is_concurrent_fsm(model):
            plain = "fsm"
        reader = _READERS[key] = ([f.attname for f in fields], pk_at, tuple(conversions), plain)
    return reader


def _plain_init(model: type[models.Model]) -> bool:
    from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
    from django_fsm import ConcurrentTransitionMixin, FSMFieldDescriptor

    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return False
    if any(klass.__dict__.get("__init__") is not None for klass in model.__mro__ if klass not in (models.Model, ConcurrentTransitionMixin, object)):
        return False
    for field in model._meta.concrete_fields:  # a data descriptor (other than the FSM's) would transform on set
        descriptor = getattr(model, field.attname, None)
        if hasattr(type(descriptor), "__set__") and not isinstance(descriptor, (FSMFieldDescriptor, ForeignKeyDeferredAttribute)):
            return False
    return True


def model_from_row(model: type[models.Model], row: Sequence[Any], start: int) -> tuple[models.Model | None, int]:
    """The instance whose `model_columns` start at `row[start]` (None for an outer join that
    matched nothing), with database values converted as the ORM would, and the next index."""
    db = connections[DEFAULT_DB_ALIAS]
    attnames, pk_at, conversions, plain = _reader(model, db)
    end = start + len(attnames)
    values = list(row[start:end])
    if values[pk_at] is None:
        return None, end
    for i, converters, expression in conversions:
        value = values[i]
        for converter in converters:
            value = converter(value, expression, db)
        values[i] = value
    if not plain:
        return model.from_db(db.alias, attnames, values), end
    instance = model.__new__(model)  # what Model.from_db + __init__ leave behind, without them
    instance.__dict__.update(zip(attnames, values))
    state = instance._state = ModelState()
    state.adding, state.db = False, db.alias
    if plain == "fsm":  # what ConcurrentTransitionMixin.__init__ adds
        instance._update_initial_state()
    return instance, end


def _is_concurrent_fsm(model: type[models.Model]) -> bool:
    from django_fsm import ConcurrentTransitionMixin

    return issubclass(model, ConcurrentTransitionMixin)
