"""Recurring payments (`wallets.schedules`, `/api/v1/schedules`) end to end over the API on
PostgreSQL: rule refusals, the state machine, occurrences paid through the money path by the
beat's runner (racing itself, killed mid-payment, beaten by a twin), failures recorded, retried
and notified, and the ledger's invariants after each."""

from __future__ import annotations

import importlib
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pyotp
import pytest
from django.core import mail
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from accounts.identity.totp import totp_confirm, totp_enrol
from accounts.models import WebhookDelivery
from compliance.models import AuditEvent, LimitRule, ReviewCase
from compliance.risk import register_risk_kind, unregister_risk_kind
from core.models import OutboxMessage
from core.outbox import handlers_for
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.services import wallet_suspend
from tests.factories.compliance import RiskRuleFactory, SanctionsEntryFactory
from tests.factories.orgs import key_client, make_org_key
from tests.factories.accounts import StaffUserFactory
from tests.concurrency import blocked_insert_pid, in_background, run_in_threads
from tests.factories.ledger_api import customer_wallet, platform_asset
from tests.factories.wallets import client_for, open_wallet, person
from wallets.beneficiaries import beneficiary_open
from wallets.models import Payout, Schedule, ScheduleOccurrence
from wallets.review import review_approve
from wallets.schedules import SCHEDULE_EMAIL_TOPIC, schedule_run_next_due, schedules_run_due

URL = "/api/v1/schedules"
IBAN = {"type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Smith", "bank_name": "Deutsche Bank", "country": "DE"}


def _start(minutes: int = 1):
    return (timezone.now() + timedelta(minutes=minutes)).replace(microsecond=0)


def _create(client, body: dict, **headers):
    return client.post(URL, body, format="json", headers={"Idempotency-Key": uuid.uuid4().hex, **headers})


def _body(source, to=None, *, amount="10.00", currency="USD", rule="FREQ=DAILY", start=None, **extra) -> dict:
    body = {"source_wallet_id": source.pk, "amount": amount, "currency": currency, "rule": rule,
            "start_at": (start or _start()).isoformat(), **extra}
    if to is not None:
        body["destination_wallet_id"] = to.pk
    return body


def _balance(wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).balance


def _deliver(topic: str) -> None:
    for message in OutboxMessage.objects.filter(topic=topic).order_by("id"):
        for handler in handlers_for(message.topic):
            handler(message)


def _actions(schedule_id: int) -> list[str]:
    return list(AuditEvent.objects.filter(target_type="wallets.schedule", target_id=str(schedule_id)).order_by("id")
                .values_list("action", flat=True))


# --- Rules ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("rule, words", [
    ("every month please", "FREQ must be one of"),
    ("FREQ=FORTNIGHTLY", "FREQ must be one of"),
    ("BYMONTHDAY=1", "FREQ must be one of"),
    ("FREQ=MINUTELY;INTERVAL=5", "at most hourly"),
    ("FREQ=SECONDLY", "at most hourly"),
    ("FREQ=HOURLY;BYMINUTE=0,30", "less than 3600 seconds apart"),
    ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0,15", "less than 3600 seconds apart"),
    ("FREQ=DAILY;BYHOUR=25", "Not a valid RRULE"),
    ("FREQ=DAILY;UNTIL=20270101T000000", "Not a valid RRULE"),  # UNTIL must be UTC with an aware start
    ("FREQ=DAILY;COUNT=abc", "Not a valid RRULE"),
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a positive integer"),
    ("FREQ=DAILY;INTERVAL=-1", "INTERVAL must be a positive integer"),
    ("FREQ=MONTHLY;BYSETPOS=400;BYDAY=MO", "Not a valid RRULE"),
    ("FREQ=DAILY;;", "Not a valid RRULE"),
    ("FREQ=DAILY;COUNT=0", "no occurrence"),
    ("FREQ=DAILY;BYDAY=XX", "Not a valid RRULE"),
    ("FREQ=WEEKLY;FOO=1", "Not a valid RRULE"),
    ("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY", "One RRULE line"),
    ("RRULE:FREQ=DAILY;EXDATE:20260101T000000Z", "Only an RRULE"),
    ("FREQ=DAILY;UNTIL=20200101T000000Z", "no occurrence"),
    ("", "This field may not be blank"),
])
def test_bad_rules_are_a_400_naming_rule(rule, words):
    jane = person()
    source = open_wallet(jane, "USD", funded="100")
    before = Schedule.objects.count()
    response = _create(client_for(jane), _body(source, open_wallet(person(), "USD"), rule=rule))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and "rule" in error["details"]["fields"], error
    assert words in error["message"], error["message"]
    assert Schedule.objects.count() == before


