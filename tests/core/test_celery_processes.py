"""Real Celery processes (issue 12 items 2 and 3).

- `celery -A config worker --beat`, the documented entry point, starts on a fresh deployment
  (the schedule's directory does not exist yet) and keeps running; beat is a singleton: a second
  beat process stands by while the first runs and takes over when it stops.
- At `-l info` the worker's log shows its ready line, received/succeeded lines, and a failing
  task with its traceback.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app

ROOT = Path(__file__).resolve().parents[2]
SENDING = "Scheduler: Sending due task"


def _env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    env.update(extra)
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args], cwd=ROOT, env=env,
                            stdout=handle, stderr=subprocess.STDOUT, text=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _text(log: Path) -> str:
    """The log as text: its JSON lines (LOG_FORMAT=json, core.requestid) as their message and exception."""
    lines = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        lines.append(record.get("message", line) if isinstance(record, dict) else line)
        if isinstance(record, dict) and record.get("exception"):
            lines.append(record["exception"])
    return "\n".join(lines)


def _wait_for(log: Path, text: str, timeout: float, process: subprocess.Popen | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = _text(log)
        if text in content:
            return content
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_with_beat_starts_on_a_fresh_deployment_and_a_second_beat_only_stands_by(tmp_path):
    var = tmp_path / "fresh" / "var"  # nothing created: as on a new host
    # memory:// keeps the beat's messages in its own process: nothing reaches another suite's broker.
    env = _env(COFFER_VAR_DIR=str(var), CELERY_BROKER_URL="memory://")
    env.pop("CELERY_BEAT_SCHEDULE_FILENAME", None)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(["worker", "--beat", "--pool=threads", "--concurrency=1", "-Q", f"idle-{uuid.uuid4().hex[:8]}",
                    "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"], env, first_log)
    second = None
    try:
        _wait_for(first_log, SENDING, 45, first)
        assert first.poll() is None, first_log.read_text()[-3000:]
        assert (var / "beat").is_dir() and list((var / "beat").glob("celerybeat-schedule*"))

        second = _start(["beat", "-l", "INFO"], env, second_log)
        _wait_for(second_log, "standing by", 45, second)
        time.sleep(6)  # longer than the shortest schedule (2 s) and than one stand-by check (5 s)
        assert SENDING not in second_log.read_text(), "a second beat sent while the first was running"
        assert first.poll() is None

        sent_by_first = first_log.read_text().count(SENDING)
        _stop(first)
        _wait_for(second_log, "this process schedules the periodic tasks", 30, second)
        _wait_for(second_log, SENDING, 30, second)
        assert first_log.read_text().count(SENDING) >= sent_by_first
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


def test_beat_is_the_singleton_scheduler_with_its_schedule_under_the_var_directory():
    assert app.conf.beat_scheduler == "core.beat:SingletonScheduler"
    assert Path(app.conf.beat_schedule_filename).parent == settings.VAR_DIR / "beat"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_log_at_info_shows_ready_received_succeeded_and_failures_with_traceback(tmp_path):
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("memory://"):
        pytest.skip("needs a real broker (CELERY_BROKER_URL, RabbitMQ in CI): memory:// does not cross processes")
    from tests.core.worker_tasks import fail_loudly, succeed

    queue = f"worker-log-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    log = tmp_path / "worker.log"
    worker = _start(["worker", "--pool=solo", "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
                     "-l", "info", "--include", "tests.core.worker_tasks"], _env(CELERY_BROKER_URL=broker), log)
    try:
        _wait_for(log, " ready.", 45, worker)
        failed = fail_loudly.apply_async((marker,), queue=queue)
        done = succeed.apply_async((marker,), queue=queue)
        content = _wait_for(log, f"Task tests.core.worker_tasks.succeed[{done.id}] succeeded", 45, worker)
    finally:
        _stop(worker)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    assert f"Task tests.core.worker_tasks.fail_loudly[{failed.id}] received" in content
    assert f"Task tests.core.worker_tasks.fail_loudly[{failed.id}] raised unexpected: RuntimeError('task failed on purpose: {marker}')" in content
    assert "Traceback (most recent call last)" in content
    assert 'raise RuntimeError(f"task failed on purpose: {marker}")' in content
