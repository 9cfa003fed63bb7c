#!/usr/bin/env python
"""Python CPU of each part of one API transfer, measured in one process (a developer's loop).

    .venv/bin/python bench/request_parts.py [--rounds 5] [--requests 200]

bench/request_cpu.py gives a whole request's CPU and a cProfile (which inflates call-heavy code);
this times the parts on their own, interleaved in rounds so that load on a shared machine hits
them alike, and prints each part's median CPU per call beside the whole request:

- the whole request (`django.test.Client`: middleware, DRF, idempotency, pipeline, engine);
- the movement alone (`transfer_create` in a transaction: the money path and the engine) and
  with its response rendered;
- the idempotency layer's own statements (claim, record with a gathered audit event, commit);
- JWT authentication with the cached user, the money throttle, the input serializer;
- the request layer's floor (`GET /health`) and an unresolved `/api/` path.

Seeds a throwaway database (`coffer_parts_<pid>`, dropped at the end) with request_cpu's `scratch_django`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_bench import seed_users
from request_cpu import scratch_django


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="calls of each part per round")
    args = parser.parse_args(argv)

    with scratch_django(args.database_url, args.redis_url, "coffer_parts"):
        from django.db import transaction
        from django.test import Client
        from rest_framework.renderers import JSONRenderer
        from rest_framework.request import Request
        from rest_framework.test import APIRequestFactory

        users = seed_users(64)
        from accounts.identity.authentication import UserJWTAuthentication
        from accounts.identity.throttles import MoneyThrottle
        from compliance.audit.record import audit_event
        from core.db import Insert, gathered_inserts, insert_later
        from core.idempotency import _claim, idempotency_record_store
        from wallets.movements.transfers import transfer_create
        from wallets.serializers import TransferInput, transaction_representation

        client, factory, auth = Client(), APIRequestFactory(), UserJWTAuthentication()
        counter = [0]

        def pair():
            counter[0] += 1
            i = counter[0]
            return users[(i * 7919) % len(users)], users[(i * 7919 + 1) % len(users)]

        def whole():
            a, b = pair()
            body = {"source_wallet_id": a["wallet"], "destination_wallet_id": b["wallet"], "amount": "0.01", "currency": "USD"}
            response = client.post("/api/v1/transfers", data=json.dumps(body), content_type="application/json",
                                   HTTP_IDEMPOTENCY_KEY=f"parts-{time.time_ns()}", HTTP_AUTHORIZATION=f"Bearer {a['token']}")
            if response.status_code != 201:
                sys.exit(f"request_parts: transfer failed: {response.status_code} {response.content[:300]!r}")

        def movement(render: bool = False):
            a, b = pair()
            with transaction.atomic():
                tx = transfer_create(user=a["user"], source_wallet_id=a["wallet"], destination_wallet_id=b["wallet"],
                                     amount="0.01", currency="USD")
                if render:
                    JSONRenderer().render(transaction_representation(transaction=tx, viewer=a["user"]))

        def idempotency():
            a, _ = pair()
            key, scope = f"parts-{time.time_ns()}", f"user:{a['user'].pk}"
            with transaction.atomic(durable=True), gathered_inserts() as gathered:
                _claim(scope=scope, endpoint="transfers.create", key=key)
                insert_later([Insert(audit_event(actor=a["user"], action="transfer.created", data={"transaction_id": 1}))])
                idempotency_record_store(
                    scope=scope, endpoint="transfers.create", key=key, fingerprint="0" * 64, method="POST", path="/api/v1/transfers",
                    status=201, body="{}", headers={}, with_rows=gathered.take(),
                )

        def authenticate():
            a, _ = pair()
            auth.authenticate(Request(factory.post("/api/v1/transfers", HTTP_AUTHORIZATION=f"Bearer {a['token']}")))

        def throttle():
            a, _ = pair()
            request = Request(factory.post("/api/v1/transfers"))
            request.user = a["user"]
            MoneyThrottle().allow_request(request, None)

        def serializer():
            TransferInput(data={"source_wallet_id": 5, "destination_wallet_id": 7, "amount": "0.01", "currency": "USD"}).is_valid(raise_exception=True)

        parts = {
            "whole request (POST /api/v1/transfers)": whole,
            "movement: transfer_create (money path + engine)": movement,
            "movement + response rendered": lambda: movement(render=True),
            "idempotency: claim, record + audit event, commit": idempotency,
            "JWT authentication (cached user)": authenticate,
            "money throttle (one Redis script)": throttle,
            "input serializer (TransferInput)": serializer,
            "request floor: GET /health": lambda: client.get("/health"),
            "unresolved /api/ path (404)": lambda: client.get("/api/v1/no-such-path"),
        }
        import logging

        logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404s
        for part in parts.values():  # warm per-process caches
            for _ in range(50):
                part()
        cpu: dict[str, list[float]] = {name: [] for name in parts}
        for _ in range(args.rounds):
            for name, part in parts.items():
                start = time.process_time()
                for _ in range(args.requests):
                    part()
                cpu[name].append((time.process_time() - start) / args.requests * 1e6)
        print(f"Python CPU per call, median of {args.rounds} rounds of {args.requests} (this process only; the PostgreSQL "
              "backend's CPU is not in these figures: bench/request_cpu.py)")
        for name, values in cpu.items():
            print(f"{statistics.median(values):8.0f} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
