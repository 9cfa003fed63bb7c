"""PgBouncer in transaction pooling in front of PostgreSQL (issue 15 item 1), on a real PgBouncer:
the platform's advisory locks are transaction-scoped (a session lock would outlive its client on
a pooled server connection), prepared statements and server-side cursors are off behind it,
declared or detected, and the app serves concurrent money requests through it."""

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from accounts.identity.tokens import token_pair_for_user
from ledger.models import Wallet
from tests.scaleout.servers import ROOT, Gunicorn, app_env
from tests.factories.wallets import open_wallet, person

pytestmark = [pytest.mark.postgres]

# A session-scoped advisory lock call: pg_advisory_lock, pg_try_advisory_lock, their _shared
# forms, and the unlocks that go with them. The transaction-scoped ones (`_xact_`) do not match.
SESSION_LOCK = re.compile(r"pg_(?:try_)?advisory_(?:lock|unlock)(?:_shared|_all)?\s*\(", re.IGNORECASE)
SCANNED = (".py", ".sql", ".sh")
SKIPPED_DIRS = {".venv", "node_modules", ".git", "tests", "__pycache__", "var", "staticfiles"}


def _source_files():
    for path in ROOT.rglob("*"):
        if path.suffix in SCANNED and not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts) and path.is_file():
            yield path


def test_the_platform_takes_no_session_scoped_advisory_lock():
    """Under transaction pooling a session lock stays on the server connection after the client
    has gone; every advisory lock of the platform must be `pg_advisory_xact_lock` or
    `pg_try_advisory_xact_lock`. Migrations and scripts included; tests are not the platform."""
    found = []
    scanned = 0
    for path in _source_files():
        scanned += 1
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if SESSION_LOCK.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert scanned > 100, "the scan found no sources: wrong root?"
    assert found == [], "session-scoped advisory locks break under PgBouncer's transaction pooling:\n" + "\n".join(found)
    xact_users = [p for p in _source_files() if "advisory_xact_lock" in p.read_text(errors="replace")]
    assert {p.name for p in xact_users} >= {"idempotency.py", "sequencer.py", "addresses.py"}  # the ones there are


def _lock_free_directly(key: int) -> bool:
    """Whether a direct connection (not through PgBouncer) can take advisory lock `key` now."""
    params = settings.DATABASES["default"]
    with psycopg.connect(host=params["HOST"] or "127.0.0.1", port=params["PORT"] or 5432, user=params["USER"],
                         dbname=params["NAME"], autocommit=True) as direct:
        got = direct.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]
        if got:
            direct.execute("SELECT pg_advisory_unlock(%s)", [key])
        return got


def _terminate_holders(key: int) -> None:
    params = settings.DATABASES["default"]
    with psycopg.connect(host=params["HOST"] or "127.0.0.1", port=params["PORT"] or 5432, user=params["USER"],
                         dbname=params["NAME"], autocommit=True) as direct:
        direct.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s", [key])


@pytest.mark.django_db(transaction=True)
def test_a_session_lock_outlives_its_client_behind_pgbouncer_and_a_transaction_lock_does_not(pgbouncer, test_database_name):
    """Why the rule above: a client that takes a session lock and goes away leaves it held by the
    pooled server connection (the next client of that connection inherits it); the
    transaction-scoped lock the platform uses is gone at COMMIT."""
    key = 0x5CA1E0
    url = pgbouncer.url(test_database_name)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as client:
        client.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        assert not _lock_free_directly(key), "the session lock went with its client: is this really transaction pooling?"
    finally:
        _terminate_holders(key)  # the pooled server connection that kept it; PgBouncer opens another
    deadline = time.monotonic() + 10  # pg_terminate_backend signals; the backend exits a moment later
    while not _lock_free_directly(key):
        assert time.monotonic() < deadline, "the terminated holder kept the lock"
        time.sleep(0.05)

    with psycopg.connect(url, prepare_threshold=None) as client:  # a transaction, as the idempotency claim runs
        assert client.execute("SELECT pg_try_advisory_xact_lock(%s)", [key]).fetchone()[0]
        assert not _lock_free_directly(key)  # held while the transaction runs
        client.commit()
    assert _lock_free_directly(key)


