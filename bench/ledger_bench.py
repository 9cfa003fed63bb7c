#!/usr/bin/env python
"""Ledger throughput benchmark (issue 4). Run: `.venv/bin/python bench/ledger_bench.py` or `make bench`.

PostgreSQL only. It uses a dedicated database on the server named by DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/coffer_bench): the database of that URL if its name contains
"bench", else `<name>_bench` next to it, so it never touches application data. The bench
database is dropped and re-created, migrated, and seeded on every run:

1. 1,000 customer wallets in USD, each funded with 1,000,000,000.00 through `ledger_post` (Issue).
2. History: past transfers between random pairs of those wallets, generated in SQL in chunks
   (`generate_series`), with each entry's `balance_after` computed by a window sum over the
   wallet's running balance, so the rows form a correct ledger; then VACUUM ANALYZE. The last
   step of the run checks them with the invariant checker (`ledger.checks.ledger_check`).
3. Rows, each for `--seconds`: the ceiling (pgbench, bench/pgbench_transfer.sql, 8 clients,
   1,000 wallets), then `ledger_post` transfers with 8 workers over 1,000 wallets, 8-worker
   deposits (Issue: every one hits the USD issuance account), 8 workers over 10 wallets, and 1
   worker over 1,000 and over 10 wallets. A worker is an OS process (fork) with its own
   connection; every posting is its own `transaction.atomic()`. Only postings that finish
   inside the window count; refused ones (INSUFFICIENT_FUNDS...) and errors are counted apart.
4. The history grows to `--history-large` entries; VACUUM ANALYZE; the ceiling and the 8-worker
   1,000-wallet transfer row again: the cost of a transfer must stay flat as the ledger grows.
5. The verdicts against the issue's targets, the statement queries' time at both sizes
   (`statement_timing`, over the window of each size's measured rows; the partition layout
   of ledger_entry is printed with it), round trips per posting, and `ledger_check`.

`--profile` adds a cProfile of one worker's hot loop (in-process, no contention).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/coffer_bench"
FUNDING = Decimal("1000000000.00")
AMOUNT = Decimal("0.01")
HISTORY_MAX_AMOUNT_CENTS = 100  # history transfers move 0.01 .. 1.00
HISTORY_CHUNK = 100_000  # transfers per generated chunk (200k entries)


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------


def bench_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(
            f"ledger_bench: PostgreSQL only, and DATABASE_URL is {parts.scheme or raw!r}. The benchmark measures "
            "row locks, concurrent writers and pgbench on a PostgreSQL server; SQLite serialises every write. "
            "Set DATABASE_URL=postgres://user@host:port/db (default " + DEFAULT_URL + ")."
        )
    name = parts.path.lstrip("/") or "coffer"
    if "bench" not in name:
        name = f"{name}_bench"
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme if parts.scheme != "pgsql" else "postgres", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def django_setup(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ["DEBUG"] = "0"  # DEBUG would keep every query in memory
    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit(f"ledger_bench: PostgreSQL only (the configured database is {connection.vendor}).")


def seed_wallets(n: int) -> list[int]:
    from accounts.models import Customer, Organization
    from ledger.models import Asset
    from ledger.posting import Issue, ledger_post
    from ledger.services import wallet_open

    usd = Asset.objects.get(code="USD", organization__isnull=True)
    org = Organization.objects.create(name="Ledger bench", slug="ledger-bench")
    customers = Customer.objects.bulk_create(
        [Customer(organization=org, external_id=f"bench-{i}", name=f"Bench {i}") for i in range(n)]
    )
    ids = [wallet_open(asset=usd, customer=c).pk for c in customers]
    for start in range(0, n, 100):
        ledger_post(
            type="deposit", organization=org, description="bench funding",
            operations=[Issue(wallet=wid, amount=FUNDING) for wid in ids[start : start + 100]],
        ).raise_for_error()
    # The generated history is dated a day back (grow_history); the funding must come before it,
    # as in a real ledger, or a statement's opening balance (the last entry before its start by
    # created_at) would be the funding's. Moved with the guards off, as the history is written.
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE ledger_entry SET created_at = created_at - interval '2 days'")
    if ids != list(range(ids[0], ids[0] + n)):
        sys.exit("ledger_bench: the bench wallets' ids are not contiguous (pgbench addresses them as first + i).")
    return ids


def entry_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_entry")
        return cursor.fetchone()[0]


DAY_BACK = "now() - interval '1 day'"
HISTORY_SQL = """
CREATE TEMP TABLE bench_history ON COMMIT DROP AS
SELECT g AS k,
       p.ids[1 + s.a] AS src,
       p.ids[1 + (s.a + 1 + floor(random() * (p.n - 1))::int) %% p.n] AS dst,
       ((1 + floor(random() * %(max_cents)s)) / 100)::numeric(38, 18) AS amount
  FROM (SELECT g, floor(random() * %(n)s)::int AS a FROM generate_series(1, %(count)s) g) s,
       (SELECT %(ids)s::bigint[] AS ids, %(n)s::int AS n) p;

