"""Thread races for the PostgreSQL concurrency tests: run N callables at once, each in its own
thread (so its own database connection), and look at every outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


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
