"""The one outbox: rows written with the caller's transaction, dispatched after commit (or by the
sweeper after a broker outage), claimed with a lease and handled with no transaction open, at
most one dispatcher per message while its lease holds, retries with one jittered backoff, dead
after the maximum attempts or age; a hung or killed dispatcher's message is re-claimed."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Organization
from config.celery import app
from core.models import OutboxMessage
from core.outbox import (
    OutboxInTransaction,
    backoff_seconds,
    outbox_dispatch,
    outbox_due_ids,
    outbox_emit,
    outbox_sweep,
    register_handler,
    unregister_handler,
)
from core.tasks import dispatch_outbox, sweep_outbox
from tests.concurrency import run_in_threads

REPO = Path(settings.BASE_DIR)


def connections_close() -> None:
    connections.close_all()


class Recorder:
    """A handler that remembers every call and can fail its first `fail_times` calls. Each call
    notes whether a database transaction was open when it started, and writes a row (an
    Organization) in its own autocommit statement, as real handlers record what they did."""

    def __init__(self, fail_times=0, delay=0.0):
        self.calls: list[int] = []
        self.in_transaction: list[bool] = []
        self.fail_times = fail_times
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, message):
        with self.lock:
            self.calls.append(message.pk)
            self.in_transaction.append(connection.in_atomic_block or not connection.get_autocommit())
            attempt = len(self.calls)
        Organization.objects.create(name="handled", slug=f"handled-{message.pk}-{attempt}-{uuid.uuid4().hex[:6]}")
        if self.delay:
            time.sleep(self.delay)
        if attempt <= self.fail_times:
            raise ConnectionError(f"endpoint down (attempt {attempt})")


@pytest.fixture
def make_handler():
    """Registers recording handlers on fresh topics; unregisters them afterwards."""
    registered = []

    def make(**kwargs) -> Recorder:
        prefix = f"test.{uuid.uuid4().hex[:8]}."
        recorder = Recorder(**kwargs)
        recorder.topic = prefix + "event"
        register_handler(prefix, recorder)
        registered.append((prefix, recorder))
        return recorder

    yield make
    for prefix, recorder in registered:
        unregister_handler(prefix, recorder)


@pytest.fixture
def handler(make_handler) -> Recorder:
    return make_handler()


def _handled_rows() -> int:
    return Organization.objects.filter(name="handled").count()


# --- Emit -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestEmit:
    def test_emit_then_commit_enqueues_its_dispatch(self, handler, django_capture_on_commit_callbacks):
        org = Organization.objects.create(name="Acme", slug="acme")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            with transaction.atomic():
                message = outbox_emit(topic=handler.topic, payload={"amount": Decimal("10.50"), "id": 7}, organization=org)
        assert len(callbacks) == 1
        message.refresh_from_db()
        assert message.payload == {"amount": "10.50", "id": 7}  # Decimals stored exactly, as strings
        assert message.status == "pending" and message.organization_id == org.pk and message.attempts == 0

    def test_dispatch_refuses_to_run_inside_a_transaction(self, handler):
        """A dispatcher inside the caller's transaction would run its handlers under that
        transaction's locks, and its claim would not commit: refused, nothing claimed."""
        message = outbox_emit(topic=handler.topic, payload={})
        assert connection.in_atomic_block  # the test's own transaction
        with pytest.raises(OutboxInTransaction):
            outbox_dispatch(message_id=message.pk)
        with pytest.raises(OutboxInTransaction):
            outbox_sweep(now=timezone.now() + timedelta(days=1))
        message.refresh_from_db()
        assert handler.calls == [] and message.attempts == 0 and message.lease_owner == ""

    def test_a_delayed_message_is_due_later(self, handler, django_capture_on_commit_callbacks):
        soon, later = timezone.now() + timedelta(seconds=5), timezone.now() + timedelta(hours=1)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            with transaction.atomic():
                first = outbox_emit(topic=handler.topic, payload={}, available_at=soon)
                second = outbox_emit(topic=handler.topic, payload={}, available_at=later)
        assert len(callbacks) == 1, "a message due within a minute is kicked with a countdown; later ones are the sweeper's"
        assert outbox_due_ids(now=soon + timedelta(seconds=16)) == [first.pk]
        assert outbox_due_ids(now=later + timedelta(seconds=1)) == [first.pk, second.pk]

    def test_rollback_leaves_no_row_and_enqueues_nothing(self, handler, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with pytest.raises(RuntimeError):
                with transaction.atomic():
                    outbox_emit(topic=handler.topic, payload={})
                    raise RuntimeError("the business transaction failed")
        assert callbacks == []
        assert OutboxMessage.objects.count() == 0

    def test_emit_with_key_is_deduplicated(self, handler, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with transaction.atomic():
                first = outbox_emit(topic=handler.topic, payload={"n": 1}, key="order-1")
                second = outbox_emit(topic=handler.topic, payload={"n": 2}, key="order-1")
                other = outbox_emit(topic=handler.topic, payload={"n": 3}, key="order-2")
        assert first.pk == second.pk != other.pk
        assert len(callbacks) == 2
        assert OutboxMessage.objects.count() == 2

    def test_emit_needs_a_topic(self):
        with pytest.raises(ValueError):
            outbox_emit(topic="", payload={})

    def test_the_dispatch_is_published_to_the_broker(self, handler, django_capture_on_commit_callbacks):
        if not settings.CELERY_BROKER_URL.startswith("memory://"):
            pytest.skip("inspects the in-process memory broker; the real-worker test covers other brokers")
        with app.connection_for_read() as conn:
            queue = conn.SimpleQueue(app.conf.task_default_queue)
            queue.clear()
            with django_capture_on_commit_callbacks(execute=True):
                with transaction.atomic():
                    message = outbox_emit(topic=handler.topic, payload={})
            published = queue.get(timeout=2)
            assert published.headers["task"] == "core.tasks.dispatch_outbox"
            assert published.headers["argsrepr"] == repr((message.pk,))
            published.ack()
            queue.close()


# --- Dispatch, failure, backoff (the dispatcher runs outside any transaction: real commits) -------------------
@pytest.mark.django_db(transaction=True)
class TestDispatch:
    def _message(self, topic):
        return outbox_emit(topic=topic, payload={"n": 1})

    def test_dispatch_runs_the_handler_once_with_no_transaction_open(self, handler):
        message = self._message(handler.topic)
        assert dispatch_outbox(message.pk) == "dispatched"  # the Celery task, run in process
        message.refresh_from_db()
        assert message.status == "done" and message.done_at and message.attempts == 1 and message.last_error == ""
        assert message.lease_owner == "" and message.lease_expires_at is None
        assert handler.calls == [message.pk] and handler.in_transaction == [False]
        assert dispatch_outbox(message.pk) == "skipped"
        assert outbox_sweep(now=timezone.now() + timedelta(days=1)) == {}
        assert handler.calls == [message.pk] and _handled_rows() == 1

    def test_failing_handler_is_retried_with_backoff(self, make_handler):
        handler = make_handler(fail_times=2)
        message = self._message(handler.topic)
        start = timezone.now()
        assert outbox_dispatch(message_id=message.pk) == "failed"
        message.refresh_from_db()
        assert message.attempts == 1 and message.status == "pending" and message.lease_owner == ""
        assert "ConnectionError: endpoint down (attempt 1)" in message.last_error
        assert start + timedelta(seconds=5) <= message.next_attempt_at <= timezone.now() + timedelta(seconds=10)  # 10 s, jittered
        # Not due yet: neither the sweeper nor a second dispatch of the same id runs it early.
        assert outbox_sweep() == {} and outbox_dispatch(message_id=message.pk) == "skipped" and len(handler.calls) == 1
        assert outbox_sweep(now=timezone.now() + timedelta(seconds=11)) == {"failed": 1}
        message.refresh_from_db()
        assert message.attempts == 2
        assert message.next_attempt_at >= timezone.now() + timedelta(seconds=9)  # 20 s doubled, jittered
        assert outbox_sweep(now=timezone.now() + timedelta(seconds=21)) == {"dispatched": 1}
        message.refresh_from_db()
        assert message.status == "done" and message.attempts == 3 and message.last_error == ""
        assert handler.calls == [message.pk] * 3 and handler.in_transaction == [False] * 3

    def test_backoff_doubles_is_capped_and_jittered(self, settings):
        settings.OUTBOX_BACKOFF_BASE_SECONDS = 10
        settings.OUTBOX_BACKOFF_MAX_SECONDS = 3600
        for n, ceiling in zip(range(1, 6), [10, 20, 40, 80, 160]):
            delays = {backoff_seconds(n, seed=message_id) for message_id in range(50)}
            assert all(ceiling / 2 <= d <= ceiling for d in delays), (n, delays)
            assert len(delays) > 40, "messages that failed together retry at different times"
        assert 1800 <= backoff_seconds(20, seed=7) <= 3600
        assert backoff_seconds(3, seed=7) == backoff_seconds(3, seed=7), "one message's retry time is reproducible"

    def test_gives_up_after_max_age(self, make_handler, settings):
        handler = make_handler(fail_times=100)
        settings.OUTBOX_MAX_AGE_SECONDS = 60
        message = self._message(handler.topic)
        assert outbox_dispatch(message_id=message.pk) == "failed"
        OutboxMessage.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(seconds=55))
        assert outbox_sweep(now=timezone.now() + timedelta(seconds=11)) == {"gave_up": 1}
        message.refresh_from_db()
        assert message.status == "dead" and message.dead_at and message.attempts == 2

    def test_gives_up_after_max_attempts(self, make_handler, settings):
        handler = make_handler(fail_times=100)
        settings.OUTBOX_MAX_ATTEMPTS = 3
        message = self._message(handler.topic)
        far = timezone.now() + timedelta(days=2)
        assert outbox_dispatch(message_id=message.pk) == "failed"
        assert outbox_sweep(now=far) == {"failed": 1}
        assert outbox_sweep(now=far) == {"gave_up": 1}
        message.refresh_from_db()
        assert message.status == "dead" and message.dead_at is not None and message.attempts == 3
        assert outbox_due_ids(now=far + timedelta(days=10)) == []
        assert len(handler.calls) == 3

    def test_topic_without_handler_is_a_failure_not_a_silent_drop(self):
        message = outbox_emit(topic="nobody.listens", payload={})
        assert outbox_dispatch(message_id=message.pk) == "failed"
        message.refresh_from_db()
        assert "no handler registered" in message.last_error and message.status == "pending" and message.done_at is None

    def test_every_matching_prefix_handler_runs(self, handler):
        second = Recorder()
        register_handler(handler.topic.rsplit(".", 1)[0] + ".", second)
        try:
            message = self._message(handler.topic)
            assert outbox_dispatch(message_id=message.pk) == "dispatched"
        finally:
            unregister_handler(handler.topic.rsplit(".", 1)[0] + ".", second)
        assert handler.calls == [message.pk] and second.calls == [message.pk]

    def test_new_message_waits_a_grace_period_for_its_own_dispatch(self, handler):
        message = self._message(handler.topic)
        assert message.pk not in outbox_due_ids()
        assert message.pk in outbox_due_ids(now=timezone.now() + timedelta(seconds=16))

    def test_sweep_task_and_beat_entry(self, handler):
        message = self._message(handler.topic)
        # its after-commit dispatch never came, and the grace period is over
        OutboxMessage.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(seconds=20))
        assert sweep_outbox() == {"dispatched": 1}  # the beat task, run in process
        schedule = {e["task"]: e["schedule"] for e in app.conf.beat_schedule.values()}
        assert schedule["core.tasks.sweep_outbox"] <= 10


