"""core.postgresql: the per-request health check of a persistent connection (CONN_HEALTH_CHECKS)
reads the socket instead of sending `SELECT 1` (no round trip on every request), and still finds
a connection the server has ended."""

import select
import time

import pytest
from django.db import connection

from tests.concurrency import side_connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def other():
    """A connection of its own, to look at (or end) the test's backend from outside."""
    with side_connection(autocommit=True) as conn:
        yield conn


def _health_check() -> None:
    connection.health_check_done = False  # as at the start of each request (close_old_connections)
    connection.close_if_health_check_failed()


def test_every_postgresql_alias_uses_the_backend():
    assert connection.settings_dict["ENGINE"] == "core.postgresql"
    assert connection.health_check_enabled


def test_the_health_check_sends_nothing_to_the_server(other):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last statement before the check'")
    pid = connection.connection.info.backend_pid
    _health_check()
    assert connection.connection is not None and connection.connection.info.backend_pid == pid, "kept, not reopened"
    (last,) = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert last == "SELECT 'the last statement before the check'", f"the check ran {last!r} on the server"


def test_a_connection_the_server_ended_is_found_and_replaced(other):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    pid = connection.connection.info.backend_pid
    other.execute("SELECT pg_terminate_backend(%s)", [pid])
    socket = connection.connection.pgconn.socket
    deadline = time.monotonic() + 5
    while not select.select([socket], [], [], 0.05)[0]:  # the FATAL message and EOF reach the client
        assert time.monotonic() < deadline, "the terminated backend's socket never became readable"
    _health_check()
    assert connection.connection is None, "an ended connection is closed by the check"
    with connection.cursor() as cursor:  # and the next statement opens a new one
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_connection_inside_a_transaction_is_not_usable_for_a_new_request():
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT 1")
    try:
        assert connection.is_usable() is False
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
    assert connection.is_usable() is True


def test_a_socket_numbered_past_1023_is_checked_too():
    """A worker with many open files (select() refuses descriptors past FD_SETSIZE, 1024): the
    check still answers from the socket, instead of closing and reopening the connection on every
    request."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard if hard != resource.RLIM_INFINITY else 4096) < 1200:
        pytest.skip(f"this process may open at most {hard} files (the hard limit): the test needs 1,200")
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard) if hard != resource.RLIM_INFINITY else 4096, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert connection.connection.pgconn.socket > 1023
        pid = connection.connection.info.backend_pid
        _health_check()
        assert connection.connection is not None and connection.connection.info.backend_pid == pid
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
