"""The audit chain: hashing, linking, verification, the database's refusal of UPDATE/DELETE, and
appends from 16 threads at once on PostgreSQL."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from compliance.models import GENESIS_HASH, AuditEvent
from compliance.services import audit_event_hash, audit_record, audit_verify, canonical_json
from tests.concurrency import errors_of, run_in_threads
from tests.factories import OrganizationFactory, UserFactory


@pytest.mark.django_db
def test_events_link_into_a_chain_from_genesis():
    user = UserFactory(email="jane@example.com")
    org = OrganizationFactory()
    first = audit_record(actor=user, action="thing.done", target=org, data={"amount": Decimal("10.50"), "n": 1})
    second = audit_record(action="system.tick")
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert len(first.hash) == 64 and first.hash != second.hash
    stored = AuditEvent.objects.get(pk=first.pk)
    assert stored.actor_id == user.pk and stored.actor_label == "jane@example.com"
    assert (stored.target_type, stored.target_id) == ("accounts.organization", str(org.pk))
    assert stored.data == {"amount": "10.50", "n": 1}  # Decimals kept exact, as strings
    assert stored.hash == audit_event_hash(
        created_at=stored.created_at, actor_id=stored.actor_id, actor_label=stored.actor_label, action=stored.action,
        target_type=stored.target_type, target_id=stored.target_id, data=stored.data, prev_hash=stored.prev_hash,
    )
    assert audit_verify() == {"valid": True, "checked": 2, "head_hash": second.hash, "first_invalid_id": None}


def test_canonical_json_is_sorted_compact_and_exact():
    text = canonical_json({"b": Decimal("1.10"), "a": [1.5, None, True], "c": {"z": 1, "y": "é"}})
    assert text == '{"a":["1.5",null,true],"b":"1.10","c":{"y":"\\u00e9","z":1}}'


@pytest.mark.django_db
def test_empty_chain_verifies():
    assert audit_verify() == {"valid": True, "checked": 0, "head_hash": None, "first_invalid_id": None}


@pytest.mark.django_db
def test_awkward_data_round_trips_through_the_database():
    import datetime as dt
    import uuid

    data = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "big": 10**30,
        "float": 0.1,
        "nul": "a\x00b",
        "nested": {1: [Decimal("0.000000000000000001")]},
    }
    audit_record(action="x", data=data)
    assert audit_verify()["valid"]


@pytest.mark.django_db
def test_target_must_be_a_model_instance():
    with pytest.raises(TypeError):
        audit_record(action="x", target="not a model")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_event_leaves_the_chain_whole():
    kept = audit_record(action="kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="rolled.back")
        raise RuntimeError
    after = audit_record(action="after")
    assert after.prev_hash == kept.hash
    assert audit_verify()["valid"] and audit_verify()["checked"] == 2


@pytest.mark.django_db
@pytest.mark.postgres
def test_database_refuses_update_and_delete():
    event = audit_record(action="immutable")
    for sql in ("UPDATE compliance_auditevent SET action = 'edited' WHERE id = %s", "DELETE FROM compliance_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "immutable"


@pytest.mark.django_db
def test_database_refuses_update_on_sqlite_too():
    if connection.vendor != "sqlite":
        pytest.skip("the PostgreSQL trigger is covered by test_database_refuses_update_and_delete")
    event = audit_record(action="immutable")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_auditevent SET action = 'edited' WHERE id = %s", [event.pk])


@pytest.mark.django_db
def test_orm_update_and_delete_are_refused_too():
    event = audit_record(action="immutable")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="edited")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()


def _tamper(sql: str, params: list) -> None:
    """Edit rows behind the trigger's back, as someone with table-owner rights could."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER compliance_auditevent_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER compliance_auditevent_append_only")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_verify_names_an_edited_row():
    events = [audit_record(action=f"step.{n}", data={"n": n}) for n in range(5)]
    _tamper("UPDATE compliance_auditevent SET data = %s WHERE id = %s", ['{"n": 99}', events[2].pk])
    result = audit_verify()
    assert result == {"valid": False, "checked": 3, "head_hash": events[-1].hash, "first_invalid_id": events[2].pk}

    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain", stdout=out)
    assert excinfo.value.returncode == 1
    assert f"first invalid event id {events[2].pk}" in out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_verify_names_the_row_after_a_deleted_one():
    events = [audit_record(action=f"step.{n}") for n in range(4)]
    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[1].pk])
    assert audit_verify()["first_invalid_id"] == events[2].pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_verify_detects_a_recomputed_hash_without_relinking():
    """Rewriting a row AND its hash still breaks the next row's link."""
    events = [audit_record(action=f"step.{n}") for n in range(3)]
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.action = "forged"
    new_hash = audit_event_hash(
        created_at=forged.created_at, actor_id=None, actor_label="", action="forged",
        target_type="", target_id="", data={}, prev_hash=forged.prev_hash,
    )
    _tamper("UPDATE compliance_auditevent SET action = 'forged', hash = %s WHERE id = %s", [new_hash, events[1].pk])
    assert audit_verify()["first_invalid_id"] == events[2].pk


@pytest.mark.django_db
def test_verify_command_ok():
    audit_record(action="one")
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "Audit chain valid: 1 events checked" in out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_sixteen_threads_append_one_unbroken_chain():
    threads_n, per_thread = 16, 10

    def worker(n: int) -> None:
        for i in range(per_thread):
            # Each append in its own transaction that also does other work, as services do.
            with transaction.atomic():
                AuditEvent.objects.count()
                audit_record(action="concurrent", data={"thread": n, "i": i})

    errors = errors_of(run_in_threads(threads_n, worker))
    assert not errors, errors
    result = audit_verify()
    assert result["valid"], result
    assert result["checked"] == threads_n * per_thread
    # no fork: every prev_hash is used exactly once
    prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(prevs) == len(set(prevs)) == threads_n * per_thread
    assert {(e["thread"], e["i"]) for e in AuditEvent.objects.values_list("data", flat=True)} == {
        (n, i) for n in range(threads_n) for i in range(per_thread)
    }