@pytest.mark.django_db
def test_an_impossible_rule_is_refused_quickly():
    """dateutil scans day by day to the year 9999 for a rule whose parts exclude each other (~4 s
    of CPU); the request gives up after RULE_EVALUATION_SECONDS and answers 400."""
    jane = person()
    source = open_wallet(jane, "USD", funded="100")
    began = time.monotonic()
    response = _create(client_for(jane), _body(source, open_wallet(person(), "USD"), rule="FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"))
    assert time.monotonic() - began < 3.5
    assert response.status_code == 400 and "rule" in response.json()["error"]["details"]["fields"]


@pytest.mark.django_db
def test_rule_bounded_by_end_at_and_other_field_errors():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    response = _create(client, _body(source, target, rule="FREQ=MONTHLY;BYMONTHDAY=1", start=start,
                                     end_at=(start + timedelta(hours=1)).isoformat()))
    if start.day != 1:  # no first-of-the-month within the hour
        assert response.status_code == 400 and "no occurrence between" in response.json()["error"]["message"]
    for body, field in (
        (_body(source, target, start=timezone.now() - timedelta(days=1)), "start_at"),
        (_body(source, target, start=start, end_at=start.isoformat()), "end_at"),
        (_body(source, target, start=start.replace(year=9999)), "start_at"),
        (_body(source, target, amount="1.001"), "amount"),
        ({**_body(source, target), "destination": IBAN}, "destination_wallet_id"),
        (_body(source), "destination_wallet_id"),
        (_body(source, source), "destination_wallet_id"),
    ):
        response = _create(client, body)
        assert response.status_code == 400, (field, response.content)
        assert field in response.json()["error"]["details"]["fields"], (field, response.json())
    mismatch = _create(client, _body(source, target, currency="EUR"))
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "CURRENCY_MISMATCH"
    bad_iban = _create(client, _body(source, destination={**IBAN, "iban": "DE00370400440532013000"}))
    assert bad_iban.status_code == 400 and bad_iban.json()["error"]["code"] == "INVALID_IBAN"
    others = _create(client_for(person()), _body(source, target))
    assert others.status_code == 404
    assert not Schedule.objects.exists()


# --- Create, read, pause, resume, cancel -----------------------------------------------------------------


