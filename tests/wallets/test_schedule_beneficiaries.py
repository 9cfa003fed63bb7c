"""Issue 12 item 17 for scheduled withdrawals: a schedule's IBAN/EXTERNAL beneficiary is stored as
a payout's is (wallets.beneficiaries: Fernet under the field keys, a masked copy, keyed hashes),
shown masked everywhere (API, webhooks, admin) with the payouts' one masking helper, re-encrypted
by `rotate_field_keys`, and given in full only to the withdrawal each occurrence makes."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.crypto import SecretDecryptionError
from compliance.models import AuditEvent
from core.models import OutboxMessage
from tests.factories.accounts import StaffUserFactory
from tests.factories.wallets import client_for, open_wallet, person
from tests.migrations import latest_migrations, migrate_to as _migrate
from wallets.beneficiaries import beneficiary_name_hash, beneficiary_open, beneficiaries_matching, mask_destination
from wallets.models import Payout, Schedule, ScheduleOccurrence
from wallets.schedules import schedules_run_due

URL = "/api/v1/schedules"
IBAN = "DE89370400440532013000"
NAME = "Alice Walker"
DESTINATION = {"type": "IBAN", "iban": IBAN, "name": NAME, "bank_name": "Deutsche Bank", "country": "DE"}
SHOWN = {"type": "IBAN", "iban": "DE89 **** **** **** 3000", "name": "A**** W*****", "bank_name": "Deutsche Bank", "country": "DE"}
OLD = "old-field-key-0123456789abcdefghijklmnopqrstuvwxyz"
NEW = "new-field-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _plain_in(text: str) -> list[str]:
    return [s for s in (IBAN, "DE89 3704 0044 0532 0130 00", NAME, "Walker") if s.lower() in text.lower()]


def _row_text(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def _start():
    return (timezone.now() + timedelta(minutes=1)).replace(microsecond=0)


def _schedule(user, *, destination=None, start=None):
    source = open_wallet(user, "EUR", funded="500", label=uuid.uuid4().hex[:8])
    body = {"source_wallet_id": source.pk, "amount": "100.00", "currency": "EUR", "rule": "FREQ=MONTHLY",
            "start_at": (start or _start()).isoformat(), "destination": destination or DESTINATION}
    response = client_for(user).post(URL, body, format="json", headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.content
    return response


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_scheduled_withdrawal_keeps_its_beneficiary_encrypted_and_shows_it_masked():
    """The bug: Schedule.destination held the IBAN and the name in clear, and the API showed the
    name in full and the IBAN through a masking helper of its own."""
    jane = person()
    start = _start()
    created = _schedule(jane, start=start)
    assert created.json()["destination"] == SHOWN == mask_destination(DESTINATION)
    assert not _plain_in(created.content.decode())
    schedule = Schedule.objects.get(pk=created.json()["id"])
    assert not _plain_in(_row_text("wallets_schedule", schedule.pk)), "in clear at rest"
    for page in (client_for(jane).get(URL), client_for(jane).get(f"{URL}/{schedule.pk}")):
        assert page.status_code == 200 and not _plain_in(page.content.decode())
    assert client_for(jane).get(f"{URL}/{schedule.pk}").json()["destination"] == SHOWN
    assert schedule.beneficiary_name_masked == "A**** W*****" and schedule.beneficiary_hash == beneficiary_name_hash(NAME)
    assert list(beneficiaries_matching(Schedule.objects.all(), iban_or_account="de89 3704 0044 0532 0130 00")) == [schedule]

    # At run time the withdrawal gets the full IBAN: its payout opens to it.
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    occurrence = ScheduleOccurrence.objects.get(schedule=schedule)
    assert occurrence.status == "succeeded", occurrence.failure_reason
    payout = Payout.objects.get(transaction=occurrence.transaction)
    assert beneficiary_open(payout).destination["iban"] == IBAN and beneficiary_open(payout).name == NAME
    assert payout.amount == Decimal("100")
    for event in AuditEvent.objects.all():
        assert not _plain_in(json.dumps(event.data, default=str)), event.action
    for message in OutboxMessage.objects.all():
        assert not _plain_in(json.dumps(message.payload, default=str)), message.topic


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_admin_shows_a_schedule_beneficiary_masked_and_finds_it_by_hash():
    jane = person()
    schedule = Schedule.objects.get(pk=_schedule(jane).json()["id"])
    other = Schedule.objects.get(pk=_schedule(jane, destination={**DESTINATION, "name": "Bob Other", "iban": "GB82WEST12345698765432",
                                                                 "country": "GB"}).json()["id"])
    staff = Client()
    staff.force_login(StaffUserFactory(is_superuser=True))
    listing = staff.get("/admin/wallets/schedule/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "A**** W*****" in page and not _plain_in(page)
    found = staff.get("/admin/wallets/schedule/", {"q": IBAN}).content.decode()
    assert f"/admin/wallets/schedule/{schedule.pk}/change/" in found and f"/admin/wallets/schedule/{other.pk}/change/" not in found
    change = staff.get(f"/admin/wallets/schedule/{schedule.pk}/change/")
    assert change.status_code == 200
    text = change.content.decode()
    assert "DE89 **** **** **** 3000" in text and not _plain_in(text) and schedule.destination_encrypted not in text


@pytest.mark.postgres
@pytest.mark.django_db
def test_rotate_field_keys_re_encrypts_and_re_hashes_schedule_beneficiaries(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    jane = person()
    start = _start()
    schedule = Schedule.objects.get(pk=_schedule(jane, start=start).json()["id"])
    old_hash = schedule.beneficiary_hash

    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    out = io.StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "wallets.Schedule: 1 re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key dropped: the schedule still opens and still pays
    schedule.refresh_from_db()
    assert beneficiary_open(schedule).destination == DESTINATION
    assert schedule.beneficiary_hash == beneficiary_name_hash(NAME) != old_hash
    assert list(beneficiaries_matching(Schedule.objects.all(), name="alice WALKER")) == [schedule]
    assert schedules_run_due(now=start + timedelta(seconds=1)) == 1
    assert ScheduleOccurrence.objects.get(schedule=schedule).status == "succeeded"

    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    with pytest.raises(SecretDecryptionError):
        beneficiary_open(schedule)


# --- The data migration ---------------------------------------------------------------------------------

BEFORE = [("wallets", "0004_payout_beneficiary_encrypted")]
AFTER = [("wallets", "0005_schedule_beneficiary_encrypted")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_schedules_written_before_it_and_migrating_back_restores_them():
    from tests.payorders.support import reseed

    reseed()
    jane, john = person(), person()
    source, target = open_wallet(jane, "EUR", funded="10.00"), open_wallet(john, "EUR")
    try:
        old_apps = _migrate(BEFORE)
        OldSchedule = old_apps.get_model("wallets", "Schedule")
        common = dict(user_id=jane.pk, source_wallet_id=source.pk, asset_id=source.asset_id, amount=Decimal("5"), rule="FREQ=DAILY",
                      start_at=timezone.now(), status="active")
        old = OldSchedule.objects.create(destination=DESTINATION, **common)
        to_wallet = OldSchedule.objects.create(destination_wallet_id=target.pk, **common)
        assert IBAN in _row_text("wallets_schedule", old.pk)  # the old shape: in clear

        _migrate(AFTER)
        assert not _plain_in(_row_text("wallets_schedule", old.pk))
        _migrate(latest_migrations())  # the model as it is now: later migrations add columns
        migrated = Schedule.objects.get(pk=old.pk)
        assert beneficiary_open(migrated).destination == DESTINATION and beneficiary_open(migrated).name == NAME
        assert migrated.destination_masked == SHOWN and migrated.beneficiary_name_masked == "A**** W*****"
        assert list(beneficiaries_matching(Schedule.objects.all(), iban_or_account=IBAN)) == [migrated]
        untouched = Schedule.objects.get(pk=to_wallet.pk)
        assert untouched.destination_wallet_id == target.pk and untouched.destination_encrypted == "" and untouched.destination_masked is None

        back = _migrate(BEFORE).get_model("wallets", "Schedule")
        assert back.objects.get(pk=old.pk).destination == DESTINATION
        assert back.objects.get(pk=to_wallet.pk).destination is None
    finally:
        _migrate(latest_migrations())
