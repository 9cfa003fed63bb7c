"""PATCH /api/v1/schedules/{id}: change what a schedule pays from now on (amount, rule, end,
description), never its wallets; closed schedules, bad values and a larger amount without the
step-up are refused with the spec's errors, and every change is audited."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pyotp
import pytest
from django.utils import timezone

from accounts.identity.totp import totp_confirm, totp_enrol
from compliance.models import AuditEvent
from ledger.checks import ledger_check
from ledger.models import Wallet
from tests.factories.wallets import client_for, open_wallet, person
from wallets.models import Schedule, ScheduleOccurrence
from wallets.schedules import schedules_run_due

pytestmark = pytest.mark.django_db
URL = "/api/v1/schedules"


def _start(minutes: int = 1):
    return (timezone.now() + timedelta(minutes=minutes)).replace(microsecond=0)


def _create(client, source, target, **extra) -> dict:
    body = {"source_wallet_id": source.pk, "destination_wallet_id": target.pk, "amount": "10.00", "currency": "USD",
            "rule": "FREQ=WEEKLY", "start_at": _start().isoformat(), **extra}
    response = client.post(URL, body, format="json", headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.content
    return response.json()


def _patch(client, sid: int, body, **headers):
    return client.patch(f"{URL}/{sid}", body, format="json", headers=headers)


@pytest.fixture
def jane_schedule():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="1000"), open_wallet(person(), "USD")
    client = client_for(jane)
    return jane, client, source, target, _create(client, source, target)


def test_amount_rule_end_and_description_change_and_the_next_run_follows(jane_schedule):
    _, client, source, target, schedule = jane_schedule
    end = (timezone.now() + timedelta(days=60)).replace(microsecond=0)
    changed = _patch(client, schedule["id"], {"amount": "25.50", "rule": "FREQ=DAILY;INTERVAL=2", "end_at": end.isoformat(),
                                              "description": "Rent share"})
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert body["amount"] == "25.50" and body["rule"] == "FREQ=DAILY;INTERVAL=2" and body["description"] == "Rent share"
    assert body["end_at"] == end.isoformat().replace("+00:00", "Z") and body["next_run_at"] == schedule["next_run_at"]
    event = AuditEvent.objects.filter(action="schedule.updated", target_id=str(schedule["id"])).get()
    assert event.data["changed"] == ["amount", "description", "end_at", "rule"]
    assert event.data["before"]["amount"] == "10.00" and event.data["after"]["amount"] == "25.50"
    # the next occurrence pays the new amount
    assert schedules_run_due(now=timezone.now() + timedelta(minutes=2)) == 1
    assert Wallet.objects.get(pk=target.pk).balance == Decimal("25.50")
    occurrence = ScheduleOccurrence.objects.get()
    after = Schedule.objects.get(pk=schedule["id"]).next_run_at
    assert after - occurrence.scheduled_for == timedelta(days=2)  # the new rule's next instance
    assert ledger_check() == []


def test_a_paused_schedule_keeps_no_next_run_until_resumed(jane_schedule):
    _, client, _, _, schedule = jane_schedule
    assert client.post(f"{URL}/{schedule['id']}/pause").status_code == 200
    changed = _patch(client, schedule["id"], {"rule": "FREQ=MONTHLY"})
    assert changed.status_code == 200 and changed.json()["next_run_at"] is None and changed.json()["status"] == "paused"
    resumed = client.post(f"{URL}/{schedule['id']}/resume").json()
    assert resumed["rule"] == "FREQ=MONTHLY" and resumed["next_run_at"] is not None


@pytest.mark.parametrize("body, field", [
    ({}, "non_field_errors"),
    ({"amount": "1.001"}, "amount"),
    ({"amount": "-5"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"rule": "FREQ=MINUTELY"}, "rule"),
    ({"rule": ""}, "rule"),
    ({"end_at": "yesterday"}, "end_at"),
    ({"end_at": "2020-01-01T00:00:00Z"}, "end_at"),
    ({"rule": "FREQ=DAILY;COUNT=1", "end_at": None}, None),  # allowed: one instance still to come
])
def test_bad_values_are_a_400_naming_the_field(jane_schedule, body, field):
    _, client, _, _, schedule = jane_schedule
    response = _patch(client, schedule["id"], body)
    if field is None:
        assert response.status_code == 200, response.content
        return
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and field in error["details"]["fields"], error
    assert Schedule.objects.get(pk=schedule["id"]).amount == Decimal("10.00")  # nothing half-written


def test_an_end_before_the_next_instance_leaves_nothing_to_pay_and_is_refused(jane_schedule):
    _, client, _, _, schedule = jane_schedule
    soon = (timezone.now() + timedelta(seconds=30)).replace(microsecond=0)  # before the first instance (in a minute)
    refused = _patch(client, schedule["id"], {"end_at": soon.isoformat()})
    assert refused.status_code == 400 and "end_at" in refused.json()["error"]["details"]["fields"]
    assert Schedule.objects.get(pk=schedule["id"]).end_at is None


def test_closed_schedules_are_409_and_others_schedules_404(jane_schedule):
    _, client, _, _, schedule = jane_schedule
    assert _patch(client_for(person()), schedule["id"], {"amount": "1.00"}).status_code == 404
    assert client.post(f"{URL}/{schedule['id']}/cancel").status_code == 200
    refused = _patch(client, schedule["id"], {"amount": "1.00"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
    assert refused.json()["error"]["details"] == {"schedule_id": schedule["id"], "status": "cancelled"}


def test_a_larger_amount_at_the_threshold_needs_the_step_up_again():
    jane = person()
    jane.customer.kyc_level = "verified"
    jane.customer.save(update_fields=["kyc_level"])
    enrolment = totp_enrol(user=jane)
    totp_confirm(user=jane, code=pyotp.TOTP(enrolment.secret).now())
    source, target = open_wallet(jane, "USD", funded="20000"), open_wallet(person(), "USD")
    client = client_for(jane)
    schedule = _create(client, source, target, amount="100.00")
    assert schedule["step_up_authorized"] is False
    refused = _patch(client, schedule["id"], {"amount": "6000.00"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "2FA_REQUIRED"
    assert Schedule.objects.get(pk=schedule["id"]).amount == Decimal("100.00")
    code = pyotp.TOTP(enrolment.secret).at(timezone.now(), counter_offset=1)
    allowed = _patch(client, schedule["id"], {"amount": "6000.00"}, **{"X-2FA-Code": code})
    assert allowed.status_code == 200 and allowed.json()["step_up_authorized"] is True
    # smaller again: no code needed, the authorization stays
    smaller = _patch(client, schedule["id"], {"amount": "5500.00"})
    assert smaller.status_code == 200 and smaller.json()["step_up_authorized"] is True
