#!/usr/bin/env python
"""Throwaway PostgreSQL processes for the scale-out tests and benches (issue 15): Debian's
PgBouncer in transaction pooling in front of a server, and a primary cluster with a streaming
replica made by `pg_basebackup -R`. Everything lives in its own temporary directory, listens on
127.0.0.1 on a free port, and is stopped (and its directory removed) by `stop()` or by leaving
the `with` block, also on failure; an `atexit` hook stops what a crashed caller left.

Nothing here touches a server it did not start: PgBouncer only connects to its upstream, and the
replica is taken from the throwaway primary, never from the shared cluster on 5432.

As a command (a developer's sandbox; Ctrl-C stops everything):

    .venv/bin/python scripts/pgservers.py pgbouncer [--upstream-port 5432]
    .venv/bin/python scripts/pgservers.py replica

Run as root (CI), the servers run as the `postgres` user (initdb, pg_ctl and PgBouncer refuse
root); their directories are given to that user.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
_running: list = []


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def missing_pgbouncer() -> str | None:
    """Why PgBouncer cannot be started here, or None."""
    if pgbouncer_binary() is None:
        return "pgbouncer not installed (Debian package pgbouncer; scripts/test-deps.sh installs it as root)"
    if os.geteuid() == 0 and not _postgres_user():
        return "running as root without a `postgres` user to run pgbouncer as"
    return None


def missing_postgres_binaries() -> str | None:
    """Why a throwaway cluster and replica cannot be made here, or None."""
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} not found (PostgreSQL 15 server binaries; set PG_BIN)"
    if os.geteuid() == 0 and not _postgres_user():
        return "running as root without a `postgres` user to run initdb as"
    return None


def _postgres_user():
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _own_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = _postgres_user() if os.geteuid() == 0 else None
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
    return path


def _chown_tree(path: Path) -> None:
    user = _postgres_user() if os.geteuid() == 0 else None
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    return done


class PgBouncer:
    """Debian's PgBouncer on a free port in front of `upstream` (host, port), every database
    name passed through (`* =`), trust auth for `users`, `pool_mode` pooling.

    `connect_query` runs once on every server connection it opens (the test settings pass a
    session GUC as a startup option, which PgBouncer 1.18 does not forward: it is ignored and
    set here instead)."""

    def __init__(self, *, upstream_host: str = "127.0.0.1", upstream_port: int = 5432, pool_mode: str = "transaction",
                 pool_size: int = 20, users: tuple[str, ...] = ("postgres",), connect_query: str = "",
                 max_client_conn: int = 500):
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.pool_mode, self.pool_size, self.users = pool_mode, pool_size, users
        self.connect_query, self.max_client_conn = connect_query, max_client_conn
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace") if self.dir else ""

    def start(self) -> PgBouncer:
        reason = missing_pgbouncer()
        if reason:
            raise RuntimeError(reason)
        self.dir = _own_dir("coffer-pgbouncer-")
        self.port = free_port()
        target = f"host={self.upstream_host} port={self.upstream_port}"
        if self.connect_query:
            target += " connect_query='" + self.connect_query.replace("'", "''") + "'"
        (self.dir / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = {target}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"admin_users = {self.users[0]}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            # psycopg sends no options; Django's test settings do (-c coffer.allow_audit_truncate)
            "ignore_startup_parameters = extra_float_digits,options\n"
            "server_idle_timeout = 30\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        _chown_tree(self.dir)
        self.proc = subprocess.Popen(_as_server_user([pgbouncer_binary(), str(self.dir / "pgbouncer.ini")]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _running.append(self)
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log
                self.stop()
                raise RuntimeError(f"pgbouncer did not start on {self.port}: {log[-2000:]}")
            time.sleep(0.05)
        return self

    def admin(self, command: str) -> str:
        """A command on PgBouncer's admin console (SHOW POOLS, RECONNECT, ...)."""
        return _run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.users[0], "-d", "pgbouncer",
                     "-AtXc", command]).stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # "safe shutdown": no new queries, existing ones finish
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        if self in _running:
            _running.remove(self)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Cluster:
    """One PostgreSQL 15 cluster in a temporary directory, on 127.0.0.1 and a free port, TCP
    only, trust auth, ready to be a replication source (wal_level replica, WAL senders). Built
    for tests: fsync off."""

    def __init__(self, datadir: Path, port: int, *, owns: Path):
        self.datadir, self.port, self._owns = datadir, port, owns

    @classmethod
    def create(cls) -> Cluster:
        reason = missing_postgres_binaries()
        if reason:
            raise RuntimeError(reason)
        root = _own_dir("coffer-pgprimary-")
        datadir = root / "data"
        cluster = cls(datadir, free_port(), owns=root)
        _running.append(cluster)
        try:
            _run(_as_server_user([str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                                  "-E", "UTF8", "--locale=C", "--no-sync"]))
            with open(datadir / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# coffer scale-out tests (scripts/pgservers.py)\n"
                    f"port = {cluster.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 60\n"
                    "wal_receiver_status_interval = 1s\nhot_standby_feedback = on\n"
                )
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def log(self) -> str:
        path = self._owns / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists() and port_open(self.port)

    def start(self) -> None:
        _run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self._owns / "server.log"),
                              "-w", "-t", "60", "start"]))

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keep its files (`start()` brings it back)."""
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"]),
                           capture_output=True)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return _run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname,
                     "-AtXqc", sql]).stdout.strip()

    def replica(self) -> Cluster:
        """A hot standby of this cluster streaming from it: `pg_basebackup -R` into a new
        temporary directory, started on its own free port."""
        root = _own_dir("coffer-pgreplica-")
        datadir = root / "data"
        standby = Cluster(datadir, free_port(), owns=root)
        _running.append(standby)
        try:
            _run(_as_server_user([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                  "-D", str(datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync"]))
            with open(datadir / "postgresql.auto.conf", "a") as conf:
                conf.write(f"port = {standby.port}\n")
            _chown_tree(datadir)
            standby.start()
        except BaseException:
            standby.stop()
            raise
        return standby

    def wait_replayed(self, primary: Cluster, timeout: float = 30.0) -> None:
        """Until this standby has replayed everything `primary` has written so far."""
        target = primary.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
            time.sleep(0.05)
        raise RuntimeError(f"replica on {self.port} did not replay up to {target} within {timeout} s")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.stop_server("immediate")
        if self in _running:
            _running.remove(self)
        shutil.rmtree(self._owns, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(reversed(_running)):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start throwaway PgBouncer or primary + replica until Ctrl-C.")
    sub = parser.add_subparsers(dest="what", required=True)
    bouncer = sub.add_parser("pgbouncer")
    bouncer.add_argument("--upstream-port", type=int, default=5432)
    bouncer.add_argument("--pool-size", type=int, default=20)
    sub.add_parser("replica")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.what == "pgbouncer":
            with PgBouncer(upstream_port=args.upstream_port, pool_size=args.pool_size) as pgb:
                print(f"pgbouncer (transaction pooling) on 127.0.0.1:{pgb.port} -> 127.0.0.1:{args.upstream_port}\n"
                      f"  DATABASE_URL={pgb.url('<db>')} DATABASE_TRANSACTION_POOLING=true", flush=True)
                signal.pause()
        else:
            with Cluster.create() as primary, primary.replica() as standby:
                print(f"primary {primary.url()}\nreplica {standby.url()}\n"
                      f"  DATABASE_URL={primary.url('<db>')} DATABASE_REPLICA_URL={standby.url('<db>')}", flush=True)
                signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
