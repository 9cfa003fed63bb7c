"""The production topology, run on this machine (issue 15 item 6; docs/deploy.md "Topology").

A throwaway primary and its streaming replica (`pg_basebackup -R`), PgBouncer (transaction
pooling) in front of the primary, two gunicorn instances on their own ports (DATABASE_URL through
PgBouncer, DATABASE_REPLICA_URL on the replica), two Celery worker pools by queue (money + chain;
webhooks + email + maintenance), each with its metrics exporter on its own port, and beat, all
sharing the test Redis database as broker under a queue prefix of their own. A short mixed load
goes across both web instances: customer transfers, organization ledger transactions, pay
orders paid on the sandbox chain and settled, webhooks to a local receiver, and a payout. It
ends with `check_ledger` clean, every webhook delivered (and verified by the receiver), every
payout completed and the outbox empty."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from itertools import cycle

import pytest

from scripts.pgservers import PgBouncer, free_port
from tests.scaleout.servers import ROOT, Celery, Gunicorn, Merchant, WebhookReceiver, app_env, sample, seed_platform, wait_until
from tests.scaleout.test_queues import broker_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

USERS = 4


def _metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_two_web_instances_and_two_worker_pools_behind_pgbouncer_with_a_replica(primary_and_replica):
    primary, replica = primary_and_replica
    broker = broker_url()
    primary.psql("CREATE DATABASE coffer")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    counters = tempfile.mkdtemp(prefix="coffer-scaleout-metrics-")
    beat_dir = tempfile.mkdtemp(prefix="coffer-scaleout-beat-")
    with WebhookReceiver() as receiver, PgBouncer(upstream_port=primary.port, pool_size=6) as bouncer:
        data = seed_platform(primary.url("coffer"), USERS, receiver.url("/merchant"), WEBHOOK_ALLOW_PRIVATE_URLS="1")
        receiver.secrets = {"/merchant": data["merchant"]["webhook_secret"]}
        replica.wait_replayed(primary)
        env = app_env(
            bouncer.url("coffer"), DATABASE_TRANSACTION_POOLING="true", DATABASE_REPLICA_URL=replica.url("coffer"),
            REPLICA_CHECK_SECONDS="0", READ_YOUR_WRITES_SECONDS="1", CELERY_BROKER_URL=broker, CELERY_QUEUE_PREFIX=prefix,
            WEBHOOK_ALLOW_PRIVATE_URLS="1", PAYORDER_POLL_CONFIRMATIONS_SECONDS="1", PAYOUT_SANDBOX_SETTLE_SECONDS="1",
            PROMETHEUS_MULTIPROC_DIR=counters,
        )
        pool_ports = [free_port(), free_port()]
        # not even empty: prometheus-client takes an empty PROMETHEUS_MULTIPROC_DIR as the working directory
        single = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        pools = [
            # a threads pool is one process: its own registry, no multiprocess directory
            Celery.pool({**single, "METRICS_WORKER_PORT": str(pool_ports[0])}, ["money", "chain"], concurrency=2, name="money-chain"),
            Celery.pool({**single, "METRICS_WORKER_PORT": str(pool_ports[1])}, ["webhooks", "email", "maintenance"], concurrency=2,
                        name="webhooks-maintenance"),
            Celery.beat(env, beat_dir),
        ]
        webs = [Gunicorn(env, workers=2), Gunicorn(env, workers=2)]
        try:
            for process in [*webs, *pools]:
                process.start()
            assert webs[0].port != webs[1].port
            apps = cycle(webs)
            merchant, users = Merchant(data["merchant"]["api_key"]), data["users"]

            # Customer transfers, round the ring of users, alternating web instances.
            for i in range(12):
                source, destination = users[i % USERS], users[(i + 1) % USERS]
                status, _, body = next(apps).request(
                    "POST", "/api/v1/transfers", token=source["token"], headers={"Idempotency-Key": uuid.uuid4().hex},
                    body={"source_wallet_id": source["wallet"], "destination_wallet_id": destination["wallet"], "amount": "3.25", "currency": "USD"})
                assert status == 201, body

            # Organization ledger transactions on its own asset.
            merchant.call(next(apps), "POST", "/assets", {"code": "PTS", "name": "Points", "exponent": 0})
            wallets = []
            for n in range(2):
                merchant.call(next(apps), "PUT", f"/customers/c{n}", {"name": f"Customer {n}"}, expect=(200, 201))
                wallets.append(merchant.call(next(apps), "POST", "/wallets", {"customer_external_id": f"c{n}", "currency": "PTS"})["id"])
            for i in range(6):
                merchant.call(next(apps), "POST", "/transactions", {"reference": f"load-{i}", "operations": [
                    {"type": "issue", "wallet_id": wallets[0], "amount": "100"},
                    {"type": "transfer", "source_wallet_id": wallets[0], "destination_wallet_id": wallets[1], "amount": "40"},
                ]})

            # Pay orders paid on the sandbox chain, confirmed by beat's polling, settled on `money`.
            orders = [merchant.paid_order(next(apps)) for _ in range(3)]
            merchant.mine(next(apps), 3)

            # A payout.
            status, _, body = next(apps).request(
                "POST", "/api/v1/withdrawals", token=users[0]["token"], headers={"Idempotency-Key": uuid.uuid4().hex},
                body={"wallet_id": users[0]["wallet"], "amount": "7.00",
                      "destination": {"type": "IBAN", "iban": "DE89370400440532013000", "name": "Scale Out", "country": "DE"}})
            assert status == 202, body
            withdrawal = json.loads(body)["id"]

            for order_id in orders:
                wait_until(lambda: merchant.order(next(apps), order_id)["settlement"], 120, f"pay order {order_id} settled")

            def payout_completed():
                s, _, b = next(apps).request("GET", f"/api/v1/withdrawals/{withdrawal}", token=users[0]["token"])
                return s == 200 and json.loads(b)["payout"]["status"] == "completed"

            wait_until(payout_completed, 120, "the payout completed")

            def outbox_drained():
                return primary.psql("SELECT count(*) FROM core_outboxmessage WHERE status <> 'done'", "coffer") == "0"

            wait_until(outbox_drained, 120, "every outbox message done (webhooks, payouts, settlements)")
            deliveries = primary.psql("SELECT count(*), count(*) FILTER (WHERE status = 'delivered') FROM accounts_webhookdelivery", "coffer")
            total, delivered = (int(x) for x in deliveries.split("|"))
            assert total >= 3 * 4 and delivered == total, deliveries  # each pay order announces at least 4 states
            wait_until(lambda: len(receiver.ids("/merchant")) == total, 30, "the receiver verified every delivery")
            assert receiver.refused == []
            assert primary.psql("SELECT count(*) FROM wallets_payout WHERE status <> 'completed'", "coffer") == "0"

            # The replica served the lag-tolerant reads (statements) of callers who had not just written.
            replica.wait_replayed(primary)
            time.sleep(1.2)  # past READ_YOUR_WRITES_SECONDS
            for app_ in webs:
                status, _, body = app_.request("GET", f"/api/v1/wallets/{users[2]['wallet']}/entries", token=users[2]["token"])
                assert status == 200 and json.loads(body)["count"] >= 1 + 6, body
            assert sample(webs[0].metrics(), "coffer_replica_routed_total", target="replica") >= 2

            # Each worker pool answers on its own metrics port.
            for port in pool_ports:
                assert "coffer_" in _metrics(port)
        finally:
            for process in [*pools, *webs]:
                process.stop()
            logs = "\n".join(f"--- {p.name}\n{p.log.read_text(errors='replace')[-1500:]}" for p in pools)
            for pool in pools:
                pool.log.unlink(missing_ok=True)
            shutil.rmtree(beat_dir, ignore_errors=True)
            shutil.rmtree(counters, ignore_errors=True)

        # The money invariants hold after all of it (through PgBouncer, as the processes ran).
        check = subprocess.run([sys.executable, "manage.py", "check_ledger"], cwd=ROOT, env=single, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:] + logs
        assert "every invariant holds" in check.stdout
