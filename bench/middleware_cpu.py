#!/usr/bin/env python
"""CPU that the request middleware of issue 15 (core.requestid: X-Request-Id, RateLimit and
Idempotency-Retention headers, HTTP metrics) adds to one money request, A/B in one process.

    .venv/bin/python bench/middleware_cpu.py [--requests 1000] [--rounds 5]

bench/request_cpu.py measures a whole request, but on a shared machine two runs differ by more
than the middleware costs. Here one process seeds a throwaway database (`coffer_mwcpu_<pid>`,
dropped at the end) as request_cpu does, and sends transfers through two `django.test.Client`s
alternately in rounds: one with settings.MIDDLEWARE as configured, one without
`core.requestid.RequestMiddleware`. Load on the machine hits both alike; the difference of
their medians is the middleware's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_bench import bench_url, drop_database, seed_users, server_env  # noqa: E402
from ledger_bench import recreate_database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIDDLEWARE = "core.requestid.RequestMiddleware"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--requests", type=int, default=1000, help="transfers per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=1000,
                        help="senders, taken in turn (default 1000: few enough transfers each that the velocity rule never holds one)")
    args = parser.parse_args(argv)

    url = bench_url(args.database_url, f"coffer_mwcpu_{os.getpid()}")
    recreate_database(url)
    os.environ.update(server_env(url, args.redis_url))
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client, override_settings

    try:
        call_command("migrate", verbosity=0)
        cache.clear()
        users = seed_users(args.users)
        with_mw = Client()
        with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != MIDDLEWARE]):
            without_mw = Client()
            without_mw.handler.load_middleware()  # built now, without it
        with_mw.handler.load_middleware()
        counter = iter(range(10**9))

        def transfer(client) -> None:
            i = next(counter)
            a, b = users[(i * 7919) % len(users)], users[(i * 7919 + 1) % len(users)]
            body = {"source_wallet_id": a["wallet"], "destination_wallet_id": b["wallet"], "amount": "0.01", "currency": "USD"}
            response = client.post("/api/v1/transfers", data=json.dumps(body), content_type="application/json",
                                   HTTP_IDEMPOTENCY_KEY=f"mw-{i}-{time.time_ns()}", HTTP_AUTHORIZATION=f"Bearer {a['token']}")
            if response.status_code != 201:
                sys.exit(f"middleware_cpu: transfer failed: {response.status_code} {response.content[:300]!r}")

        for client in (with_mw, without_mw):  # warm both
            for _ in range(200):
                transfer(client)
        assert "X-Request-Id" not in without_mw.get("/health") and "X-Request-Id" in with_mw.get("/health")
        results: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(args.rounds):
            for name, client in (("without", without_mw), ("with", with_mw)):
                start = time.process_time()
                for _ in range(args.requests):
                    transfer(client)
                results[name].append((time.process_time() - start) / args.requests * 1000)
        w, wo = statistics.median(results["with"]), statistics.median(results["without"])
        print(f"python CPU per transfer, median of {args.rounds} rounds of {args.requests}: "
              f"with {MIDDLEWARE} {w:.3f} ms, without {wo:.3f} ms, difference {(w - wo) * 1000:+.0f} us")
        paired = [a - b for a, b in zip(results["with"], results["without"], strict=True)]
        spread = statistics.stdev(paired) if len(paired) > 1 else 0.0
        print(f"  paired difference per round (with - without): mean {statistics.mean(paired) * 1000:+.0f} us, "
              f"standard deviation {spread * 1000:.0f} us (the machine's noise)")
        print("  rounds with:    " + ", ".join(f"{x:.3f}" for x in results["with"]))
        print("  rounds without: " + ", ".join(f"{x:.3f}" for x in results["without"]))
    finally:
        connections.close_all()
        cache.clear()
        drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
