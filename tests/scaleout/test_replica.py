"""Read routing to a real streaming replica (issue 15 item 2).

A throwaway primary (initdb in a temporary directory) and its hot standby (`pg_basebackup -R`)
on their own ports; gunicorn runs with DATABASE_URL on the primary and DATABASE_REPLICA_URL on
the standby. The standby's replay is paused to make it visibly stale: a lag-tolerant read
(a wallet's statement) of a caller who did not write shows the stale replica, the writer and
every non-tolerant route see the primary, a replica lagging past the bound or stopped mid-run
falls back to the primary, and /metrics counts it."""

import json
import os
import shutil
import tempfile
import threading
import time
import uuid

import pytest

from tests.scaleout.servers import Gunicorn, app_env, sample, seed

pytestmark = [pytest.mark.slow]

MAX_LAG = 6.0
READ_YOUR_WRITES = 3


@pytest.fixture(scope="module")
def replica_app(primary_and_replica):
    primary, replica = primary_and_replica
    primary.psql("CREATE DATABASE coffer")
    users = seed(primary.url("coffer"), 3)
    replica.wait_replayed(primary)
    counters = tempfile.mkdtemp(prefix="coffer-scaleout-metrics-")  # the workers' counters, summed (multiprocess mode)
    env = app_env(
        primary.url("coffer"), DATABASE_REPLICA_URL=replica.url("coffer"), REPLICA_CHECK_SECONDS="0", PROMETHEUS_MULTIPROC_DIR=counters,
        REPLICA_MAX_LAG_SECONDS=str(MAX_LAG), READ_YOUR_WRITES_SECONDS=str(READ_YOUR_WRITES), REPLICA_CONNECT_TIMEOUT="2",
    )
    # Two processes share the read-your-writes marker through Redis; without it, one process.
    try:
        with Gunicorn(env, workers=2 if os.environ.get("REDIS_URL") else 1) as app:
            yield app, primary, replica, users
    finally:
        shutil.rmtree(counters, ignore_errors=True)


def _statement_count(app, user) -> int:
    status, _, body = app.request("GET", f"/api/v1/wallets/{user['wallet']}/entries", token=user["token"])
    assert status == 200, body
    return json.loads(body)["count"]


def _balance(app, user) -> str:
    status, _, body = app.request("GET", f"/api/v1/wallets/{user['wallet']}", token=user["token"])
    assert status == 200, body
    return json.loads(body)["balance"]


def _transfer(app, source, destination, amount="1.00"):
    status, _, body = app.request("POST", "/api/v1/transfers", token=source["token"], headers={"Idempotency-Key": uuid.uuid4().hex},
                                  body={"source_wallet_id": source["wallet"], "destination_wallet_id": destination["wallet"],
                                        "amount": amount, "currency": "USD"})
    assert status == 201, body


def _fresh_commit(primary) -> None:
    """A commit on the primary and the replica caught up with it: its lag clock starts at ~0."""
    primary.psql("SELECT txid_current()", "coffer")


def test_tolerant_reads_use_the_replica_and_writers_read_their_writes(replica_app):
    app, primary, replica, (a, b, _) = replica_app
    _fresh_commit(primary)
    replica.wait_replayed(primary)
    before = app.metrics()
    a_before, b_before = _statement_count(app, a), _statement_count(app, b)
    b_balance = _balance(app, b)
    replica.psql("SELECT pg_wal_replay_pause()")
    try:
        _transfer(app, a, b)
        assert _statement_count(app, a) == a_before + 1  # the writer: read-your-writes, from the primary
        assert _statement_count(app, b) == b_before  # lag-tolerant, from the paused replica: not there yet
        assert _balance(app, b) != b_balance  # the wallet itself is not a tolerant route: the primary
        middle = app.metrics()
        assert sample(middle, "coffer_replica_routed_total", target="replica") >= sample(before, "coffer_replica_routed_total", target="replica") + 3
        assert sample(middle, "coffer_replica_routed_total", target="primary", reason="recent_write") >= 1

        # The replica falls further behind; past the bound, b's reads go to the primary.
        deadline = time.monotonic() + MAX_LAG + 20
        while _statement_count(app, b) == b_before:
            assert time.monotonic() < deadline, "never fell back to the primary"
            time.sleep(0.3)
        after = app.metrics()
        assert sample(after, "coffer_replica_fallbacks_total", reason="lag") >= 1
        assert sample(after, "coffer_replica_lag_seconds") > MAX_LAG
    finally:
        replica.psql("SELECT pg_wal_replay_resume()")
    replica.wait_replayed(primary)
    routed = sample(app.metrics(), "coffer_replica_routed_total", target="replica")
    assert _statement_count(app, b) == b_before + 1  # caught up: the replica again, now current
    assert sample(app.metrics(), "coffer_replica_routed_total", target="replica") == routed + 1
    time.sleep(READ_YOUR_WRITES + 0.5)  # the writer's marker expires: its tolerant reads go to the replica too
    routed = sample(app.metrics(), "coffer_replica_routed_total", target="replica")
    assert _statement_count(app, a) == a_before + 1
    assert sample(app.metrics(), "coffer_replica_routed_total", target="replica") == routed + 1


def test_a_replica_stopped_mid_run_falls_back_to_the_primary(replica_app):
    app, primary, replica, (a, _, c) = replica_app
    replica.wait_replayed(primary)
    start = _statement_count(app, c)
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            status, _, _ = app.request("GET", f"/api/v1/wallets/{c['wallet']}/entries", token=c["token"])
            statuses.append((time.monotonic(), status))
            time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.5)
        replica.stop_server("fast")
        stopped_at = time.monotonic()
        _transfer(app, a, c)  # written after the replica went away: only the primary has it
        time.sleep(1.0)
        stop.set()
        thread.join(timeout=30)
        assert _statement_count(app, c) == start + 1
        failures = [s for _, s in statuses if s != 200]
        after_stop = [s for t, s in statuses if t > stopped_at + 0.5]
        assert len(failures) <= 1, statuses  # at most the one request caught between its check and its query
        assert after_stop and set(after_stop) == {200}, statuses
        samples = app.metrics()
        assert sample(samples, "coffer_replica_fallbacks_total", reason="down") >= 1
        assert sample(samples, "coffer_replica_up") == 0
    finally:
        stop.set()
        thread.join(timeout=30)
        if not replica.running():
            replica.start()
    replica.wait_replayed(primary)
    routed = sample(app.metrics(), "coffer_replica_routed_total", target="replica")
    assert _statement_count(app, c) == start + 1  # back on the replica, which streamed what it missed
    assert sample(app.metrics(), "coffer_replica_routed_total", target="replica") == routed + 1