INSERT INTO ledger_transaction (id, type, status, organization_id, customer_id, reference, description,
    metadata, failure_code, failure_message, failure_operation_index, created_at, completed_at, livemode)
SELECT %(tbase)s + k, 'transfer', 'completed', %(org)s, NULL, '', 'bench history', '{}'::jsonb,
       '', '', NULL, now() - interval '1 day', now() - interval '1 day', w.livemode
  FROM bench_history JOIN ledger_wallet w ON w.id = src ORDER BY k;

INSERT INTO ledger_posting (transaction_id, "index", kind, source_wallet_id, source_purpose, destination_wallet_id,
    destination_purpose, amount, asset_id, reference_rate)
SELECT %(tbase)s + k, 0, 'transfer', src, '', dst, '', amount, w.asset_id, %(rate)s::numeric
  FROM bench_history JOIN ledger_wallet w ON w.id = src ORDER BY k;

INSERT INTO ledger_entry (id, transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)
SELECT e.id, e.tx, e.wallet_id, e.direction, e.amount,
       w.balance + sum(e.signed) OVER (PARTITION BY e.wallet_id ORDER BY e.id), 0, now() - interval '1 day'
  FROM (SELECT %(ebase)s + 2 * k - 1 AS id, %(tbase)s + k AS tx, src AS wallet_id, 'debit' AS direction, amount, -amount AS signed
          FROM bench_history
        UNION ALL
        SELECT %(ebase)s + 2 * k, %(tbase)s + k, dst, 'credit', amount, amount FROM bench_history) e
  JOIN ledger_wallet w ON w.id = e.wallet_id
 ORDER BY e.id;

UPDATE ledger_wallet w SET balance = w.balance + d.delta, updated_at = now()
  FROM (SELECT wallet_id, sum(delta) AS delta FROM (
          SELECT src AS wallet_id, -amount AS delta FROM bench_history
          UNION ALL SELECT dst, amount FROM bench_history) x GROUP BY wallet_id) d
 WHERE w.id = d.wallet_id;
"""


# When the posting engine keeps per-customer usage counters (ledger_usagecounter, checked against a
# recount by ledger_check), the generated history is charged to them too, as the engine would have:
# outgoing for the source wallet's customer, incoming for the destination's, on the UTC day of
# the rows (every bench wallet has its own customer, so no leg is between one customer's wallets).
HISTORY_USAGE_SQL = """
INSERT INTO ledger_usagecounter (customer_id, asset_id, movement_type, direction, day, amount, reference_amount, count)
SELECT w.customer_id, w.asset_id, 'transfer', u.direction, ((now() - interval '1 day') AT TIME ZONE 'UTC')::date,
       sum(u.amount), coalesce(sum(round(u.amount * %(rate)s::numeric, 18)), 0), count(*)
  FROM (SELECT src AS wallet_id, 'outgoing' AS direction, amount FROM bench_history
        UNION ALL SELECT dst, 'incoming', amount FROM bench_history) u
  JOIN ledger_wallet w ON w.id = u.wallet_id
 WHERE w.customer_id IS NOT NULL
 GROUP BY w.customer_id, w.asset_id, u.direction
