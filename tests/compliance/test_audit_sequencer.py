"""The audit sequencer (`audit_chain_advance`) on PostgreSQL: it links every committed event
exactly once, in one order, never a rolled-back one, and only below the watermark (an event of a
transaction still open waits, and so does every event committed after it began); it is a
singleton; each run that links writes a signed checkpoint to the table, the log and the file."""

import json
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from compliance.models import GENESIS_HASH, AuditCheckpoint, AuditEvent
from compliance.audit import AUDIT_CHAIN_LOCK_KEY, audit_chain_advance, audit_record, audit_verify
from tests.concurrency import errors_of, in_background, run_in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _chain() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(sequence__isnull=False).order_by("sequence"))


def _file_checkpoints() -> list[dict]:
    path = Path(settings.AUDIT_CHECKPOINT_PATH)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_open_transaction_holds_back_the_watermark_and_is_linked_on_a_later_run():
    opened, release = threading.Event(), threading.Event()

    def held() -> int:
        with transaction.atomic():
            event = audit_record(action="held", data={"n": 0})
            opened.set()
            assert release.wait(30)
        return event.pk

    thread, outcome = in_background(held)
    thread.start()
    assert opened.wait(30)
    later = audit_record(action="later", data={"n": 1})  # a higher id, committed first
    assert later.pk > 0

    during = audit_chain_advance()
    # `later` is committed but its transaction began after the open one: below the watermark
    # only once the open one ends, so nothing is linked yet and the chain keeps id order.
    assert (during.linked, during.skipped, during.halted) == (0, False, None)
    assert not _chain()

    release.set()
    thread.join(30)
    held_pk = outcome["result"]
    after = audit_chain_advance()
    assert after.linked == 2
    assert [(e.pk, e.sequence) for e in _chain()] == [(held_pk, 1), (later.pk, 2)]
    assert audit_verify()["valid"]


def test_sixteen_writers_and_a_running_sequencer_build_one_chain_of_exactly_the_committed_events():
    threads_n, per_thread = 16, 12
    writers_done = threading.Event()
    runs: list = []
    committed: set[tuple[int, int]] = set()
    rolled_back: set[tuple[int, int]] = set()
    held_over: set[tuple[int, int]] = set()  # open while at least one sequencer run completed
    lock = threading.Lock()

    def sequencer() -> None:
        while not writers_done.is_set():
            runs.append(audit_chain_advance(batch_size=37))
            time.sleep(0.005)

    def writer(n: int) -> None:
        for i in range(per_thread):
            kind = (n + i) % 4  # 0: rolls back, 1: held open across a sequencer run, else: commits
            try:
                with transaction.atomic():
                    AuditEvent.objects.filter(pk=-1).exists()  # other work in the transaction, as services do
                    audit_record(action="concurrent", data={"thread": n, "i": i})
                    if kind == 1:
                        runs_before = len(runs)
                        deadline = time.monotonic() + 10
                        while len(runs) < runs_before + 2 and time.monotonic() < deadline:
                            time.sleep(0.002)
                        if len(runs) >= runs_before + 2:
                            with lock:
                                held_over.add((n, i))
                    if kind == 0:
                        raise RuntimeError("roll back")
            except RuntimeError:
                with lock:
                    rolled_back.add((n, i))
                continue
            with lock:
                committed.add((n, i))

    background, _ = in_background(sequencer)
    background.start()
    try:
        errors = errors_of(run_in_threads(threads_n, writer))
    finally:
        writers_done.set()
        background.join(60)
    assert not errors, errors
    assert not any(r.halted for r in runs), [r.halted for r in runs if r.halted]
    linked_while_writing = sum(r.linked for r in runs)
    assert linked_while_writing > 0  # the sequencer really ran alongside the writers
    assert audit_chain_advance().linked + linked_while_writing == len(committed)

    chain = _chain()
    tags = [(e.data["thread"], e.data["i"]) for e in chain]
    assert len(tags) == len(set(tags))  # each committed event exactly once
    assert set(tags) == committed  # every committed event, no rolled-back one
    assert not set(tags) & rolled_back and rolled_back
    assert held_over and held_over <= set(tags)  # events held open across runs were linked later
    assert [e.sequence for e in chain] == list(range(1, len(chain) + 1))  # one gapless order
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:]))
    assert not AuditEvent.objects.filter(sequence__isnull=True).exists()
    assert audit_verify() == {"valid": True, "checked": len(chain), "head_hash": chain[-1].hash, "first_invalid_id": None, "reason": None}

    # one checkpoint per linking run, in the table and the file alike, the last one at the head
    checkpoints = _file_checkpoints()
    assert [c["head_sequence"] for c in checkpoints] == sorted(c["head_sequence"] for c in checkpoints)
    assert checkpoints[-1]["head_sequence"] == len(chain) and checkpoints[-1]["head_hash"] == chain[-1].hash
    assert AuditCheckpoint.objects.count() == len(checkpoints)


def test_a_second_sequencer_skips_while_one_holds_the_lock():
    audit_record(action="waiting")
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK_KEY])
            locked.set()
            assert release.wait(30)

    thread, _ = in_background(hold_lock)
    thread.start()
    assert locked.wait(30)
    try:
        result = audit_chain_advance()
    finally:
        release.set()
        thread.join(30)
    assert result.skipped and result.linked == 0
    assert audit_chain_advance().linked == 1


def test_each_linking_run_writes_a_signed_checkpoint_to_the_table_the_log_and_the_file(caplog):
    for n in range(3):
        audit_record(action=f"a{n}")
    with caplog.at_level("INFO", logger="coffer.audit"):
        result = audit_chain_advance(batch_size=2)
    assert result.linked == 3
    assert audit_chain_advance().linked == 0  # nothing new: no checkpoint
    rows = list(AuditCheckpoint.objects.order_by("head_sequence").values("head_sequence", "head_id", "head_hash", "count", "signature"))
    lines = _file_checkpoints()
    logged = [json.loads(r.getMessage().removeprefix("audit checkpoint ")) for r in caplog.records if r.name == "coffer.audit"]
    assert [r["head_sequence"] for r in rows] == [2, 3]
    assert lines == logged
    assert [{**{k: c[k] for k in ("head_sequence", "head_id", "head_hash", "count")}, "signature": c["mac"]} for c in lines] == rows
    head = _chain()[-1]
    assert (lines[-1]["head_id"], lines[-1]["head_hash"], lines[-1]["count"]) == (head.pk, head.hash, 3)


def test_the_sequencer_command_runs_once_or_in_a_loop():
    from io import StringIO

    from django.core.management import call_command

    audit_record(action="one")
    out = StringIO()
    call_command("audit_sequencer", stdout=out)
    assert "Linked 1 events (head sequence 1)" in out.getvalue()
    audit_record(action="two")
    out = StringIO()
    call_command("audit_sequencer", "--loop", "--interval", "0.01", "--iterations", "3", stdout=out)
    assert "Linked 1 events (head sequence 2)" in out.getvalue()
    assert audit_verify()["checked"] == 2


def test_the_beat_task_links_events():
    from compliance.tasks import advance_audit_chain
    from config.celery import app

    audit_record(action="one")
    assert advance_audit_chain() == 1
    entry = app.conf.beat_schedule["compliance.advance_audit_chain"]
    assert entry["task"] == "compliance.tasks.advance_audit_chain" and entry["schedule"] <= 5