# --- Concurrency and outages (PostgreSQL, real processes/threads) ------------------------------------------
def _subprocess_env(**extra) -> dict:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE or "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    env.update(extra)
    return env


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestConcurrentAndOutages:
    def test_two_concurrent_dispatchers_run_the_handler_once(self, make_handler):
        handler = make_handler(delay=0.3)
        message = outbox_emit(topic=handler.topic, payload={})
        results = run_in_threads(2, lambda i: outbox_dispatch(message_id=message.pk))
        assert sorted(results) == ["dispatched", "skipped"]
        assert handler.calls == [message.pk]
        message.refresh_from_db()
        assert message.attempts == 1 and message.status == "done"

    def test_concurrent_sweepers_dispatch_each_message_once(self, make_handler):
        handler = make_handler(delay=0.01)
        ids = [outbox_emit(topic=handler.topic, payload={"i": i}).pk for i in range(30)]
        later = timezone.now() + timedelta(minutes=1)
        run_in_threads(6, lambda i: outbox_sweep(now=later))
        assert sorted(handler.calls) == sorted(ids)
        assert OutboxMessage.objects.filter(status="done").count() == 30

    def test_no_handler_runs_while_its_claim_transaction_is_open(self, make_handler):
        """In the handler: no transaction on the dispatcher's connection, and from another
        connection the claim is visible (committed) and the row is not locked."""
        seen = {}

        def observe(message):
            seen["atomic"], seen["autocommit"] = connection.in_atomic_block, connection.get_autocommit()

            def from_another_connection():
                with transaction.atomic():
                    row = OutboxMessage.objects.select_for_update(nowait=True).get(pk=message.pk)  # raises if locked
                    return row.lease_owner, row.attempts

            seen["other"] = run_in_threads(1, lambda i: from_another_connection())[0]

        handler = make_handler()
        register_handler(handler.topic, observe)
        try:
            message = outbox_emit(topic=handler.topic, payload={})
            assert outbox_dispatch(message_id=message.pk) == "dispatched"
        finally:
            unregister_handler(handler.topic, observe)
        assert seen["atomic"] is False and seen["autocommit"] is True
        lease_owner, attempts = seen["other"]
        assert lease_owner and attempts == 1, "the claim (lease, attempt) was committed before the handler ran"

    def test_a_handler_hung_past_its_lease_is_reclaimed_by_another_dispatcher(self, make_handler, settings):
        settings.OUTBOX_LEASE_SECONDS = 1
        release, started = threading.Event(), threading.Event()
        calls = []

        def hangs_the_first_time(message):
            calls.append(message.pk)
            if len(calls) == 1:
                started.set()
                release.wait(30)  # a receiver that never answers

        handler = make_handler()
        register_handler(handler.topic, hangs_the_first_time)
        try:
            message = outbox_emit(topic=handler.topic, payload={})
            first = threading.Thread(target=lambda: (outbox_dispatch(message_id=message.pk), connections_close()))
            first.start()
            assert started.wait(10)
            assert outbox_sweep() == {} and outbox_dispatch(message_id=message.pk) == "skipped", "leased: nobody else takes it"
            message.refresh_from_db()
            assert message.attempts == 1 and message.lease_owner
            time.sleep(1.2)  # the lease runs out
            assert outbox_sweep() == {"dispatched": 1}
            release.set()
            first.join(10)
        finally:
            release.set()
            unregister_handler(handler.topic, hangs_the_first_time)
        message.refresh_from_db()
        assert message.status == "done" and message.attempts == 2 and calls == [message.pk, message.pk]

    def test_a_dispatcher_killed_mid_handler_leaves_the_message_to_be_retried(self, handler, settings):
        """A separate process claims the message and is SIGKILLed inside its handler: the row
        keeps its lease (no result), falls due when the lease runs out and another dispatcher
        runs it."""
        message = outbox_emit(topic=handler.topic, payload={"n": 1})
        script = textwrap.dedent(f"""
            import django
            django.setup()
            import tests.core.outbox_worker_handlers
            from core.outbox import outbox_dispatch
            outbox_dispatch(message_id={message.pk})
        """)
        process = subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_subprocess_env(COFFER_OUTBOX_TEST_TOPIC=handler.topic, COFFER_OUTBOX_TEST_HANG="1", OUTBOX_LEASE_SECONDS="5"),
        )
        try:
            deadline = time.monotonic() + 60
            while not Organization.objects.filter(slug=f"worker-handled-{message.pk}").exists():
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
                time.sleep(0.1)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()
        assert process.returncode == -signal.SIGKILL
        message.refresh_from_db()
        assert message.status == "pending" and message.attempts == 1 and message.lease_owner, "claimed, never recorded"
        assert message.lease_expires_at <= timezone.now() + timedelta(seconds=5)
        assert outbox_sweep() == {} and handler.calls == [], "not before the lease runs out"
        assert outbox_sweep(now=message.lease_expires_at + timedelta(seconds=1)) == {"dispatched": 1}
        message.refresh_from_db()
        assert message.status == "done" and message.attempts == 2 and handler.calls == [message.pk]

    def test_a_message_whose_workers_keep_dying_ends_dead(self, handler, settings):
        settings.OUTBOX_MAX_ATTEMPTS = 2
        message = outbox_emit(topic=handler.topic, payload={})
        # two claims whose workers died (lease set, never recorded)
        OutboxMessage.objects.filter(pk=message.pk).update(attempts=2, lease_owner="gone:1:x", next_attempt_at=timezone.now())
        assert outbox_sweep() == {}
        message.refresh_from_db()
        assert message.status == "dead" and "expired without a result" in message.last_error and handler.calls == []

    def test_broker_down_at_commit_keeps_the_row_and_the_sweeper_sends_it(self, handler):
        # A separate process commits an emit while its broker URL points at a closed port.
        script = textwrap.dedent(f"""
            import time
            import django
            django.setup()
            from django.db import transaction
            from core.outbox import outbox_emit
            started = time.monotonic()
            with transaction.atomic():
                message = outbox_emit(topic={handler.topic!r}, payload={{"n": 1}})
            print(message.pk, round(time.monotonic() - started, 2))
        """)
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
            env=_subprocess_env(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:1//"),
        )
        assert done.returncode == 0, done.stderr
        message_id, elapsed = done.stdout.split()
        assert float(elapsed) < 10, "a broker outage must not hang the request"
        assert "could not enqueue dispatch" in done.stderr
        message = OutboxMessage.objects.get(pk=int(message_id))
        assert message.status == "pending" and handler.calls == []
        assert outbox_sweep(now=timezone.now() + timedelta(seconds=20)) == {"dispatched": 1}
        assert handler.calls == [message.pk]

    def test_a_real_celery_worker_dispatches_after_commit(self, handler, tmp_path):
        broker = settings.CELERY_BROKER_URL
        if broker.startswith("memory://"):
            pytest.skip("needs a real broker (CELERY_BROKER_URL, RabbitMQ in CI); memory:// does not cross processes")
        # The worker process has no in-memory handler of ours: it marks what it dispatched in
        # the database, through a handler module it imports.
        queue = f"outbox-test-{uuid.uuid4().hex[:8]}"
        env = _subprocess_env(CELERY_BROKER_URL=broker, COFFER_OUTBOX_TEST_TOPIC=handler.topic)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue,
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
             "--include", "tests.core.outbox_worker_handlers"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        previous_queue = app.conf.task_default_queue
        try:
            app.conf.task_default_queue = queue
            with transaction.atomic():
                message = outbox_emit(topic=handler.topic, payload={"n": 1})
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                message.refresh_from_db()
                if message.status == "done":
                    break
                time.sleep(0.2)
        finally:
            app.conf.task_default_queue = previous_queue
            worker.terminate()
            try:
                output = worker.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                worker.kill()
                output = worker.communicate()[0]
        assert message.done_at is not None, output[-3000:]
        assert message.attempts == 1
        assert Organization.objects.filter(slug=f"worker-handled-{message.pk}").count() == 1
        assert handler.calls == [], "dispatched by the worker process, not by this one"


