"""Writing audit events: one INSERT, unchained until the sequencer links them; the keyed hash;
the database's refusal of UPDATE (but the sequencer's one fill), DELETE and TRUNCATE."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from compliance.models import GENESIS_HASH, AuditEvent
from compliance.audit import audit_chain_advance, audit_event_hash, audit_record, audit_verify, canonical_json
from tests.factories.accounts import OrganizationFactory, UserFactory


@pytest.mark.django_db
def test_an_event_is_written_unchained_and_linked_from_genesis_by_the_sequencer():
    user = UserFactory(email="jane@example.com")
    org = OrganizationFactory()
    first = audit_record(actor=user, action="thing.done", target=org, data={"amount": Decimal("10.50"), "n": 1})
    second = audit_record(action="system.tick")
    assert (first.sequence, first.prev_hash, first.hash) == (None, None, None)

    result = audit_chain_advance()
    assert (result.linked, result.head_sequence) == (2, 2)
    first, second = AuditEvent.objects.get(pk=first.pk), AuditEvent.objects.get(pk=second.pk)
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert len(first.hash) == 64 and first.hash != second.hash
    assert first.actor_id == user.pk and first.actor_label == "jane@example.com"
    assert (first.target_type, first.target_id) == ("accounts.organization", str(org.pk))
    assert first.data == {"amount": "10.50", "n": 1}  # Decimals kept exact, as strings
    fields = dict(
        id=first.pk, sequence=1, created_at=first.created_at, actor_id=first.actor_id, actor_label=first.actor_label,
        action=first.action, target_type=first.target_type, target_id=first.target_id, data=first.data, prev_hash=GENESIS_HASH,
    )
    assert first.hash == audit_event_hash(**fields)
    assert first.hash != audit_event_hash(**fields, key=b"another key")  # keyed
    assert audit_verify() == {"valid": True, "checked": 2, "head_hash": second.hash, "first_invalid_id": None, "reason": None}
    assert audit_chain_advance().linked == 0  # nothing left to link


@pytest.mark.django_db
def test_audit_record_is_one_insert():
    user = UserFactory()
    audit_record(action="warm.up")  # content types and the like are cached outside the measured call
    with CaptureQueriesContext(connection) as queries:
        audit_record(actor=user, action="thing.done", target=user, data={"n": 1})
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    sql = queries.captured_queries[0]["sql"]
    assert sql.startswith("INSERT INTO") and "lock" not in sql.lower()


def test_canonical_json_is_sorted_compact_and_exact():
    text = canonical_json({"b": Decimal("1.10"), "a": [1.5, None, True], "c": {"z": 1, "y": "é"}})
    assert text == '{"a":["1.5",null,true],"b":"1.10","c":{"y":"\\u00e9","z":1}}'


@pytest.mark.django_db
def test_empty_chain_verifies():
    assert audit_verify() == {"valid": True, "checked": 0, "head_hash": None, "first_invalid_id": None, "reason": None}


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
    assert audit_chain_advance().linked == 1
    assert audit_verify()["valid"]


@pytest.mark.django_db
def test_target_must_be_a_model_instance():
    with pytest.raises(TypeError):
        audit_record(action="x", target="not a model")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_event_is_never_linked():
    kept = audit_record(action="kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="rolled.back")
        raise RuntimeError
    after = audit_record(action="after")
    assert audit_chain_advance().linked == 2
    kept, after = AuditEvent.objects.get(pk=kept.pk), AuditEvent.objects.get(pk=after.pk)
    assert after.prev_hash == kept.hash
    assert not AuditEvent.objects.filter(action="rolled.back").exists()
    assert audit_verify()["valid"] and audit_verify()["checked"] == 2


@pytest.mark.django_db
@pytest.mark.postgres
def test_database_refuses_update_and_delete():
    event = audit_record(action="immutable")
    for sql in ("UPDATE compliance_auditevent SET action = 'edited' WHERE id = %s", "DELETE FROM compliance_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "immutable"


def _fill(cursor, pk: int, sequence: int, prev: str, digest: str, extra: str = "") -> None:
    cursor.execute(f"UPDATE compliance_auditevent SET sequence = %s, prev_hash = %s, hash = %s{extra} WHERE id = %s", [sequence, prev, digest, pk])


@pytest.mark.django_db
def test_only_the_chain_columns_may_be_filled_and_only_once():
    event = audit_record(action="immutable")
    refused = [
        lambda c: _fill(c, event.pk, 1, "a" * 64, "b" * 64, ", action = 'edited'"),  # something else changes too
        lambda c: c.execute("UPDATE compliance_auditevent SET sequence = 1 WHERE id = %s", [event.pk]),  # not all three
    ]
    for attempt in refused:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            attempt(cursor)
    with connection.cursor() as cursor:
        _fill(cursor, event.pk, 1, "a" * 64, "b" * 64)  # NULL -> value: the sequencer's fill
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        _fill(cursor, event.pk, 2, "c" * 64, "d" * 64)  # a second fill
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.sequence, stored.hash, stored.action) == (1, "b" * 64, "immutable")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_database_refuses_truncate():
    audit_record(action="immutable")
    for table in ("compliance_auditevent", "compliance_auditcheckpoint"):
        with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic(), connection.cursor() as cursor:
            # The test settings let the test runner's own TRUNCATE through; production has no such setting.
            cursor.execute("SET LOCAL coffer.allow_audit_truncate = 'off'")
            cursor.execute(f"TRUNCATE {table} CASCADE")
    assert AuditEvent.objects.count() == 1


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
    audit_chain_advance()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(hash="f" * 64)  # already chained: no second fill
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.django_db
def test_verify_command_ok():
    audit_record(action="one")
    audit_chain_advance()
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "Audit chain valid: 1 events checked" in out.getvalue()