ON CONFLICT (customer_id, asset_id, movement_type, direction, day) DO UPDATE
   SET amount = ledger_usagecounter.amount + excluded.amount, count = ledger_usagecounter.count + excluded.count,
       reference_amount = ledger_usagecounter.reference_amount + excluded.reference_amount
"""


def grow_history(ids: list[int], target_entries: int, org_id: int, *, dated: str = "now() - interval '1 day'") -> float:
    """Generate past transfers until the ledger holds ~target_entries entries. Rows are a correct
    ledger (balance_after chains continue each wallet's balance); triggers (FK checks and the
    per-row deferred balance trigger) are off for the bulk insert only (session_replication_role),
    which is why the run ends with the invariant checker. The rows are dated `dated` (an SQL
    expression; a day back by default, clear of the risk rules' recent-activity windows for the
    API bench). Returns seconds taken."""
    from django.db import connection, transaction

    started = time.monotonic()
    # Non-negativity by construction: even if every history transfer (at most 1.00 each) left
    # the same wallet, it would stay above zero.
    if Decimal(target_entries // 2 * HISTORY_MAX_AMOUNT_CENTS) / 100 >= FUNDING / 2:
        sys.exit(f"ledger_bench: {target_entries:,} history entries could overdraw a wallet funded with {FUNDING}.")
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.4242)")
        cursor.execute("SELECT a.code FROM ledger_wallet w JOIN ledger_asset a ON a.id = w.asset_id WHERE w.id = %s", [ids[0]])
        (code,) = cursor.fetchone()
    from core.reference import RateBook

    # each posting row stores its rate to the reference currency, and each usage counter the
    # amount converted at it, as the engine does (ledger.usage; check_ledger recounts them)
    rate = RateBook().stored(code)
    while True:
        missing = target_entries - entry_count()
        if missing < 2:
            break
        count = min(HISTORY_CHUNK, missing // 2)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('ledger_transaction', 'id')),"
                " nextval(pg_get_serial_sequence('ledger_entry', 'id'))"
            )
            tbase, ebase = cursor.fetchone()
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('ledger_transaction', 'id'), %s),"
                " setval(pg_get_serial_sequence('ledger_entry', 'id'), %s)",
                [tbase + count, ebase + 2 * count],
            )
            params = {
                "ids": ids, "n": len(ids), "count": count, "tbase": tbase, "ebase": ebase - 1,
                "org": org_id, "max_cents": HISTORY_MAX_AMOUNT_CENTS, "rate": rate,
            }
            for statement in [s for s in HISTORY_SQL.replace(DAY_BACK, dated).split(";\n") if s.strip()]:
                cursor.execute(statement, params)
            cursor.execute("SELECT to_regclass('ledger_usagecounter') IS NOT NULL")
            if cursor.fetchone()[0]:
                cursor.execute(HISTORY_USAGE_SQL.replace(DAY_BACK, dated), {"rate": rate})
    vacuum_analyze()
    return time.monotonic() - started


def statement_timing(ids: list[int], since, until, samples: int = 200) -> dict:
    """Milliseconds per wallet statement's queries, as `ledger.statements.statement_build` runs them:
    the balance at `until` and before `since` (one descent each of the (wallet, created_at, id)
    index), the period's totals and its rows in order, plus the newest-first page of
    GET /wallets/{id}/entries, for `samples` random wallets. The period is one measured window of
    rows, so it holds about as many entries at either size; what grows is the history behind it.
    (statement_build itself would refuse these statements: the pgbench ceiling script dates its
    entries by transaction start, so under contention created_at order differs from the balance
    chain's id order; the queries are the same.)"""
    from django.db.models import Count, Q, Sum

    from ledger.models import Entry, Wallet
    from ledger.selectors import wallet_balance_at, wallet_balance_before

    rng = random.Random(11)
    times, rows = [], 0
    for _ in range(samples):
        wallet_id = rng.choice(ids)
        t0 = time.perf_counter()
        wallet = Wallet.objects.select_related("asset").get(pk=wallet_id)
        wallet_balance_at(wallet=wallet, at=until)
        wallet_balance_before(wallet=wallet, before=since)
        period = Entry.objects.filter(wallet_id=wallet_id, created_at__gte=since, created_at__lte=until)
        period.aggregate(i=Sum("amount", filter=Q(direction="credit")), o=Sum("amount", filter=Q(direction="debit")), n=Count("id"))
        rows += len(list(period.order_by("created_at", "id")))
        list(Entry.objects.filter(wallet_id=wallet_id).order_by("-id")[:20])
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50": _pct(times, 50) * 1000, "p99": _pct(times, 99) * 1000, "rows": rows / samples}


def partition_summary() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('ledger_entry')")
        count = cursor.fetchone()[0]
    return f"ledger_entry partitioned by month ({count} partitions)" if count else "ledger_entry not partitioned"


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:  # autocommit: outside any atomic block
        cursor.execute("VACUUM ANALYZE")


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


def _pick_pair(rng: random.Random, ids: list[int]) -> tuple[int, int]:
    i = rng.randrange(len(ids))
    j = rng.randrange(len(ids) - 1)
    if j >= i:
        j += 1
    return ids[i], ids[j]


def _posting(kind: str, rng: random.Random, ids: list[int]):
    from ledger.posting import Issue, Transfer, ledger_post

    if kind == "deposit":
        return ledger_post(type="deposit", operations=[Issue(wallet=ids[rng.randrange(len(ids))], amount=AMOUNT)])
    src, dst = _pick_pair(rng, ids)
    return ledger_post(type="transfer", operations=[Transfer(source=src, destination=dst, amount=AMOUNT)])


def _worker(kind: str, ids: list[int], seconds: float, seed: int, ready, go, start_at, out) -> None:
    from django.db import close_old_connections, connection, transaction

    rng = random.Random(seed)
    connection.close()  # never share the parent's socket
    try:
        for _ in range(5):  # warm-up: connection, imports, plan caches (not counted)
            with transaction.atomic():
                _posting(kind, rng, ids)
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        out.put({"fatal": f"{type(exc).__name__}: {exc}"})
        ready.put(1)
        return
    ready.put(1)
    go.wait()
    deadline = start_at.value + seconds
    while time.monotonic() < start_at.value:
        pass
    ok = 0
    failed: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    while True:
        t0 = time.perf_counter()
        try:
            with transaction.atomic():
                result = _posting(kind, rng, ids)
        except Exception as exc:  # noqa: BLE001 - counted, never hidden
            t1 = time.perf_counter()
            if t1 > deadline:
                break
            errors[type(exc).__name__] += 1
            latencies.append(t1 - t0)
            close_old_connections()
            continue
        t1 = time.perf_counter()
        if t1 > deadline:
            break
        latencies.append(t1 - t0)
        if result.ok:
            ok += 1
        else:
            failed[result.error.code] += 1
    out.put({"ok": ok, "failed": dict(failed), "errors": dict(errors), "latencies": latencies})
    connection.close()


def run_service(kind: str, workers: int, ids: list[int], seconds: float) -> dict:
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_worker, args=(kind, ids, seconds, random.randrange(1 << 30), ready, go, start_at, out))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    load = os.getloadavg()[0]
    start_at.value = time.monotonic() + 0.05
    go.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        sys.exit(f"ledger_bench: a worker could not post: {fatal[0]}")
    failed: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in results:
        failed.update(r["failed"])
        errors.update(r["errors"])
    return {
        "seconds": seconds, "ok": sum(r["ok"] for r in results), "failed_codes": failed, "error_types": errors,
        "lat": [x for r in results for x in r["latencies"]], "load": [load],
    }