# --- Admin --------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
class TestAdmin:
    def test_changelists_render_read_only(self, admin_client):
        message = outbox_emit(topic="nobody.listens", payload={"n": 1})
        for url in ("/admin/core/outboxmessage/", "/admin/core/idempotencyrecord/", f"/admin/core/outboxmessage/{message.pk}/change/"):
            assert admin_client.get(url).status_code == 200, url
        assert admin_client.get("/admin/core/outboxmessage/add/").status_code == 403
        assert admin_client.get("/admin/core/outboxmessage/", {"status__exact": "dead"}).status_code == 200

    def test_retry_action_requeues_a_failed_message(self, admin_client, handler, settings):
        settings.OUTBOX_MAX_ATTEMPTS = 1
        message = outbox_emit(topic=handler.topic, payload={})
        handler.fail_times = 1
        assert outbox_dispatch(message_id=message.pk) == "gave_up"
        response = admin_client.post("/admin/core/outboxmessage/", {"action": "retry_now", "_selected_action": [message.pk]})
        assert response.status_code == 302
        message.refresh_from_db()
        assert message.status == "pending" and message.dead_at is None and message.next_attempt_at <= timezone.now()
        settings.OUTBOX_MAX_ATTEMPTS = 5
        assert outbox_sweep() == {"dispatched": 1}
