"""Running behind a transaction-mode pooler (PgBouncer, issue 15).

Under transaction pooling a client's consecutive transactions may run on different server
connections, so nothing may outlive a transaction on the server side:
- prepared statements: PgBouncer 1.18 (Debian 12) does not carry protocol-level prepared
  statements, so the money path's (`LEDGER_PREPARED_STATEMENTS`, used by `ledger.services` and
  `core.db.query`) must be off. DATABASE_TRANSACTION_POOLING=true turns them off
  (config/settings/base.py);
- server-side cursors (Django's `.iterator()` opens a WITH HOLD cursor outside a transaction):
  off with it (`DISABLE_SERVER_SIDE_CURSORS`);
- session-scoped advisory locks: the platform takes only transaction-scoped ones
  (`pg_advisory_xact_lock`, `pg_try_advisory_xact_lock`; tests/scaleout guard it);
- session SETs: only `SET LOCAL` (PgBouncer itself restores client_encoding, DateStyle,
  TimeZone, standard_conforming_strings and application_name per client).

Detection, for a pooler nobody told us about: on each new PostgreSQL connection of the default
alias while prepared statements are on, `pooler_suspected` compares the TCP port we dialled
with the port the server process accepted on (`inet_server_port()`). A difference means
something sits in between (a pooler, or a port forward): prepared statements are switched off
for this process with a warning, and server-side cursors with them. A pooler on the same port
as the server it fronts is not detected: configure it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.backends.signals import connection_created

logger = logging.getLogger("coffer.pooling")

_checked: set[tuple] = set()


def pooler_suspected(connection) -> bool:
    """True when the server process answers on another port than the one we connected to."""
    params = connection.settings_dict
    host = params.get("HOST") or ""
    if not host or host.startswith("/"):
        return False  # a Unix socket: no port to compare
    dialled = int(params.get("PORT") or 5432)
    with connection.connection.cursor() as cursor:  # the raw connection: no wrappers, no routing
        cursor.execute("SELECT inet_server_port()")
        served = cursor.fetchone()[0]
    return served is not None and int(served) != dialled


def _on_connection_created(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql" or connection.alias != "default":
        return
    if not getattr(settings, "LEDGER_PREPARED_STATEMENTS", False) or not getattr(settings, "DATABASE_POOLER_DETECT", False):
        return
    key = (connection.settings_dict.get("HOST"), connection.settings_dict.get("PORT"))
    if key in _checked:
        return
    _checked.add(key)
    try:
        suspected = pooler_suspected(connection)
    except Exception as exc:  # noqa: BLE001 - detection is a courtesy; the settings still rule
        logger.warning("pooler detection skipped: %s", exc)
        return
    if suspected:
        logger.warning(
            "the database server answers on another port than %s: a pooler or a forward in between; prepared statements "
            "and server-side cursors are off for this process (set DATABASE_TRANSACTION_POOLING=true to say so)",
            key[1],
        )
        settings.LEDGER_PREPARED_STATEMENTS = False
        connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True


def install() -> None:
    connection_created.connect(_on_connection_created, dispatch_uid="coffer-pooler-detect")
