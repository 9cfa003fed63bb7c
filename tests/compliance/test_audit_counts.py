"""Failed authentications are throttled into counts: each failure is logged and counted in the
cache (no database write, no audit insert), and `audit_counts_flush` writes one audit event per
key (or client address) per minute with the count, once, after the minute is over."""

import logging
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from compliance.audit import audit_chain_advance, audit_count, audit_counts_flush, audit_verify
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.django_db
CUSTOMERS = "/api/v1/customers"


def _minute_start() -> float:
    return (time.time() // 60) * 60


def _failed_auth_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="api_key.auth_failed").order_by("id"))


def test_failed_api_authentications_are_logged_and_counted_then_audited_once_per_key_and_minute(caplog):
    from accounts.orgs.services import api_key_create

    org = OrganizationFactory()
    api_key, _secret = api_key_create(organization=org, name="ci")
    key_id = api_key.key_id
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    if time.time() % 60 > 45:  # keep all the failures inside one minute
        time.sleep(60.5 - time.time() % 60)
    with caplog.at_level(logging.WARNING, logger="coffer.auth"):
        with CaptureQueriesContext(connection) as queries:
            for _ in range(25):  # unknown secrets: grouped by client address
                assert client.get(CUSTOMERS, HTTP_X_API_KEY="sk_wrong").status_code == 401
        for n in range(4):  # a known key id with a bad signature: grouped by key
            header = f"APIKey={key_id},signature={'0' * 128},timestamp={int(time.time())}"
            assert client.get(CUSTOMERS, HTTP_AUTHORIZATION=header).status_code == 401
    assert not any("compliance_auditevent" in q["sql"] for q in queries.captured_queries)
    assert not _failed_auth_events()  # nothing audited yet: the minute is not over
    assert len([r for r in caplog.records if r.name == "coffer.auth"]) == 29  # but every failure is logged

    assert audit_counts_flush() == 0  # the current minute is not flushed
    assert audit_counts_flush(now=time.time() + 120) == 2
    assert audit_counts_flush(now=time.time() + 120) == 0  # once
    by_group = {(e.data["key_id"], e.data["client_ip"]): e for e in _failed_auth_events()}
    unknown, signed = by_group[("", "203.0.113.7")], by_group[(key_id, "203.0.113.7")]
    assert unknown.data["count"] == 25 and unknown.data["reason"] == "unknown secret" and unknown.target_id == ""
    assert signed.data["count"] == 4 and signed.data["reason"] == "bad signature"
    assert (signed.target_type, signed.target_id) == ("accounts.apikey", str(api_key.pk))
    assert signed.data["window_seconds"] == 60 and signed.data["window_start"].endswith(":00.000000+00:00")
    assert "sk_wrong" not in str(unknown.data)  # never the presented secret

    assert audit_chain_advance().linked >= 2  # and they join the chain like any event
    assert audit_verify()["valid"]


def test_each_minute_is_its_own_event_and_a_minute_is_flushed_only_after_it_ends():
    start = _minute_start()
    for offset in (1, 2, 3):
        audit_count(action="api_key.auth_failed", group="key:k1", data={"key_id": "k1"}, now=start + offset)
    audit_count(action="api_key.auth_failed", group="key:k1", data={"key_id": "k1"}, now=start + 61)
    audit_count(action="api_key.auth_failed", group="key:k2", data={"key_id": "k2"}, now=start + 62)

    assert audit_counts_flush(now=start + 62) == 0  # first minute ended, but within the grace
    assert audit_counts_flush(now=start + 66) == 1
    assert [(e.data["key_id"], e.data["count"]) for e in _failed_auth_events()] == [("k1", 3)]
    assert audit_counts_flush(now=start + 126) == 2
    assert sorted((e.data["key_id"], e.data["count"]) for e in _failed_auth_events()) == [("k1", 1), ("k1", 3), ("k2", 1)]


def test_a_failed_write_releases_the_minute_for_the_next_run(monkeypatch):
    from compliance.audit import counts

    start = _minute_start()
    audit_count(action="api_key.auth_failed", group="ip:198.51.100.1", data={"client_ip": "198.51.100.1"}, now=start + 1)

    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(counts, "_count_minute_write", broken)
    with pytest.raises(RuntimeError):
        audit_counts_flush(now=start + 120)
    monkeypatch.undo()
    assert audit_counts_flush(now=start + 120) == 1
    assert _failed_auth_events()[0].data["count"] == 1


def test_the_beat_task_flushes_counts_and_links_them():
    from compliance.tasks import advance_audit_chain

    start = time.time() - 180  # a minute that is long over
    for _ in range(7):
        audit_count(action="api_key.auth_failed", group="key:k9", data={"key_id": "k9"}, now=start)
    assert advance_audit_chain() == 1
    event = AuditEvent.objects.get(action="api_key.auth_failed")
    assert event.data["count"] == 7 and event.sequence == 1