def merge(parts: list[dict]) -> dict:
    """Rounds of one row, added up; rate, p50 and p99 over all of them."""
    lat = sorted(x for p in parts for x in p["lat"])
    failed: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for p in parts:
        failed.update(p["failed_codes"])
        errors.update(p["error_types"])
    seconds = sum(p["seconds"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    loads = [x for p in parts for x in p["load"]]
    return {
        "seconds": seconds, "ok": ok, "rate": ok / seconds, "failed": sum(failed.values()), "failed_codes": dict(failed),
        "errors": sum(errors.values()), "error_types": dict(errors), "p50": _pct(lat, 50), "p99": _pct(lat, 99),
        "load": sum(loads) / len(loads),
    }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))
    return values[k]


# ---------------------------------------------------------------------------------------------
# pgbench
# ---------------------------------------------------------------------------------------------


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    return None


def run_pgbench(pgbench: str, url: str, first_id: int, n: int, clients: int, seconds: float) -> dict:
    parts = urlsplit(url)
    duration = max(1, round(seconds))
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        cmd = [
            pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
            "-T", str(duration), "-f", str(ROOT / "bench" / "pgbench_transfer.sql"),
            "-D", f"first={first_id}", "-D", f"n={n}", "-l", "--log-prefix", f"{tmp}/tx",
            "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres",
            parts.path.lstrip("/"),
        ]
        load = os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"ledger_bench: pgbench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        processed = re.search(r"number of transactions actually processed: (\d+)", proc.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
        lat = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    lat.append(int(fields[2]) / 1e6)
    return {
        "seconds": duration, "ok": int(processed.group(1)) if processed else len(lat),
        "failed_codes": Counter({"pgbench": int(failed.group(1))} if failed and int(failed.group(1)) else {}),
        "error_types": Counter(), "lat": lat, "load": [load],
    }


