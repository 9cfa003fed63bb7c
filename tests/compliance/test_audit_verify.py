"""`audit_verify` names each way of tampering with the chain: an edited event, a deleted middle
event, a deleted newest event, a TRUNCATE, two events swapped, an event re-hashed without the
key, and an altered checkpoint file. Tampering goes behind the triggers' back, as the table's
owner or a superuser could (PostgreSQL)."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from compliance.models import AuditEvent
from compliance.audit import audit_chain_advance, audit_event_hash, audit_record, audit_verify

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRONG_KEY = b"not the chain key"


def _tamper(*statements: tuple[str, list]) -> None:
    """Run `statements` with the audit tables' triggers off, as a superuser could: on every
    partition of the events table too (its TRUNCATE refusal is on each, not cloned)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL coffer.allow_audit_truncate = 'off'")
        tables = ["compliance_auditevent", "compliance_auditcheckpoint"]
        if connection.vendor == "postgresql":
            cursor.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'compliance_auditevent'::regclass")
            tables += [name for (name,) in cursor.fetchall()]
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for sql, params in statements:
            cursor.execute(sql, params)
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _chain(n: int = 5) -> list[AuditEvent]:
    for i in range(n):
        audit_record(action=f"step.{i}", data={"n": i})
    assert audit_chain_advance().linked == n
    chain = list(AuditEvent.objects.order_by("sequence"))
    assert audit_verify()["valid"]
    return chain


def _forged_hash(event: AuditEvent, *, prev_hash: str, **changes) -> str:
    fields = dict(
        id=event.pk, sequence=event.sequence, created_at=event.created_at, actor_id=event.actor_id,
        actor_label=event.actor_label, action=event.action, target_type=event.target_type,
        target_id=event.target_id, data=event.data, prev_hash=prev_hash,
    )
    return audit_event_hash(**{**fields, **changes}, key=WRONG_KEY)


def test_an_edited_event_is_named_and_the_command_says_so():
    chain = _chain()
    _tamper(("UPDATE compliance_auditevent SET data = %s WHERE id = %s", ['{"n": 99}', chain[2].pk]))
    result = audit_verify()
    assert result["valid"] is False
    assert (result["checked"], result["first_invalid_id"], result["head_hash"]) == (3, chain[2].pk, chain[-1].hash)
    assert result["reason"].startswith(f"edited: event {chain[2].pk} (sequence 3)")

    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain", stdout=out)
    assert excinfo.value.returncode == 1
    assert f"first invalid event id {chain[2].pk}" in out.getvalue() and "edited" in out.getvalue()


def test_an_edited_newest_event_is_named_against_the_checkpoint():
    chain = _chain()
    _tamper(("UPDATE compliance_auditevent SET action = 'forged' WHERE id = %s", [chain[-1].pk]))
    result = audit_verify()
    assert result["first_invalid_id"] == chain[-1].pk and result["reason"].startswith("edited:")


def test_a_deleted_middle_event_is_a_gap_in_the_sequence():
    chain = _chain()
    _tamper(("DELETE FROM compliance_auditevent WHERE id = %s", [chain[1].pk]))
    result = audit_verify()
    assert result["valid"] is False and result["first_invalid_id"] == chain[2].pk
    assert result["reason"] == f"deleted: sequence 2 is missing before event {chain[2].pk} (sequence 3)"


def test_a_deleted_newest_event_is_caught_by_the_checkpoint():
    chain = _chain()
    _tamper(("DELETE FROM compliance_auditevent WHERE id = %s", [chain[-1].pk]))
    result = audit_verify()
    assert result["valid"] is False and result["first_invalid_id"] == chain[-1].pk
    assert result["reason"].startswith("deleted: the newest events are gone: the chain ends at sequence 4")
    # ... even when the checkpoint table is rewound too: the file outside the database remembers
    _tamper(("DELETE FROM compliance_auditcheckpoint", []))
    assert audit_verify()["reason"].startswith("deleted: the newest events are gone")


def test_a_truncate_is_caught_by_the_checkpoint_file_and_stops_the_sequencer():
    chain = _chain()
    _tamper(("TRUNCATE compliance_auditevent, compliance_auditcheckpoint", []))
    result = audit_verify()
    assert result["valid"] is False and result["first_invalid_id"] == chain[-1].pk
    assert result["reason"].startswith("truncated: the table holds no chained event but the checkpoint")
    # New events are not linked into a fresh chain that would paper over the loss.
    audit_record(action="after.truncate")
    advance = audit_chain_advance()
    assert advance.linked == 0 and "the last checkpoint is at sequence 5" in advance.halted
    assert audit_verify()["reason"].startswith("truncated:")


def test_two_swapped_events_are_named():
    chain = _chain()
    a, b = chain[1], chain[2]
    _tamper(
        ("UPDATE compliance_auditevent SET sequence = -1 WHERE id = %s", [a.pk]),
        ("UPDATE compliance_auditevent SET sequence = %s WHERE id = %s", [a.sequence, b.pk]),
        ("UPDATE compliance_auditevent SET sequence = %s WHERE id = %s", [b.sequence, a.pk]),
    )
    result = audit_verify()
    assert result["valid"] is False and result["first_invalid_id"] == b.pk
    assert result["reason"].startswith(f"reordered: event {b.pk} (sequence 2) links to event {a.pk} (sequence 3)")


def test_an_event_re_hashed_without_the_key_is_named():
    chain = _chain()
    forged = _forged_hash(chain[2], prev_hash=chain[2].prev_hash, action="forged")
    _tamper(("UPDATE compliance_auditevent SET action = 'forged', hash = %s WHERE id = %s", [forged, chain[2].pk]))
    result = audit_verify()
    assert result["first_invalid_id"] == chain[2].pk
    assert result["reason"].startswith(f"rehashed: event {chain[2].pk} (sequence 3)")


def test_a_re_hashed_and_relinked_tail_without_the_key_is_named():
    """Rewriting an event and re-linking everything after it still needs the key."""
    chain = _chain()
    statements, prev = [], chain[1].hash
    for position, event in enumerate(chain[2:]):
        changes = {"action": "forged"} if position == 0 else {}
        digest = _forged_hash(event, prev_hash=prev, **changes)
        statements.append((
            "UPDATE compliance_auditevent SET action = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [changes.get("action", event.action), prev, digest, event.pk],
        ))
        prev = digest
    _tamper(*statements)
    result = audit_verify()
    assert result["first_invalid_id"] == chain[2].pk and result["reason"].startswith("rehashed:")


def test_an_altered_checkpoint_file_is_named():
    _chain()
    path = Path(settings.AUDIT_CHECKPOINT_PATH)
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    last["head_sequence"] = last["count"] = 99
    path.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    result = audit_verify()
    assert result["valid"] is False and result["reason"].startswith("checkpoint: the checkpoint at sequence 99 is not signed")
    path.write_text("\n".join([*lines[:-1], "not json"]) + "\n")
    assert audit_verify()["reason"].startswith("checkpoint: the last line")


def test_the_verify_endpoint_reports_the_reason(api_client):
    from rest_framework_simplejwt.tokens import AccessToken

    from tests.factories.accounts import StaffUserFactory

    chain = _chain(3)
    _tamper(("DELETE FROM compliance_auditevent WHERE id = %s", [chain[1].pk]))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(StaffUserFactory())}")
    body = api_client.get("/api/v1/audit-logs/verify").json()
    assert body["valid"] is False and body["first_invalid_id"] == chain[2].pk and body["reason"].startswith("deleted:")
