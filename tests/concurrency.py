"""Threads for the PostgreSQL concurrency tests: races of N callables at once, each in its own
thread (so its own database connection) with every outcome kept; a call in the background; Redis
emptied under a running test; waiting for a backend to block on a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections


def run_in_threads(n: int, target: Callable[[int], Any], *, timeout: float = 120) -> list[Any]:
    """`target(0)` ... `target(n - 1)`, each in its own thread, released together by a barrier.
    Returns, in that order, what each call returned or the exception it raised (nothing is lost
    to a thread's silent death). Each thread closes its database connections when done; a thread
    still running after `timeout` seconds fails the test as a hang."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test asserts on
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return results


def errors_of(results: list[Any]) -> list[BaseException]:
    """The exceptions among `run_in_threads` results."""
    return [r for r in results if isinstance(r, BaseException)]


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """A thread (not started yet) that runs `call()` and closes its database connections; what
    the call returns lands in the dict under "result"."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        finally:
            connections.close_all()

    return threading.Thread(target=run), outcome


def redis_forget() -> None:
    """Redis loses everything, as far as this process can tell: every key of this test process's
    prefix goes. Not FLUSHDB: the pytest-xdist workers share one Redis database (one key prefix
    each), and emptying it would also empty another worker's cache in the middle of its test
    (e.g. a statement budget counting a cached API key's lookup)."""
    from django.core.cache import cache

    cache.delete_pattern("*")


@contextmanager
def redis_flushing(*, every: float) -> Iterator[None]:
    """While the block runs, a thread empties this test process's Redis keys (`redis_forget`)
    every `every` seconds."""
    flushing = threading.Event()
    flushing.set()

    def flusher() -> None:
        while flushing.is_set():
            redis_forget()
            time.sleep(every)

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        yield
    finally:
        flushing.clear()
        thread.join()


def blocked_insert_pid(table: str, *, timeout: float = 20) -> int | None:
    """The process id of a PostgreSQL backend waiting on a lock to INSERT INTO `table`, looked for
    over `timeout` seconds (None if none showed up). Uses this thread's connection: call it from
    inside the transaction that holds the lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view is frozen per transaction
            cursor.execute(
                # this database only: other test databases (xdist workers, the PgBouncer subset run) block on the same insert
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE %s",
                [f'%INSERT INTO "{table}"%'],  # alone, or one of a statement's data-modifying CTEs
            )
            row = cursor.fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    return None


def side_connection(*, autocommit: bool = False):
    """A psycopg connection of its own to the test database (not Django's): another client,
    to hold a lock or a transaction open, or to look at (or end) the test's backend from outside.
    Use it as a context manager."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)  # Django's own options for its connection
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=autocommit)

