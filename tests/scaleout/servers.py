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