# ---------------------------------------------------------------------------------------------
# Round trips and profile
# ---------------------------------------------------------------------------------------------


def round_trips(kind: str, ids: list[int]) -> tuple[int, int, list[str]]:
    """Statements (Django execute calls) and client->server round trips (libpq protocol trace:
    every simple Query and every extended-protocol Sync waits for the server) of one posting,
    BEGIN and COMMIT included. The statements are listed from one posting under an execute
    wrapper (which sends ledger_post's statements through Django's cursor), the round trips
    counted on another without it (the hot path: core.db.query's prepared psycopg cursor)."""
    from django.db import connection, transaction
    from psycopg.pq import Trace

    rng = random.Random(7)
    with transaction.atomic():
        _posting(kind, rng, ids)  # warm (connection open, caches filled)
    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(" ".join(sql.split())[:70])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        with transaction.atomic():
            _posting(kind, rng, ids)
    with tempfile.TemporaryFile("w+") as trace:
        pgconn = connection.connection.pgconn
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        with transaction.atomic():
            _posting(kind, rng, ids)
        pgconn.untrace()
        trace.seek(0)
        lines = [line for line in trace.read().splitlines() if line.startswith("F")]
    trips = sum(1 for line in lines if "\tQuery\t" in line or "\tSync" in line or " Query " in line or line.rstrip().endswith("Sync"))
    return len(statements), trips, statements


