"""Celery beat as a singleton: `SingletonScheduler` (settings `CELERY_BEAT_SCHEDULER`).

Any number of beat processes may be started (`celery -A config beat`, or workers started with
`--beat`); exactly one schedules the periodic tasks. The others stand by and take over within
`STANDBY_SECONDS` when it stops, so a second beat can neither double-run the schedule nor leave
it unrun.

- On PostgreSQL the leader holds a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`)
  in a transaction it keeps open on a connection of its own (no writes: it holds back nothing):
  the lock is per database (so per deployment, across hosts) and PostgreSQL releases it when the
  transaction ends, the process or its connection dies. Transaction-scoped, not session-scoped,
  so it also holds behind PgBouncer's transaction pooling: the open transaction pins one server
  connection, and a client that goes away leaves no lock behind on a pooled one (issue 15). The
  leader checks that connection before every pass and stands down if it is gone.
- On SQLite (the embedded `make run`, one machine) it holds an exclusive `flock` on a file next
  to the schedule.

The schedule's state (when each entry last ran) is kept in `CELERY_BEAT_SCHEDULE_FILENAME`, whose
directory is created on start; if it cannot be created or opened (a read-only image), beat keeps
that state in memory and says so: the entries themselves come from the code (`beat_schedule`),
and every periodic task here is idempotent and runs every few seconds or minutes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shelve
from pathlib import Path

from celery.beat import PersistentScheduler

logger = logging.getLogger("celery.beat")

STANDBY_SECONDS = 5.0
# pg_try_advisory_xact_lock key: "coffer" + 1, one per database.
ADVISORY_LOCK_KEY = 0x636F6666657201


class _PostgresLock:
    def __init__(self) -> None:
        self._wrapper = None
        self.unreachable = False  # the last attempt could not ask (as opposed to: another holds it)

    def describe(self) -> str:
        return "a PostgreSQL advisory lock"

    def acquire(self) -> bool:
        from django.db import connections

        wrapper = connections.create_connection("default")  # not the thread's: Django never closes it
        self.unreachable = False
        try:
            wrapper.ensure_connection()
            wrapper.connection.autocommit = False  # the transaction opened here lasts the leadership
            with wrapper.connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
                held = bool(cursor.fetchone()[0])
        except Exception as exc:
            logger.warning("beat: cannot reach the database to take the beat lock: %s", exc)
            self.unreachable = True
            wrapper.close()
            return False
        if not held:
            wrapper.close()
            return False
        self._wrapper = wrapper
        return True

    def alive(self) -> bool:
        if self._wrapper is None:
            return False
        try:
            with self._wrapper.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception as exc:
            logger.warning("beat: lost the database connection that held the beat lock (%s): standing down", exc)
            self.release()
            return False

    def release(self) -> None:
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            try:
                wrapper.close()  # the transaction ends, and its advisory lock with it
            except Exception:  # noqa: S110 - already gone
                pass


class _FileLock:
    unreachable = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def describe(self) -> str:
        return f"a lock on {self.path}"

    def acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            logger.warning("beat: cannot open the beat lock file %s: %s", self.path, exc)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def alive(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _beat_lock(schedule_filename: str):
    from django.db import connections

    if connections["default"].vendor == "postgresql":
        return _PostgresLock()
    return _FileLock(Path(schedule_filename).with_name(Path(schedule_filename).name + ".lock"))


class SingletonScheduler(PersistentScheduler):
    standby_interval = STANDBY_SECONDS

    def __init__(self, *args, **kwargs):
        self._lock = None
        self._leading = False
        self._said_standby = False
        super().__init__(*args, **kwargs)  # sets the schedule up unless lazy

    # --- leadership -------------------------------------------------------------------------
    def _lead(self) -> bool:
        if self._lock is None:
            self._lock = _beat_lock(self.schedule_filename)
        if self._leading and self._lock.alive():
            return True
        if self._leading:  # the lock went with its connection
            self._leading = False
            self._close_store()
        if not self._lock.acquire():
            if not self._said_standby and not self._lock.unreachable:
                logger.info("beat: another beat process holds %s: standing by (checking every %.0f s)",
                            self._lock.describe(), self.standby_interval)
                self._said_standby = True
            return False
        logger.info("beat: holding %s: this process schedules the periodic tasks", self._lock.describe())
        self._leading, self._said_standby = True, False
        super().setup_schedule()
        return True

    def setup_schedule(self):
        self._lead()

    def tick(self, *args, **kwargs):
        if not self._lead():
            return self.standby_interval
        return super().tick(*args, **kwargs)

    # --- the schedule's state -----------------------------------------------------------------
    def _open_schedule(self):
        try:
            Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
            return super()._open_schedule()
        except OSError as exc:
            logger.warning("beat: cannot keep the schedule in %s (%s): keeping it in memory", self.schedule_filename, exc)
            return shelve.Shelf({})

    def get_schedule(self):
        return self._store["entries"] if self._store is not None else {}

    schedule = property(get_schedule, PersistentScheduler.set_schedule)

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                logger.warning("beat: closing the schedule store failed", exc_info=True)

    def close(self):
        try:
            super().close()
        finally:
            if self._lock is not None:
                self._lock.release()
            self._leading = False