@pytest.mark.django_db
def test_states_and_invalid_transitions():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    created = _create(client, _body(source, target, rule="FREQ=WEEKLY;COUNT=3", start=start, description="Allowance"))
    assert created.status_code == 201, created.content
    schedule = created.json()
    sid = schedule["id"]
    assert created["Location"] == f"/api/v1/schedules/{sid}"
    assert schedule["status"] == "active" and schedule["next_run_at"] == start.isoformat().replace("+00:00", "Z")
    assert schedule["amount"] == "10.00" and schedule["currency"] == "USD" and schedule["step_up_authorized"] is False

    assert client.post(f"{URL}/{sid}/resume").status_code == 409
    paused = client.post(f"{URL}/{sid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused" and paused.json()["next_run_at"] is None
    again = client.post(f"{URL}/{sid}/pause")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    assert again.json()["error"]["details"] == {"schedule_id": sid, "status": "paused"}
    resumed = client.post(f"{URL}/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active" and resumed.json()["next_run_at"]
    cancelled = client.post(f"{URL}/{sid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled" and cancelled.json()["closed_at"]
    for action in ("pause", "resume", "cancel"):
        refused = client.post(f"{URL}/{sid}/{action}")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE", action
    assert _actions(sid) == ["schedule.created", "schedule.paused", "schedule.resumed", "schedule.cancelled"]

    listed = client.get(URL, {"status": "cancelled"}).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == sid
    assert client.get(URL, {"status": "nope"}).status_code == 400
    assert client.get(f"{URL}/{sid}").json()["status"] == "cancelled"
    assert client.get(f"{URL}/{sid}", {"at": "x"}).status_code == 400  # unknown query parameter on a detail endpoint
    stranger = client_for(person())
    assert stranger.get(f"{URL}/{sid}").status_code == 404
    assert stranger.post(f"{URL}/{sid}/pause").status_code == 404
    assert stranger.get(f"{URL}/{sid}/occurrences").status_code == 404
    # nothing is paid for a cancelled schedule
    assert schedules_run_due(now=start + timedelta(days=30)) == 0
    assert _balance(target) == 0


@pytest.mark.django_db
def test_create_is_idempotent():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    client = client_for(jane)
    key = uuid.uuid4().hex
    body = _body(source, target)
    first = client.post(URL, body, format="json", headers={"Idempotency-Key": key})
    replay = client.post(URL, body, format="json", headers={"Idempotency-Key": key})
    assert first.status_code == 201 and replay["Idempotency-Replayed"] == "true" and replay.content == first.content
    assert Schedule.objects.count() == 1
    assert client.post(URL, body, format="json").json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"


# --- Paying occurrences --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_occurrences_are_paid_through_the_money_path_until_the_rule_ends():
    jane, john = person(), person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(john, "USD")
    client = client_for(jane)
    start = _start()
    sid = _create(client, _body(source, target, amount="25.00", rule="FREQ=DAILY;COUNT=2", start=start, description="Rent share")).json()["id"]
    assert schedules_run_due(now=start - timedelta(seconds=1)) == 0  # not due yet
    assert schedules_run_due(now=start + timedelta(seconds=5)) == 1
    assert _balance(source) == Decimal("75.00") and _balance(target) == Decimal("25.00")
    assert schedules_run_due(now=start + timedelta(seconds=10)) == 0  # the next one is tomorrow
    assert schedules_run_due(now=start + timedelta(days=1, seconds=5)) == 1
    assert _balance(source) == Decimal("50.00") and _balance(target) == Decimal("50.00")
    assert schedules_run_due(now=start + timedelta(days=5)) == 0

    detail = client.get(f"{URL}/{sid}").json()
    assert detail["status"] == "completed" and detail["next_run_at"] is None and detail["closed_at"]
    page = client.get(f"{URL}/{sid}/occurrences", {"limit": 1}).json()
    assert page["count"] == 2 and page["limit"] == 1 and len(page["results"]) == 1
    newest = page["results"][0]
    assert newest["status"] == "succeeded" and newest["attempts"] == 1 and newest["transaction_status"] == "completed"
    assert newest["idempotency_key"] == f"schedule:{sid}:{(start + timedelta(days=1)):%Y%m%dT%H%M%SZ}"
    tx = Transaction.objects.get(pk=newest["transaction_id"])
    assert tx.type == "transfer" and tx.reference == newest["idempotency_key"] + ":1" and tx.description == "Rent share"
    assert AuditEvent.objects.filter(action="transfer.completed").count() == 2  # the money path's own audit
    assert "schedule.completed" in [e.action for e in AuditEvent.objects.filter(target_id=str(sid))]
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_iban_schedule_pays_a_withdrawal_with_its_payout():
    jane = person()
    source = open_wallet(jane, "EUR", funded="500")
    client = client_for(jane)
    start = _start()
    created = _create(client, _body(source, amount="100.00", currency="EUR", rule="FREQ=MONTHLY", start=start, destination=IBAN))
    assert created.status_code == 201, created.content
    assert created.json()["destination"]["iban"] == "DE89 **** **** **** 3000"
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "succeeded" and occurrence.transaction.type == "withdrawal"
    assert occurrence.transaction.status == "pending"  # the payout is in flight, as POST /withdrawals answers 202
    payout = Payout.objects.get(transaction=occurrence.transaction)
    assert payout.amount == Decimal("100") and beneficiary_open(payout).destination["iban"] == "DE89370400440532013000"
    assert occurrence.transaction.reference == f"{occurrence.idempotency_key}:1"
    source.refresh_from_db()
    assert source.held == payout.amount + payout.fee and source.balance == Decimal("500")
    assert ledger_check() == []


@pytest.mark.django_db
def test_missed_instances_are_paid_once_each_and_pause_skips_them():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    sid = _create(client, _body(source, target, amount="1.00", rule="FREQ=HOURLY", start=start)).json()["id"]
    assert schedules_run_due(now=start + timedelta(hours=3, minutes=1)) == 4  # the worker was down: 4 instances, each once
    assert _balance(target) == Decimal("4.00")
    assert schedules_run_due(now=start + timedelta(hours=3, minutes=2)) == 0
    client.post(f"{URL}/{sid}/pause")
    client.post(f"{URL}/{sid}/resume")  # resumed now, i.e. before start + 4 h: next is the next instance after now
    schedule = Schedule.objects.get(pk=sid)
    assert schedule.next_run_at > timezone.now()
    assert ledger_check() == []


# --- Failures, retries and notifications -----------------------------------------------------------------


@pytest.mark.django_db
def test_insufficient_funds_is_recorded_retried_and_emailed_then_fails():
    jane = person("jane.schedules@example.com")
    source, target = open_wallet(jane, "USD", funded="5"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    sid = _create(client, _body(source, target, amount="10.00", rule="FREQ=YEARLY", start=start)).json()["id"]
    t1 = start + timedelta(seconds=1)
    assert schedules_run_due(now=t1) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "retrying" and occurrence.attempts == 1 and occurrence.failure_code == "INSUFFICIENT_FUNDS"
    assert occurrence.next_attempt_at == t1 + timedelta(hours=1)
    assert occurrence.transaction.status == "failed"  # the money path recorded the failed transaction, as for the API
    _deliver(SCHEDULE_EMAIL_TOPIC)
    assert [m.to for m in mail.outbox] == [["jane.schedules@example.com"]]
    assert "INSUFFICIENT_FUNDS" in mail.outbox[0].body and "try again" in mail.outbox[0].body

    assert schedules_run_due(now=t1 + timedelta(minutes=59)) == 0  # not yet
    t2 = t1 + timedelta(hours=1, seconds=1)
    assert schedules_run_due(now=t2) == 1
    occurrence.refresh_from_db()
    assert occurrence.status == "retrying" and occurrence.attempts == 2 and occurrence.next_attempt_at == t2 + timedelta(hours=23)
    t3 = t2 + timedelta(hours=23, seconds=1)
    assert schedules_run_due(now=t3) == 1
    occurrence.refresh_from_db()
    assert occurrence.status == "failed" and occurrence.attempts == 3 and occurrence.next_attempt_at is None
    assert list(Transaction.objects.filter(reference__startswith=occurrence.idempotency_key).order_by("id")
                .values_list("reference", "status")) == [(f"{occurrence.idempotency_key}:{n}", "failed") for n in (1, 2, 3)]
    _deliver(SCHEDULE_EMAIL_TOPIC)
    assert len(mail.outbox) == 1 + 3  # handler re-run for the first message too: one mail per attempt, keyed
    assert "will not be tried again" in mail.outbox[-1].body
    assert AuditEvent.objects.filter(action="schedule.occurrence_failed").count() == 3
    assert _balance(source) == Decimal("5") and _balance(target) == 0
    assert Schedule.objects.get(pk=sid).status == "active"  # the next year's instance is still scheduled
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_retry_pays_once_funds_arrive_and_a_pause_drops_retries():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="5"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    _create(client, _body(source, target, amount="10.00", rule="FREQ=YEARLY", start=start))
    other = _create(client, _body(source, target, amount="50.00", rule="FREQ=YEARLY", start=start)).json()["id"]
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 2
    assert set(ScheduleOccurrence.objects.values_list("status", flat=True)) == {"retrying"}
    client.post(f"{URL}/{other}/pause")
    dropped = ScheduleOccurrence.objects.get(schedule_id=other)
    assert dropped.status == "skipped" and dropped.next_attempt_at is None
    client.post("/api/v1/deposits", {"wallet_id": source.pk, "amount": "100.00"}, format="json", headers={"Idempotency-Key": uuid.uuid4().hex})
    assert schedules_run_due(now=start + timedelta(hours=2)) == 1
    paid = ScheduleOccurrence.objects.exclude(schedule_id=other).get()
    assert paid.status == "succeeded" and paid.attempts == 2 and paid.failure_code == ""
    assert _balance(target) == Decimal("10.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_limit_and_inactive_wallets_fail_with_their_codes():
    LimitRule.objects.update_or_create(  # KYC none (the seeded default; a transactional test's flush may have removed it)
        kyc_level="none", movement_type="transfer", direction="outgoing", currency="",
        defaults={"single_limit": Decimal("1000"), "daily_limit": Decimal("2000"), "monthly_limit": Decimal("5000")},
    )
    jane = person()
    source, target = open_wallet(jane, "USD", funded="5000"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    _create(client, _body(source, target, amount="1500.00", rule="FREQ=YEARLY", start=start))
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "retrying" and occurrence.failure_code == "LIMIT_EXCEEDED" and occurrence.transaction is None
    assert "single-transaction limit" in occurrence.failure_reason
    wallet_suspend(wallet=source)
    assert _create(client, _body(source, target)).json()["error"]["code"] == "WALLET_INACTIVE"
    assert _balance(source) == Decimal("5000") and ledger_check() == []


@pytest.mark.django_db
def test_step_up_at_creation_authorizes_the_occurrences():
    jane = person()
    jane.customer.kyc_level = "verified"
    jane.customer.save(update_fields=["kyc_level"])
    enrolment = totp_enrol(user=jane)
    totp_confirm(user=jane, code=pyotp.TOTP(enrolment.secret).now())
    source, target = open_wallet(jane, "USD", funded="20000"), open_wallet(person(), "USD")
    client = client_for(jane)
    start = _start()
    body = _body(source, target, amount="6000.00", rule="FREQ=WEEKLY", start=start)
    refused = _create(client, body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "2FA_REQUIRED"
    code = pyotp.TOTP(enrolment.secret).at(timezone.now(), counter_offset=1)
    created = _create(client, body, **{"X-2FA-Code": code})
    assert created.status_code == 201 and created.json()["step_up_authorized"] is True
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "succeeded", (occurrence.failure_code, occurrence.failure_reason)
    assert _balance(target) == Decimal("6000.00")
    # one created below the threshold is not authorized: should the threshold fall, its occurrence fails (not retried)
    small = _create(client, _body(source, target, amount="100.00", rule="FREQ=WEEKLY", start=start)).json()
    assert small["step_up_authorized"] is False
    from django.test import override_settings

    with override_settings(TWO_FACTOR_THRESHOLD=Decimal("50")):
        schedules_run_due(now=start + timedelta(seconds=2))
    failed = ScheduleOccurrence.objects.get(schedule_id=small["id"])
    assert failed.status == "failed" and failed.failure_code == "2FA_REQUIRED" and "X-2FA-Code" in failed.failure_reason
    assert ledger_check() == []


@pytest.fixture
def review_everything_over_100():
    @register_risk_kind("test_schedule_over_100")
    def over_100(rule, ctx):
        return "over 100" if ctx.amount > Decimal("100") else None

    rule = RiskRuleFactory(name="test", kind="test_schedule_over_100", action="review", params={})
    yield rule
    unregister_risk_kind("test_schedule_over_100")


@pytest.mark.django_db
def test_an_occurrence_held_for_review_is_recorded_notified_and_not_retried(review_everything_over_100):
    jane = person("jane.review@example.com")
    source, target = open_wallet(jane, "USD", funded="500"), open_wallet(person(), "USD")
    start = _start()
    _create(client_for(jane), _body(source, target, amount="150.00", rule="FREQ=WEEKLY", start=start))
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "in_review" and occurrence.failure_code == "IN_REVIEW" and occurrence.next_attempt_at is None
    assert occurrence.transaction.status == "in_review"
    assert ReviewCase.objects.get(transaction=occurrence.transaction).status == "open"
    assert Wallet.objects.get(pk=source.pk).held == Decimal("150.00")
    _deliver(SCHEDULE_EMAIL_TOPIC)
    assert len(mail.outbox) == 1 and "compliance review" in mail.outbox[0].body
    assert schedules_run_due(now=start + timedelta(days=2)) == 0  # never retried
    review_approve(case=ReviewCase.objects.get(), actor=StaffUserFactory(), reason="known customer")
    assert _balance(target) == Decimal("150.00") and ledger_check() == []


@pytest.fixture
def seeded_defaults(db):
    """The seed migration's limits, fees and risk rules (a transactional test's flush removes them)."""
    from django.apps import apps

    importlib.import_module("compliance.migrations.0005_seed_defaults").seed(apps, None)


@pytest.mark.django_db
def test_a_sanctioned_beneficiary_fails_at_once(seeded_defaults):
    SanctionsEntryFactory(name="Ivan Sanctioned Petrov")
    jane = person()
    source = open_wallet(jane, "EUR", funded="500")
    start = _start()
    created = _create(client_for(jane), _body(source, amount="10.00", currency="EUR", rule="FREQ=WEEKLY", start=start,
                                              destination={**IBAN, "name": "Ivan Petrov Sanctioned"}))
    assert created.status_code == 201
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "failed" and occurrence.failure_code == "TRANSACTION_REJECTED" and occurrence.attempts == 1
    assert _balance(source) == Decimal("500") and not Payout.objects.exists() and ledger_check() == []


# --- Organizations ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_organization_schedules_pay_between_its_wallets_and_webhook_failures():
    alpha, beta = make_org_key("Alpha"), make_org_key("Beta")
    usd = platform_asset("USD")
    payer = customer_wallet(alpha, usd, "30", external_id="payer")
    payee = customer_wallet(alpha, usd, external_id="payee")
    client = key_client(alpha)
    assert client.post("/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks", "events": ["schedule.occurrence_failed"]},
                       format="json").status_code == 201
    start = _start()
    iban = _create(client, _body(payer, destination=IBAN, start=start))
    assert iban.status_code == 400 and "destination" in iban.json()["error"]["details"]["fields"]
    created = _create(client, _body(payer, payee, amount="20.00", rule="FREQ=DAILY;COUNT=2", start=start))
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    assert key_client(beta).get(f"{URL}/{sid}").status_code == 404
    assert _create(key_client(beta), _body(payer, payee)).status_code == 404
    schedules_run_due(now=start + timedelta(seconds=1))
    assert _balance(payee) == Decimal("20.00")
    schedules_run_due(now=start + timedelta(days=1, seconds=1))  # 10 left: insufficient
    failed = ScheduleOccurrence.objects.get(schedule_id=sid, status="retrying")
    assert failed.failure_code == "INSUFFICIENT_FUNDS" and failed.transaction.status == "failed"
    assert failed.transaction.organization_id == alpha.organization.pk
    delivery = WebhookDelivery.objects.get(event_type="schedule.occurrence_failed")
    data = delivery.payload["data"]
    assert delivery.organization_id == alpha.organization.pk
    assert data["id"] == failed.pk and data["failure_code"] == "INSUFFICIENT_FUNDS" and data["schedule"]["id"] == sid
    assert not OutboxMessage.objects.filter(topic=SCHEDULE_EMAIL_TOPIC).exists()  # organizations get webhooks, not mail
    page = client.get(f"{URL}/{sid}/occurrences").json()
    assert [o["status"] for o in page["results"]] == ["retrying", "succeeded"]
    assert client.get(URL).json()["count"] == 1 and key_client(beta).get(URL).json()["count"] == 0
    assert ledger_check() == []


# --- Concurrency and crashes (real transactions) ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_occurrence_racing_itself_in_four_workers_pays_once():
    usd = platform_asset("USD")
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    assert usd.pk == source.asset_id
    start = _start()
    assert _create(client_for(jane), _body(source, target, amount="10.00", rule="FREQ=DAILY", start=start)).status_code == 201
    now = start + timedelta(seconds=1)
    results = run_in_threads(4, lambda i: schedules_run_due(now=now))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(results) == 1
    assert ScheduleOccurrence.objects.count() == 1 and _balance(target) == Decimal("10.00")
    assert Transaction.objects.filter(type="transfer").count() == 1
    assert ledger_check() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_paying_leaves_nothing_and_the_next_run_pays_once():
    """We hold an uncommitted occurrence row for the same instance, so the runner blocks right
    after the money path posted, at its occurrence insert; then its database backend is
    terminated (a worker killed before COMMIT). Nothing may remain; the next run pays once."""
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    start = _start()
    sid = _create(client_for(jane), _body(source, target, amount="10.00", rule="FREQ=DAILY", start=start)).json()["id"]
    now = start + timedelta(seconds=1)

    def worker():
        try:
            return schedule_run_next_due(now=now)
        except OperationalError as exc:  # its connection was terminated under it
            return exc

    thread, outcome = in_background(worker)
    with transaction.atomic():
        ScheduleOccurrence.objects.create(schedule_id=sid, scheduled_for=start, idempotency_key="blocker", status="failed")
        thread.start()
        pid = blocked_insert_pid("wallets_scheduleoccurrence")
        assert pid is not None, "the runner never reached its occurrence insert"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        transaction.set_rollback(True)
    thread.join(timeout=30)
    assert isinstance(outcome["result"], OperationalError)  # the worker died with its transaction
    assert _balance(target) == 0 and _balance(source) == Decimal("100")
    assert not ScheduleOccurrence.objects.exists() and not Transaction.objects.filter(type="transfer").exists()
    assert Schedule.objects.get(pk=sid).next_run_at == start
    assert ledger_check() == []
    assert schedules_run_due(now=now) == 1
    assert schedules_run_due(now=now) == 0  # a redelivered beat task finds nothing due
    assert _balance(target) == Decimal("10.00") and ScheduleOccurrence.objects.get().status == "succeeded"
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_instance_already_paid_is_never_paid_again():
    """Were a schedule's advance ever lost (its `next_run_at` pointing at an instance that has
    its occurrence), the runner moves on without paying: the occurrence row, unique per
    (schedule, instance), is the record of what was paid. (Two workers cannot both reach the
    insert: the schedule's row lock serialises them; a worker killed at that insert is above.)"""
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    start = _start()
    sid = _create(client_for(jane), _body(source, target, amount="10.00", rule="FREQ=DAILY", start=start)).json()["id"]
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    Schedule.objects.filter(pk=sid).update(next_run_at=start)  # the lost advance
    assert schedules_run_due(now=start + timedelta(seconds=2)) == 1
    assert _balance(target) == Decimal("10.00") and ScheduleOccurrence.objects.count() == 1
    assert Schedule.objects.get(pk=sid).next_run_at == start + timedelta(days=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleOccurrence.objects.create(schedule_id=sid, scheduled_for=start, idempotency_key="again", status="succeeded")
    assert ledger_check() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pause_waits_for_the_occurrence_being_paid():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    start = _start()
    client = client_for(jane)
    sid = _create(client, _body(source, target, amount="10.00", rule="FREQ=DAILY", start=start)).json()["id"]
    results = run_in_threads(2, lambda i: schedules_run_due(now=start + timedelta(seconds=1)) if i == 0
                             else client_for(jane).post(f"{URL}/{sid}/pause").status_code)
    assert results[1] == 200 and results[0] in (0, 1)
    assert ScheduleOccurrence.objects.count() == results[0] and _balance(target) == Decimal("10.00") * results[0]
    assert Schedule.objects.get(pk=sid).status == "paused"
    assert ledger_check() == []


@pytest.mark.django_db
def test_staff_see_schedules_and_occurrences_read_only_in_the_admin(admin_client):
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    start = _start()
    sid = _create(client_for(jane), _body(source, target, rule="FREQ=WEEKLY;BYDAY=FR", start=start)).json()["id"]
    schedules_run_due(now=start + timedelta(days=8))
    page = admin_client.get("/admin/wallets/schedule/")
    assert page.status_code == 200 and b"FREQ=WEEKLY;BYDAY=FR" in page.content
    occurrences = admin_client.get("/admin/wallets/scheduleoccurrence/")
    assert occurrences.status_code == 200 and b"succeeded" in occurrences.content
    assert admin_client.post(f"/admin/wallets/schedule/{sid}/delete/", {"post": "yes"}).status_code == 403
    assert Schedule.objects.filter(pk=sid).exists()


@pytest.mark.django_db
def test_the_beat_task_pays_what_is_due_now():
    from config.celery import app
    from wallets.tasks import run_schedules

    assert app.conf.beat_schedule["wallets.run_schedules"]["task"] == run_schedules.name
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    created = _create(client_for(jane), _body(source, target, amount="3.00", rule="FREQ=DAILY", start=_start(minutes=0)))
    assert created.status_code == 201, created.content
    assert run_schedules.apply().get() == 1
    assert run_schedules.apply().get() == 0
    assert _balance(target) == Decimal("3.00") and ledger_check() == []


@pytest.mark.postgres
@pytest.mark.django_db
def test_due_schedules_are_read_off_the_partial_next_run_at_index():
    from wallets.schedules import schedules_due

    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    now = timezone.now()
    common = dict(user=jane, source_wallet=source, destination_wallet=target, asset=source.asset, amount=Decimal("1"),
                  rule="FREQ=DAILY", start_at=now)
    Schedule.objects.bulk_create(
        [Schedule(**common, status="completed", next_run_at=None) for _ in range(4000)]
        + [Schedule(**common, status="active", next_run_at=now + timedelta(days=1 + i)) for i in range(1000)]
        + [Schedule(**common, status="active", next_run_at=now - timedelta(minutes=i)) for i in range(3)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallets_schedule")
    plan = schedules_due(now)[:1].explain()
    assert "Index Scan using schedule_due on wallets_schedule" in plan and "Seq Scan on wallets_schedule" not in plan, plan
    assert schedules_due(now).first().next_run_at == now - timedelta(minutes=2)


@pytest.mark.django_db
def test_a_rule_whose_next_instance_is_past_the_calendar_completes():
    jane = person()
    source, target = open_wallet(jane, "USD", funded="100"), open_wallet(person(), "USD")
    start = _start()
    sid = _create(client_for(jane), _body(source, target, amount="1.00", rule="FREQ=YEARLY;INTERVAL=9000", start=start)).json()["id"]
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    schedule = Schedule.objects.get(pk=sid)
    assert schedule.status == "completed" and schedule.next_run_at is None and _balance(target) == Decimal("1.00")


@pytest.mark.django_db
def test_a_member_acts_for_the_organization_with_x_organization_and_for_themself_without():
    alpha = make_org_key("Alpha")
    usd = platform_asset("USD")
    payer, payee = customer_wallet(alpha, usd, "30", external_id="m-payer"), customer_wallet(alpha, usd, external_id="m-payee")
    member = client_for(alpha.owner)
    as_org = {"X-Organization": str(alpha.organization.pk)}
    created = _create(member, _body(payer, payee, amount="5.00"), **as_org)
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    assert member.get(f"{URL}/{sid}", headers=as_org).status_code == 200
    assert member.get(f"{URL}/{sid}").status_code == 404  # without the header: the person's own schedules
    assert _create(member, _body(payer, payee)).status_code == 404  # and the organization's wallets are not the person's
    paused = member.post(f"{URL}/{sid}/pause", headers=as_org)
    assert paused.status_code == 200
    event = AuditEvent.objects.get(action="schedule.paused")
    assert event.actor_id == alpha.owner.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_withdrawal_whose_payout_fails_later_is_recorded_and_emailed(settings):
    """The dispatcher and the payout provider run outside any transaction: real commits."""
    from core.outbox import outbox_dispatch
    from tests.payorders.support import reseed
    from wallets.movements.payouts import payout_settle

    reseed()
    settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 0
    jane = person("jane.payout@example.com")
    source = open_wallet(jane, "EUR", funded="500")
    start = _start()
    created = _create(client_for(jane), _body(source, amount="40.00", currency="EUR", rule="FREQ=MONTHLY", start=start,
                                              destination={**IBAN, "name": "Fail Example"}))
    assert created.status_code == 201, created.content
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get()
    assert occurrence.status == "succeeded" and occurrence.transaction.status == "pending"
    for message in OutboxMessage.objects.filter(topic="payout.send"):
        assert outbox_dispatch(message_id=message.pk) == "dispatched"
    payout = Payout.objects.get(transaction=occurrence.transaction)
    assert payout_settle(payout_id=payout.pk).status == "failed"
    occurrence.refresh_from_db()
    assert occurrence.status == "failed" and occurrence.failure_code == "PAYOUT_FAILED" and occurrence.next_attempt_at is None
    for message in OutboxMessage.objects.filter(topic=SCHEDULE_EMAIL_TOPIC):
        assert outbox_dispatch(message_id=message.pk) == "dispatched"
    assert [m.to for m in mail.outbox] == [["jane.payout@example.com"]] and "PAYOUT_FAILED" in mail.outbox[0].body
    after = Wallet.objects.get(pk=source.pk)
    assert (after.balance, after.held) == (Decimal("500"), Decimal("0"))
    assert ledger_check() == []