def _proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a local process in seconds: its own code vs the kernel working for it
    (system calls, loopback TCP, context switches); None if it is not readable here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of a local process, in seconds (None if it is not readable here)."""
    split = _proc_cpu_split(pid)
    return None if split is None else split[0] + split[1]


def cpu_costs(pgbench: str, url: str, ids: list[int], postings: int) -> dict:
    """CPU per transfer, client and server side, one at a time (no contention): ledger_post in
    this process (process_time; its backend from /proc) and the pgbench script with one client
    (pgbench's own CPU from rusage; its backend polled from /proc while it runs). On a machine
    where clients and PostgreSQL share the cores, throughput is bounded by these sums."""
    import resource
    import threading

    from django.db import connection, transaction

    rng = random.Random(5)
    for _ in range(50):
        with transaction.atomic():
            _posting("transfer", rng, ids)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    b0, c0, w0 = _proc_cpu(backend), time.process_time(), time.perf_counter()
    for _ in range(postings):
        with transaction.atomic():
            _posting("transfer", rng, ids)
    b1, c1, w1 = _proc_cpu(backend), time.process_time(), time.perf_counter()
    ours = {
        "client": (c1 - c0) / postings, "wall": (w1 - w0) / postings,
        "server": None if b0 is None or b1 is None else (b1 - b0) / postings,
    }

    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    cmd = [
        pgbench, "-n", "-M", "prepared", "-c", "1", "-j", "1", "-t", str(postings),
        "-f", str(ROOT / "bench" / "pgbench_transfer.sql"), "-D", f"first={ids[0]}", "-D", f"n={len(ids)}",
        "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres",
        parts.path.lstrip("/"),
    ]
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        import psycopg

        with psycopg.connect(url.replace("pgsql://", "postgres://"), autocommit=True) as conn:
            while not done.is_set():
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND datname = current_database()"
                ).fetchall():
                    value = _proc_cpu(pid)
                    if value is not None:
                        seen[pid] = value
                time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    w1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done.set()
    poller.join()
    if proc.returncode != 0:
        sys.exit(f"ledger_bench: pgbench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    theirs = {
        "client": (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / postings, "wall": (w1 - w0) / postings,
        "server": (sum(seen.values()) / postings) if seen else None,
    }
    return {"ours": ours, "pgbench": theirs}


def profile(ids: list[int], kind: str, postings: int) -> str:
    """cProfile of one worker's loop, timed in process CPU (so the numbers are the Python side,
    not time spent waiting for PostgreSQL or for a core). No execute wrapper: one would send
    ledger_post's statements through Django's cursor instead of its hot path."""
    from django.db import transaction

    rng = random.Random(11)
    for _ in range(20):
        with transaction.atomic():
            _posting(kind, rng, ids)
    prof = cProfile.Profile(time.process_time)
    w0 = time.perf_counter()
    prof.enable()
    for _ in range(postings):
        with transaction.atomic():
            _posting(kind, rng, ids)
    prof.disable()
    wall = time.perf_counter() - w0
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    total = sum(v[2] for v in stats.stats.values())  # own time of every function = total CPU
    buf.write(f"{kind}: {postings} postings in one process, {wall / postings * 1e6:.0f} us wall per posting "
              "(profiler overhead and waiting for PostgreSQL included)\n")
    buf.write(f"CPU under cProfile {total / postings * 1e6:.0f} us per posting (profiler overhead included); "
              "by own CPU time, top 15:\n")
    stats.sort_stats("tottime").print_stats(15)
    buf.write("cumulative CPU of the posting path:\n")
    stats.sort_stats("cumulative").print_stats(r"ledger/posting/|transaction.py:.*(__exit__|__enter__)")
    lines = [line for line in buf.getvalue().splitlines() if line.strip() and not line.startswith(("   Ordered by", "   List reduced"))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def fmt_row(label: str, workers, wallets, entries, r: dict) -> str:
    failed = f"{r['failed']}" + (f" ({', '.join(f'{k} {v}' for k, v in r['failed_codes'].items())})" if r["failed_codes"] else "")
    errors = f"{r['errors']}" + (f" ({', '.join(f'{k} {v}' for k, v in r['error_types'].items())})" if r["error_types"] else "")
    return (
        f"| {label:<30} | {workers:>7} | {wallets:>7} | {entries:>9,} | {r['rate']:>8.0f} | {r['ok']:>7} | {failed:>6} | {errors:>6} "
        f"| {r['p50'] * 1000:>7.2f} | {r['p99'] * 1000:>7.2f} | {r['load']:>5.1f} |"
    )


HEADER = (
    f"| {'row':<30} | {'workers':>7} | {'wallets':>7} | {'entries':>9} | {'per sec':>8} | {'ok':>7} | {'failed':>6} | {'errors':>6} "
    f"| {'p50 ms':>7} | {'p99 ms':>7} | {'load':>5} |\n"
    f"|{'-' * 32}|{'-' * 8}:|{'-' * 8}:|{'-' * 10}:|{'-' * 9}:|{'-' * 8}:|{'-' * 7}:|{'-' * 7}:|{'-' * 8}:|{'-' * 8}:|{'-' * 6}:|"
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL,
                        help="PostgreSQL server (default: DATABASE_URL, else %(default)s); the bench uses its own database there")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per row (default 20)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="the ceiling, 8-worker transfer and deposit rows run interleaved in this many slices, "
                             "so background load hits them alike (default 4)")
    parser.add_argument("--history", type=int, default=100_000, help="entries in the ledger before the main rows (default 100k)")
    parser.add_argument("--history-large", type=int, default=1_000_000, help="entries for the growth rows (default 1M)")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets of the large rows (default 1000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent workers / pgbench clients (default 8)")
    parser.add_argument("--quick", action="store_true", help="smoke run (~1 minute): 4 s rows in 2 rounds, 20k -> 200k entries")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile (CPU time) of one worker's loop")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.history, args.history_large = 4, 2, 20_000, 200_000

    url = bench_url(args.database_url)
    pgbench = find_pgbench()
    if pgbench is None:
        sys.exit("ledger_bench: pgbench not found (Debian: apt-get install postgresql-client).")
    t_start = time.monotonic()
    shown = urlsplit(url)._replace(netloc=urlsplit(url).hostname or "").geturl()
    print(f"ledger_bench: database {shown} (dropped and re-created), {os.cpu_count()} CPUs, {args.seconds:g} s per row, "
          f"pgbench {pgbench}", flush=True)
    recreate_database(url)
    django_setup(url)
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Organization
    from ledger.checks import ledger_check

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0].split()[0]
        cursor.execute("SHOW synchronous_commit")
        sync = cursor.fetchone()[0]
    ids = seed_wallets(args.wallets)
    small = ids[:10]
    org_id = Organization.objects.get(slug="ledger-bench").pk
    took = grow_history(ids, args.history, org_id)
    print(f"seeded {len(ids)} wallets and {entry_count():,} entries in {took:.1f} s (PostgreSQL {server}, "
          f"synchronous_commit={sync}, LEDGER_HOT_ACCOUNT_SHARDS={_shards()}); load = 1-minute load average "
          "of the machine when the row started", flush=True)

    w, s, k = args.workers, args.seconds, max(1, args.rounds)
    from django.utils import timezone

    def row(label: str, workers: int, wallets: int, result: dict) -> dict:
        print(fmt_row(label, workers, wallets, entry_count(), result), flush=True)
        return result

    def interleaved(kinds: list[str]) -> dict[str, dict]:
        parts: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(k):
            for kind in kinds:
                if kind == "pgbench":
                    parts[kind].append(run_pgbench(pgbench, url, ids[0], len(ids), w, s / k))
                else:
                    parts[kind].append(run_service(kind, w, ids, s / k))
        return {kind: merge(p) for kind, p in parts.items()}

    print(HEADER, flush=True)
    window_small = [timezone.now()]
    first = interleaved(["pgbench", "transfer", "deposit"])
    window_small.append(timezone.now())
    ceiling = row("pgbench transfer (ceiling)", w, len(ids), first["pgbench"])
    transfers = row("ledger_post transfer", w, len(ids), first["transfer"])
    deposits = row("ledger_post deposit (issuance)", w, len(ids), first["deposit"])
    row("ledger_post transfer", w, len(small), merge([run_service("transfer", w, small, s)]))
    row("ledger_post transfer", 1, len(ids), merge([run_service("transfer", 1, ids, s)]))
    row("ledger_post transfer", 1, len(small), merge([run_service("transfer", 1, small, s)]))
    row("ledger_post deposit (issuance)", 1, len(ids), merge([run_service("deposit", 1, ids, s)]))
    statements_small = statement_timing(ids, *window_small)
    before = entry_count()
    # dated now: after the rows above (a statement reads entries in created_at order, as they are
    # written), before the rows below; ledger_post applies no risk rule that recent history would trip
    took = grow_history(ids, args.history_large, org_id, dated="now()")
    print(f"(grew the ledger from {before:,} to {entry_count():,} entries in {took:.1f} s, then VACUUM ANALYZE)", flush=True)
    window_large = [timezone.now()]
    second = interleaved(["pgbench", "transfer"])
    window_large.append(timezone.now())
    ceiling_large = row("pgbench transfer (ceiling)", w, len(ids), second["pgbench"])
    transfers_large = row("ledger_post transfer", w, len(ids), second["transfer"])
    statements_large = statement_timing(ids, *window_large)

    stmts, trips, statements = round_trips("transfer", ids)
    d_stmts, d_trips, _ = round_trips("deposit", ids)
    costs = cpu_costs(pgbench, url, ids, 3000 if not args.quick else 500)
    r1 = transfers["rate"] / ceiling["rate"]
    r2 = deposits["rate"] / transfers["rate"]
    r3 = transfers_large["rate"] / transfers["rate"]
    r4 = transfers_large["rate"] / ceiling_large["rate"]
    print()
    print(f"{w}-worker transfers / pgbench ceiling, 1,000 wallets      {r1:7.1%}   target >= 60%   {verdict(r1 >= 0.60)}")
    print(f"{w}-worker deposits / {w}-worker transfers (hot account)    {r2:7.1%}   target >= 80%   {verdict(r2 >= 0.80)}")
    print(f"{w}-worker transfers, ~{args.history_large:,} vs ~{args.history:,} entries  {r3:7.1%}   "
          f"(share of the ceiling: {r1:.1%} -> {r4:.1%})   flat: {verdict(r4 >= 0.85 * r1)} "
          "(judged on the share of the ceiling measured alongside, +-15%)")
    print(f"statement (balance at both ends, totals, every row, + newest-first page), ms p50/p99: "
          f"{statements_small['p50']:.2f}/{statements_small['p99']:.2f} at ~{args.history:,} entries, "
          f"{statements_large['p50']:.2f}/{statements_large['p99']:.2f} at ~{args.history_large:,} "
          f"({statements_small['rows']:.0f} and {statements_large['rows']:.0f} rows each); {partition_summary()}")
    print(f"round trips per posting: transfer {trips} ({stmts} statements + BEGIN + COMMIT), deposit {d_trips} "
          f"({d_stmts} statements + BEGIN + COMMIT); the pgbench script: 10")
    for sql in statements:
        print(f"    {sql}...")

    def us(value: float | None) -> str:
        return "   n/a" if value is None else f"{value * 1e6:6.0f}"

    o, p = costs["ours"], costs["pgbench"]
    print("CPU per transfer, one client alone (us):      client  server   total   wall")
    for label, c in (("ledger_post (Python, Django, psycopg)", o), ("pgbench script (C client)", p)):
        total = None if c["server"] is None else c["client"] + c["server"]
        print(f"    {label:<38} {us(c['client'])}  {us(c['server'])}  {us(total)}  {us(c['wall'])}")
    if o["server"] is not None and p["server"] is not None:
        print(f"    => with clients and server sharing {os.cpu_count()} cores, CPU alone caps ledger_post at "
              f"~{(p['client'] + p['server']) / (o['client'] + o['server']):.0%} of the ceiling")

    if args.profile:
        print("\nprofile:")
        print(profile(ids, "transfer", 2000))

    t0 = time.monotonic()
    breaches = ledger_check()
    print(f"\nledger_check over {entry_count():,} entries ({time.monotonic() - t0:.1f} s): "
          + ("CLEAN - every invariant holds" if not breaches else f"{len(breaches)} BREACH(ES)"))
    for breach in breaches[:20]:
        print(f"    BREACH: {breach}")
    print(f"total {time.monotonic() - t_start:.0f} s")
    return 1 if breaches else 0


def _shards() -> int:
    from ledger.models import hot_account_shards

    return hot_account_shards()


if __name__ == "__main__":
    sys.exit(main())
