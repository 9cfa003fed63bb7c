#!/usr/bin/env python
"""CPU of one money request, in this process, one at a time (a developer's loop, not the benchmark).

    .venv/bin/python bench/request_cpu.py [--kind transfer|deposit|org] [--requests 2000] [--profile]

Seeds a throwaway PostgreSQL database (`coffer_reqcpu_<pid>`, dropped at the end) with 64 users and
an organization, then sends `--requests` requests of one kind through Django's full request stack
(`django.test.Client`: the same middleware, DRF view, idempotency, pipeline and engine gunicorn runs;
only the HTTP parsing of gunicorn is missing) with settings as `bench/api_bench.py` runs gunicorn.
Prints the Python CPU of this process and the CPU of its PostgreSQL backend (from /proc) per
request, and with `--profile` the top functions of a cProfile (cumulative and own time).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_bench import APP_NAME, Server, analyze, bench_url, drop_database, seed_users, server_env  # noqa: E402
from ledger_bench import _proc_cpu, grow_history, recreate_database, seed_wallets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def scratch_django(database_url: str, redis_url: str, prefix: str):
    """Django set up in this process on a throwaway database (`<prefix>_<pid>`), migrated, with
    the settings gunicorn runs with in bench/api_bench.py; the database is dropped on the way out.
    Yields its URL."""
    url = bench_url(database_url, f"{prefix}_{os.getpid()}")
    recreate_database(url)
    os.environ.update(server_env(url, redis_url))
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        cache.clear()
        yield url
    finally:
        connection.close()
        drop_database(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--kind", choices=("transfer", "deposit", "org"), default="transfer")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--history", type=int, default=100_000,
                        help="entries of past transfers among the organization's wallets before the statistics are taken "
                             "(plans made on a ledger of a few hundred rows scan what has since grown)")
    parser.add_argument("--statements", action="store_true", help="print one request's SQL with each statement's time")
    parser.add_argument("--explain", metavar="TEXT",
                        help="with --statements: EXPLAIN (ANALYZE, BUFFERS) the last statement whose SQL contains TEXT")
    parser.add_argument("--callers", metavar="REGEX", help="with --profile: also print the callers of the functions matching REGEX")
    parser.add_argument("--plans", action="store_true",
                        help="print the connection's prepared statements with their generic and custom plan counts")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--gunicorn", action="store_true",
                        help="also send the requests over HTTP to one gunicorn sync worker, and print its CPU and its backend's")
    args = parser.parse_args(argv)

    with scratch_django(args.database_url, args.redis_url, "coffer_reqcpu") as url:
        from django.db import connection
        from django.test import Client

        users = seed_users(args.users)
        org_wallets = seed_wallets(64)
        from accounts.models import Organization
        from accounts.orgs.services import api_key_create

        org = Organization.objects.get(slug="ledger-bench")
        _, secret = api_key_create(organization=org, name="reqcpu", scopes=["read", "ledger:write"])
        client = Client()

        def build(i: int) -> tuple[str, dict, dict]:
            a, b = users[(i * 7919) % len(users)], users[(i * 7919 + 1) % len(users)]
            if args.kind == "transfer":
                body = {"source_wallet_id": a["wallet"], "destination_wallet_id": b["wallet"], "amount": "0.01", "currency": "USD"}
                path, headers = "/api/v1/transfers", {"HTTP_AUTHORIZATION": f"Bearer {a['token']}"}
            elif args.kind == "deposit":
                body = {"wallet_id": a["wallet"], "amount": "0.01", "source": "card"}
                path, headers = "/api/v1/deposits", {"HTTP_AUTHORIZATION": f"Bearer {a['token']}"}
            else:
                s, d = org_wallets[i % 64], org_wallets[(i + 1) % 64]
                body = {"reference": f"reqcpu-{i}-{time.time_ns()}",
                        "operations": [{"type": "transfer", "source_wallet_id": s, "destination_wallet_id": d, "amount": "0.01"}]}
                path, headers = "/api/v1/transactions", {"HTTP_X_API_KEY": secret}
            return path, body, headers

        def request(i: int):
            path, body, headers = build(i)
            response = client.post(path, data=json.dumps(body), content_type="application/json",
                                   HTTP_IDEMPOTENCY_KEY=f"reqcpu-{i}-{time.time_ns()}", **headers)
            if response.status_code >= 300:
                sys.exit(f"request_cpu: {args.kind} failed: {response.status_code} {response.content[:300]!r}")

        for i in range(200):  # warm per-process caches
            request(i)
        grow_history(org_wallets, args.history, org.pk)
        analyze(url)  # statistics, as api_bench takes before every row: plans made on empty tables measure nothing
        if args.statements:

            from collections import defaultdict

            times: dict[int, list[float]] = defaultdict(list)
            sqls: dict[int, str] = {}
            explained: list = []

            def timed(execute, sql, params, many, context):
                if args.explain and args.explain in sql:
                    explained[:] = [sql, params]
                start = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    index = len(current)
                    current.append(sql)
                    times[index].append(time.perf_counter() - start)
                    sqls[index] = sql

            for i in range(200, 400):
                current: list[str] = []
                with connection.execute_wrapper(timed):
                    request(i)
            for index in sorted(times):
                print(f"{1000 * sum(times[index]) / len(times[index]):7.3f} ms  {sqls[index][:args.width]}")
            if explained:
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + explained[0], explained[1])
                    print("\n".join(row[0] for row in cursor.fetchall()))
        connection.ensure_connection()
        backend = connection.cursor().connection.info.backend_pid
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU time: waits on the backend do not count
        py0, pg0, wall0 = time.process_time(), _proc_cpu(backend), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(args.requests):
            request(i)
        if profiler:
            profiler.disable()
        py1, pg1, wall1 = time.process_time(), _proc_cpu(backend), time.perf_counter()
        n = args.requests
        print(f"{args.kind}: {n} requests, python {1000 * (py1 - py0) / n:.2f} ms, "
              f"backend {1000 * (pg1 - pg0) / n:.2f} ms, wall {1000 * (wall1 - wall0) / n:.2f} ms per request"
              + (" (profiled: python CPU inflated)" if profiler else ""))
        if profiler:
            for order in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
                print(out.getvalue())
            if args.callers:
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_callers(args.callers)
                print(out.getvalue())
        if args.plans:
            with connection.cursor() as cursor:
                cursor.execute("SELECT generic_plans, custom_plans, left(regexp_replace(statement, '\\s+', ' ', 'g'), %s)"
                               " FROM pg_prepared_statements ORDER BY custom_plans DESC", [args.width])
                print("prepared statements of this connection: generic plans, custom plans (each custom plan is planned again)")
                for generic, custom, sql in cursor.fetchall():
                    print(f"{generic:8} {custom:8}  {sql}")
        if args.gunicorn:
            over_http(args, url, build)
    return 0


def over_http(args, url: str, build) -> None:
    """The same requests over HTTP to one gunicorn sync worker: its CPU and its backend's per request."""
    import http.client
    import tempfile

    import psycopg

    server = Server(url, 1, args.redis_url, Path(tempfile.mkstemp(suffix=".log")[1]))
    server.start()
    try:
        def send(i: int) -> None:
            path, body, headers = build(i)
            http_headers = {"Content-Type": "application/json", "Idempotency-Key": f"http-{i}-{time.time_ns()}"}
            for name, value in headers.items():
                http_headers[name.removeprefix("HTTP_").replace("_", "-").title()] = value
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            conn.request("POST", path, body=json.dumps(body), headers=http_headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
            if response.status >= 300:
                sys.exit(f"request_cpu: over HTTP {response.status} {payload[:300]!r}")

        for i in range(200):
            send(i)
        with psycopg.connect(url, autocommit=True) as conn:
            backends = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])]
        pids = server.worker_pids() + [server.proc.pid]
        cpu0 = sum(_proc_cpu(p) or 0 for p in pids), sum(_proc_cpu(p) or 0 for p in backends)
        wall0 = time.perf_counter()
        for i in range(args.requests):
            send(i)
        wall1 = time.perf_counter()
        cpu1 = sum(_proc_cpu(p) or 0 for p in pids), sum(_proc_cpu(p) or 0 for p in backends)
        n = args.requests
        with psycopg.connect(url, autocommit=True) as conn:
            after = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])]
        if sorted(after) != sorted(backends):
            print(f"(gunicorn's backends changed during the run: {backends} -> {after}: connections were reopened)")
        print(f"{args.kind} over HTTP (1 gunicorn sync worker, {len(backends)} backend): gunicorn "
              f"{1000 * (cpu1[0] - cpu0[0]) / n:.2f} ms, backend {1000 * (cpu1[1] - cpu0[1]) / n:.2f} ms, "
              f"wall {1000 * (wall1 - wall0) / n:.2f} ms per request")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