def _settings_in_subprocess(env: dict, code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
from ledger.models import Asset
list(Asset.objects.all()[:1])  # connects
print(json.dumps({"prepared": settings.LEDGER_PREPARED_STATEMENTS,
                  "server_side_cursors": not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False)}))
"""


@pytest.mark.django_db(transaction=True)
def test_prepared_statements_and_server_side_cursors_are_off_behind_pgbouncer_declared_or_detected(pgbouncer, test_database_name):
    params = settings.DATABASES["default"]
    direct = f"postgres://{params['USER']}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{test_database_name}"
    pooled = pgbouncer.url(test_database_name)
    assert _settings_in_subprocess(app_env(direct), _PROBE) == {"prepared": True, "server_side_cursors": True}
    declared = _settings_in_subprocess(app_env(pooled, DATABASE_TRANSACTION_POOLING="true", DATABASE_POOLER_DETECT="false"), _PROBE)
    assert declared == {"prepared": False, "server_side_cursors": False}
    detected = _settings_in_subprocess(app_env(pooled), _PROBE)  # nobody said so: the server port gave it away
    assert detected == {"prepared": False, "server_side_cursors": False}
    undetected = _settings_in_subprocess(app_env(pooled, DATABASE_POOLER_DETECT="false"), _PROBE)
    assert undetected == {"prepared": True, "server_side_cursors": True}  # the detection is what turned them off


@pytest.mark.django_db(transaction=True)
def test_the_app_serves_concurrent_money_requests_through_pgbouncer(pgbouncer, test_database_name):
    """gunicorn (2 workers) through PgBouncer with 4 server connections: 40 transfers from 8
    threads, and 6 racing copies of one idempotent request that must move money once."""
    users = [person(f"pgb-{i}@example.com") for i in range(4)]
    wallets = [open_wallet(u, funded="100.00") for u in users]
    tokens = [token_pair_for_user(user=u)["access_token"] for u in users]
    env = app_env(pgbouncer.url(test_database_name), DATABASE_TRANSACTION_POOLING="true", SECRET_KEY=settings.SECRET_KEY,
                  AUDIT_CHAIN_KEY=settings.AUDIT_CHAIN_KEY, DB_CONN_MAX_AGE="60")
    statuses: list[int] = []
    errors: list[str] = []

    def transfer(i: int, key: str | None = None) -> int:
        a, b = i % 4, (i + 1) % 4
        status, _, body = app.request("POST", "/api/v1/transfers", token=tokens[a], headers={"Idempotency-Key": key or uuid.uuid4().hex},
                                      body={"source_wallet_id": wallets[a].pk, "destination_wallet_id": wallets[b].pk, "amount": "1.00", "currency": "USD"})
        if status >= 500:
            errors.append(body.decode(errors="replace")[:300])
        return status

    with Gunicorn(env, workers=2) as app:
        def worker(n: int) -> None:
            for j in range(5):
                statuses.append(transfer(n * 5 + j))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and statuses.count(201) == 40, (statuses, errors, app.log.read_text()[-3000:])

        racing_key = f"race-{uuid.uuid4().hex}"
        raced: list[int] = []
        racers = [threading.Thread(target=lambda: raced.append(transfer(0, racing_key))) for _ in range(6)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert errors == [], errors
        assert set(raced) <= {201, 409} and 201 in raced, raced  # 409 IDEMPOTENCY_KEY_IN_PROGRESS or the replay
        log = app.log.read_text()
        assert "prepared statement" not in log, log[-3000:]

    balances = {w.pk: Wallet.objects.get(pk=w.pk).balance for w in wallets}
    # 40 transfers of 1.00 around the ring leave every wallet where it was; the raced key moved 1.00 from 0 to 1 once
    assert balances == {wallets[0].pk: Decimal("99.00"), wallets[1].pk: Decimal("101.00"),
                        wallets[2].pk: Decimal("100.00"), wallets[3].pk: Decimal("100.00")}
    assert "transaction" in pgbouncer.admin("SHOW POOLS")


SUBSET = ["tests/core/test_idempotency.py", "tests/wallets/pipeline", "tests/ledger/test_concurrency.py"]
# That test kills "the request's backend" by the pid its connection announced at startup
# (`connection.info.backend_pid`); behind a pooler that is not the server process running the
# request, so it would kill a bystander. The pooled runs identify backends with pg_backend_pid().
SUBSET_EXCEPT = "not test_worker_killed_mid_request_leaves_nothing_and_retry_runs_once"


@pytest.mark.slow
def test_a_subset_of_the_suite_passes_through_pgbouncer(pgbouncer):
    """The idempotency layer, the money path and the ledger's concurrency tests, run by pytest
    in a subprocess whose every connection goes through PgBouncer (DATABASE_TRANSACTION_POOLING).
    Its test database is created through PgBouncer, kept (--reuse-db: PgBouncer's idle server
    connections would refuse DROP DATABASE) and dropped here, directly, WITH (FORCE)."""
    params = settings.DATABASES["default"]
    name = f"scaleout_pgb_{uuid.uuid4().hex[:8]}"
    env = app_env(pgbouncer.url(name), DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_TRANSACTION_POOLING="true",
                  CACHE_KEY_PREFIX=f"scaleout-subset-{name}")
    env.pop("METRICS_TOKEN")
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:xdist", "--reuse-db",
                               "-o", "addopts=", "-k", SUBSET_EXCEPT, *SUBSET], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    finally:
        with psycopg.connect(host=params["HOST"] or "127.0.0.1", port=params["PORT"] or 5432, user=params["USER"],
                             dbname="postgres", autocommit=True) as admin:
            pgbouncer.admin("RECONNECT")
            admin.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 50, tail


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_scripts_start_and_stop_pgbouncer_leaving_nothing():
    """scripts/pgservers.py as a command: prints the URL, serves, and on SIGTERM stops
    PgBouncer and removes its directory."""
    from scripts.pgservers import missing_pgbouncer, port_open

    if missing_pgbouncer():
        pytest.skip(missing_pgbouncer())
    before = set(Path(tempfile.gettempdir()).glob("coffer-pgbouncer-*"))
    proc = subprocess.Popen([sys.executable, "scripts/pgservers.py", "pgbouncer"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline()).group(1))
        assert port_open(port)
        # its own directory: the one whose config listens on that port (another test's PgBouncer may start meanwhile)
        made = {p for p in set(Path(tempfile.gettempdir()).glob("coffer-pgbouncer-*")) - before
                if f"listen_port = {port}\n" in _read(p / "pgbouncer.ini")}
        assert len(made) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not port_open(port)
    assert not any(p.exists() for p in made)


_BEAT_LEADERS = """
import json, django
django.setup()
from core.beat import _PostgresLock
a, b = _PostgresLock(), _PostgresLock()
steps = {"a": a.acquire(), "b_while_a_leads": b.acquire(), "a_alive": a.alive()}
a.release()
steps["b_after_a_left"] = b.acquire()
steps["a_while_b_leads"] = a.acquire()
b.release()
print(json.dumps(steps))
"""


@pytest.mark.django_db(transaction=True)
def test_one_beat_leads_through_pgbouncer_and_another_takes_over(test_database_name):
    """core.beat's leader lock behind PgBouncer with 2 server connections: a session-scoped lock
    would stay on a pooled server connection, where the next client (the standby beat) takes it
    again, re-entrantly, and two beats would lead. The transaction-scoped one pins its own."""
    from scripts.pgservers import PgBouncer, missing_pgbouncer

    if missing_pgbouncer():
        pytest.skip(missing_pgbouncer())
    params = settings.DATABASES["default"]
    with PgBouncer(upstream_host=params["HOST"] or "127.0.0.1", upstream_port=int(params["PORT"] or 5432), pool_size=2) as bouncer:
        steps = _settings_in_subprocess(
            app_env(bouncer.url(test_database_name), DATABASE_TRANSACTION_POOLING="true"), _BEAT_LEADERS)
    assert steps == {"a": True, "b_while_a_leads": False, "a_alive": True, "b_after_a_left": True, "a_while_b_leads": False}
