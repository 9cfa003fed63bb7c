"""Django's PostgreSQL backend with a health check that costs no round trip.

With CONN_HEALTH_CHECKS on, Django checks a persistent connection once per request before its
first query, by running `SELECT 1`: one more round trip on every request (invisible to
CaptureQueriesContext and to the statement budgets, which count Django's cursor). This backend
answers the same question from the client's side of the socket instead:

- a connection psycopg knows is closed or broken, whose libpq status is not OK, or that is not
  idle (a request starts on an idle connection) is unusable;
- an idle connection whose socket has something to read is unusable: between requests the
  server sends nothing unasked, except when it ends the session (pg_terminate_backend, a
  shutdown, idle_session_timeout: a FATAL message, then EOF) or on rare asynchronous notices (a
  reload's ParameterStatus), for which closing and reconnecting costs one connect.

What neither check sees is a peer that vanished without a word (a network cut): the request's
first statement then fails and is answered 503 SERVICE_UNAVAILABLE (core.outages), as it would
be with `SELECT 1` if the cut happened right after it. TCP keepalives (libpq's defaults) close such
a socket in time. `ENGINE = "core.postgresql"` (config/settings/base.py, for every PostgreSQL alias).
"""

import select

from django.db.backends.postgresql import base
from psycopg.pq import ConnStatus, TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        pgconn = conn.pgconn
        if pgconn.status != ConnStatus.OK or pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        try:  # poll, not select: select refuses descriptors past 1023 in a process with many open
            poller = select.poll()
            poller.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False
