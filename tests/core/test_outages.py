"""Outages answered honestly (issue 12 item 14): with the database, the cache or the broker out of
reach, the API answers 503 SERVICE_UNAVAILABLE with Retry-After (never a 500), logs one line per
failure (the traceback only at debug level), and a money request retried with the same
Idempotency-Key after the outage does the right thing: it runs once, then replays.

The database outage is real: the test starts its own PostgreSQL cluster (initdb / pg_ctl from
/usr/lib/postgresql/*/bin, a temporary directory, a free port), serves the platform from it with
gunicorn, and stops and restarts that cluster under the running server."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.core.cache import caches
from django.test import override_settings
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

ROOT = Path(__file__).resolve().parents[2]
PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.bin = Path(PG_BINS[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="coffer-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/coffer"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), *args]),
                       check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        self.start()
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qc", "CREATE DATABASE coffer"],
                       check=True, capture_output=True, timeout=30)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.dir / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self._ctl("-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def platform_on_its_own_postgres(tmp_path):
    if not PG_BINS or not shutil.which("psql"):
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
    cluster = ThrowawayPostgres()
    server = None
    log = tmp_path / "web.log"
    try:
        cluster.init()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": cluster.url,
               "CELERY_BROKER_URL": "memory://", "LOG_LEVEL": "INFO", "CACHE_KEY_PREFIX": f"outage-{uuid.uuid4().hex[:8]}",
               "DB_CONN_MAX_AGE": "60"}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "2", "--timeout", "60"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield cluster, base, log
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        cluster.destroy()


def _envelope_503(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE", body
    assert body["error"]["details"]["service"] == service
    assert set(body["error"]) == {"code", "message", "details"}


@pytest.mark.slow
def test_a_stopped_database_is_a_503_and_a_retry_with_the_same_key_runs_once(platform_on_its_own_postgres):
    cluster, base, log = platform_on_its_own_postgres
    http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
    email, password = f"outage-{uuid.uuid4().hex[:8]}@example.com", "a-long-enough-passphrase-42"
    assert http.post("/auth/signup", json={"first_name": "O", "last_name": "U", "email": email, "password": password}).status_code == 201
    token = http.post("/auth/token", json={"username": email, "password": password}).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    wallet = http.post("/wallets", json={"currency": "USD"}).json()
    deposit = {"wallet_id": wallet["id"], "amount": "10.00"}
    assert http.post("/deposits", json=deposit, headers={"Idempotency-Key": "before"}).status_code == 201

    cluster.stop()
    logged_before = log.read_text()
    for _ in range(2):
        _envelope_503(http.post("/deposits", json=deposit, headers={"Idempotency-Key": "during"}), "database")
    _envelope_503(http.get(f"/wallets/{wallet['id']}"), "database")
    _envelope_503(httpx.post(f"{base}/api/v1/auth/token", json={"username": email, "password": password}), "database")
    time.sleep(0.5)
    during = log.read_text()[len(logged_before):]
    assert "Traceback" not in during, during
    lines = [line for line in during.splitlines() if "POST /api/v1/deposits" in line and "unavailable" in line]
    assert len(lines) == 2, during  # one line per failed request
    assert all("WARNING" in line and "database unavailable" in line for line in lines)
    assert "Service Unavailable:" not in during  # django.request does not add a second line

    cluster.start()
    first = http.post("/deposits", json=deposit, headers={"Idempotency-Key": "during"})
    assert first.status_code == 201, first.text
    again = http.post("/deposits", json=deposit, headers={"Idempotency-Key": "during"})
    assert again.status_code == 201 and again.headers.get("Idempotency-Replayed") == "true"
    assert again.json() == first.json()
    assert http.get(f"/wallets/{wallet['id']}").json()["balance"] == "20.00"  # "before" and "during", once each


@pytest.mark.slow
def test_killed_backends_between_requests_are_replaced_without_an_error(platform_on_its_own_postgres):
    cluster, base, _ = platform_on_its_own_postgres
    assert httpx.get(f"{base}/api/v1/transactions", timeout=10).status_code == 401  # a request that opened a connection
    httpx.post(f"{base}/api/v1/auth/token", json={"username": "nobody@example.com", "password": "x"}, timeout=10)
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", "coffer", "-qc",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'coffer' AND pid <> pg_backend_pid()"],
                   check=True, capture_output=True, timeout=30)
    response = httpx.post(f"{base}/api/v1/auth/token", json={"username": "nobody@example.com", "password": "x"}, timeout=10)
    assert response.status_code in (400, 401), response.text  # a real answer, not a 500 or 503


# --- The cache and the broker (in process) ----------------------------------------------------------


class _BrokerPublishApi(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        from config.celery import app

        with app.connection_for_write(url="amqp://guest:guest@127.0.0.1:1//", connect_timeout=1) as conn:
            app.send_task("core.tasks.sweep_outbox", connection=conn, retry=False)
        return Response({"sent": True})


urlpatterns = [path("api/v1/test/publish", _BrokerPublishApi.as_view()), path("", include("config.urls"))]


@pytest.mark.django_db
def test_an_unreachable_cache_is_a_503(caplog):
    dead_redis = {"default": {
        "BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{_free_port()}/0",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }}
    with override_settings(CACHES=dead_redis):
        try:
            response = APIClient().post("/api/v1/auth/token", {"username": "a@example.com", "password": "x"}, format="json")
        finally:
            caches["default"].close()
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE" and response.json()["error"]["details"]["service"] == "cache"
    # One line for the failed request (the rate limiter, which lets requests through without the
    # cache, says so in its own lines); no traceback above debug level.
    unavailable = [r for r in caplog.records if r.name == "coffer.api" and "unavailable" in r.getMessage()]
    assert len(unavailable) == 1
    assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]


@override_settings(ROOT_URLCONF=__name__)
def test_an_unreachable_broker_is_a_503():
    response = APIClient().post("/api/v1/test/publish")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["details"]["service"] == "broker"


@pytest.mark.django_db
def test_a_deadlock_is_not_reported_as_an_outage():
    from django.db import OperationalError
    from psycopg.errors import DeadlockDetected

    from core.outages import unavailable_service

    try:
        try:
            raise DeadlockDetected("deadlock detected")
        except DeadlockDetected as cause:
            raise OperationalError("deadlock detected") from cause
    except OperationalError as exc:
        assert unavailable_service(exc) is None
