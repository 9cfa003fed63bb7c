"""Processes the scale-out tests run the app in: gunicorn on a free port with its own
environment, and the seeding of a database nobody else manages (tests/scaleout/seed.py).
Throwaway PostgreSQL servers and PgBouncer come from scripts/pgservers.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.pgservers import free_port

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "scaleout-metrics-token-0123456789"


def app_env(database_url: str, **extra: str) -> dict:
    """What a gunicorn or a seeding process of these tests runs with: base settings, DEBUG off,
    the test's Redis under its own key prefix, no broker traffic (an in-memory one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_", "DATABASE_", "COV_"))}
    env.update(dict(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DEBUG="0",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL="memory://",
        CACHE_KEY_PREFIX=f"scaleout-{os.getpid()}-{free_port()}",
        THROTTLE_MONEY="100000/second",
        THROTTLE_AUTH="100000/second",
        JWT_ACCESS_MINUTES="600",
        METRICS_TOKEN=METRICS_TOKEN,
        LOG_LEVEL="WARNING",
    ))
    env.update(extra)
    return env


def seed(database_url: str, users: int, **extra: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "tests.scaleout.seed", str(users)], cwd=ROOT, env=app_env(database_url, **extra),
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"seeding failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Gunicorn:
    def __init__(self, env: dict, workers: int = 2):
        self.env, self.workers = env, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="coffer-scaleout-gunicorn-", suffix=".log")[1])

    def start(self) -> Gunicorn:
        cmd = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application", "--workers", str(self.workers), "--worker-class", "sync",
               "--bind", f"127.0.0.1:{self.port}", "--timeout", "120", "--graceful-timeout", "5", "--error-logfile", "-"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not answer /health within 60 s")

    def request(self, method: str, path: str, *, token: str | None = None, body: dict | None = None,
                headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def metrics(self) -> dict[tuple, float]:
        """Every sample of GET /metrics: {(name, ((label, value), ...)): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        status, _, body = self.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200, body
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def sample(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == val for k, val in labels.items()))


def seed_platform(database_url: str, users: int, merchant_webhook: str, storm_webhook: str | None = None, **extra: str) -> dict:
    """tests/scaleout/seed_platform.py on `database_url`: users, a merchant with its webhook endpoint, a storm org."""
    args = [str(users), merchant_webhook] + ([storm_webhook] if storm_webhook else [])
    done = subprocess.run([sys.executable, "-m", "tests.scaleout.seed_platform", *args], cwd=ROOT, env=app_env(database_url, **extra),
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"seeding failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Celery:
    """A Celery worker pool (`worker -Q <queues>`) or beat, as the run scripts start them, with its own log."""

    def __init__(self, env: dict, args: list[str], name: str):
        self.env, self.args, self.name = env, args, name
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"coffer-scaleout-{name}-", suffix=".log")[1])

    @classmethod
    def pool(cls, env: dict, queues: list[str], *, concurrency: int, name: str) -> Celery:
        prefix = env.get("CELERY_QUEUE_PREFIX", "")
        return cls(env, ["worker", "-Q", ",".join(prefix + q for q in queues), "--pool=threads", f"--concurrency={concurrency}",
                         "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"], name)

    @classmethod
    def beat(cls, env: dict, schedule_dir: str) -> Celery:
        return cls({**env, "CELERY_BEAT_SCHEDULE_FILENAME": str(Path(schedule_dir) / "celerybeat-schedule")}, ["beat", "-l", "INFO"], "beat")

    def start(self) -> Celery:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *self.args], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if self.args[0] == "worker":
            deadline = time.monotonic() + 60
            while " ready." not in self.log.read_text(errors="replace"):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    output = self.log.read_text(errors="replace")[-3000:]
                    self.stop()
                    raise RuntimeError(f"celery {self.name} did not become ready: {output}")
                time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: running tasks finish
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> Celery:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


class WebhookReceiver:
    """A local HTTP receiver of Standard Webhooks: verifies each delivery with the receiver-side
    library against the secrets it was given, records webhook ids by path, and answers requests
    to paths in `slow` after `delay` seconds (a merchant whose server is slow)."""

    def __init__(self, *, slow: tuple[str, ...] = (), delay: float = 0.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from standardwebhooks import Webhook

        self.slow, self.delay = slow, delay
        self.secrets: dict[str, str] = {}  # path -> whsec_...
        self.received: dict[str, list[dict]] = {}
        self.refused: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                if path in receiver.slow:
                    time.sleep(receiver.delay)
                try:
                    event = Webhook(receiver.secrets[path]).verify(body, dict(self.headers))
                except Exception as exc:  # noqa: BLE001 - unsigned, wrong secret or unknown path
                    with receiver._lock:
                        receiver.refused.append(f"{path}: {exc!r}")
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.received.setdefault(path, []).append({"id": self.headers.get("webhook-id"), "event": event})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def ids(self, path: str) -> set[str]:
        with self._lock:
            return {r["id"] for r in self.received.get(path, [])}

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class Merchant:
    """A merchant's API calls (X-API-Key) against one or more gunicorn instances, and a pay order
    paid on the sandbox chain."""

    def __init__(self, api_key: str):
        self.headers = {"X-API-Key": api_key}

    def call(self, app: Gunicorn, method: str, path: str, body: dict | None = None, expect: tuple[int, ...] = (200, 201, 202)) -> dict:
        status, _, raw = app.request(method, "/api/v1" + path, body=body, headers=self.headers)
        assert status in expect, (method, path, status, raw[:2000])
        return json.loads(raw) if raw else {}

    def paid_order(self, app: Gunicorn, amount: str = "10.00") -> str:
        """A SALE pay order paid in ETH on the sandbox chain and submitted (AWAITING_CONFIRMATION); its id."""
        order = self.call(app, "POST", "/pay-orders", {"type": "SALE", "amount": amount, "currency": "USD"})
        quote = self.call(app, "POST", f"/pay-orders/{order['id']}/quote", {"source_currencies": ["ETH"]})["quotes"][0]
        details = self.call(app, "POST", f"/pay-orders/{order['id']}/payment-details", {"quote_id": quote["quote_id"]})
        tx = self.call(app, "POST", "/sandbox/chain/transactions",
                       {"to_address": details["deposit_address"], "amount": details["amount"], "currency": "ETH"})
        processed = self.call(app, "POST", f"/pay-orders/{order['id']}/process", {"tx_hash": tx["tx_hash"]})
        assert processed["status"] == "AWAITING_CONFIRMATION", processed
        return order["id"]

    def mine(self, app: Gunicorn, blocks: int) -> None:
        self.call(app, "POST", "/sandbox/chain/mine", {"blocks": blocks})

    def order(self, app: Gunicorn, order_id: str) -> dict:
        return self.call(app, "GET", f"/pay-orders/{order_id}")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
