"""Issue 12 item 17: payout beneficiaries (IBAN, account, name) are encrypted at rest under the
field keys, found by keyed hashes, shown masked everywhere (API, admin, audit, logs), in plain
text only for the payout provider; the data migration encrypts rows written before it, and
`rotate_field_keys` re-encrypts and re-hashes them."""

from __future__ import annotations

import io
import json
import logging
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts.crypto import SecretDecryptionError
from compliance.models import AuditEvent
from core.models import OutboxMessage
from core.outbox import outbox_dispatch
from ledger.models import Transaction
from tests.factories.accounts import StaffUserFactory
from tests.payorders.support import reseed
from tests.factories.wallets import client_for, open_wallet, person
from tests.migrations import latest_migrations as _latest, migrate_to as _migrate
from wallets.beneficiaries import (
    beneficiary_name_hash,
    mask_iban,
    mask_name,
    beneficiary_open,
    beneficiaries_matching,
)
from wallets.models import Payout

URL = "/api/v1/withdrawals"
IBAN = "DE89370400440532013000"
NAME = "Alice Walker"
MASKED_IBAN = "DE89 **** **** **** 3000"
OLD = "old-field-key-0123456789abcdefghijklmnopqrstuvwxyz"
NEW = "new-field-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _withdraw(user, *, name=NAME, iban=IBAN, amount="50.00"):
    wallet = open_wallet(user, "EUR", funded="500.00", label=uuid.uuid4().hex[:8])
    destination = {"type": "IBAN", "iban": iban, "name": name, "bank_name": "Deutsche Bank", "country": iban[:2]}
    response = client_for(user).post(URL, {"wallet_id": wallet.pk, "amount": amount, "destination": destination},
                                     format="json", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 202, response.content
    return response


def _row_text(table: str, pk: int) -> str:
    """Every column of a row as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def _plain_in(text: str) -> list[str]:
    return [s for s in (IBAN, "DE89 3704 0044 0532 0130 00", NAME, "Walker") if s.lower() in text.lower()]


def test_masks():
    assert mask_iban(IBAN) == MASKED_IBAN
    assert mask_iban("DE89 3704 0044 0532 0130 00") == MASKED_IBAN
    assert mask_iban("NO9386011117947") == "NO93 **** 7947"
    assert mask_name(NAME) == "A**** W*****"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_stores_its_beneficiary_encrypted_and_shows_it_masked(settings, caplog):
    """The bug: Payout.destination and Payout.beneficiary_name held the IBAN and the name in clear."""
    reseed()
    settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 0
    user = person()
    with caplog.at_level(logging.DEBUG):
        response = _withdraw(user)
        body = response.json()
        shown = body["payout"]
        assert shown["destination"]["iban"] == MASKED_IBAN and shown["destination"]["name"] == "A**** W*****"
        assert shown["beneficiary_name"] == "A**** W*****" and not _plain_in(response.content.decode())
        for message in OutboxMessage.objects.filter(topic="payout.send"):
            assert outbox_dispatch(message_id=message.pk) == "dispatched"
        for message in OutboxMessage.objects.filter(topic="payout.check", status="pending"):
            outbox_dispatch(message_id=message.pk)
        detail = client_for(user).get(f"{URL}/{body['id']}")
        assert detail.json()["status"] == "completed", detail.content
        assert not _plain_in(detail.content.decode())
        listing = client_for(user).get(URL)
        assert listing.status_code == 200 and not _plain_in(listing.content.decode())

    payout = Payout.objects.get(pk=shown["id"])
    assert not _plain_in(_row_text("wallets_payout", payout.pk)), "in clear at rest"
    assert not _plain_in(_row_text("ledger_transaction", body["id"]))
    for event in AuditEvent.objects.all():
        assert not _plain_in(json.dumps(event.data)), event.action
    withdrawal_event = AuditEvent.objects.get(action="withdrawal.pending")
    assert withdrawal_event.data["beneficiary_name"] == "A**** W*****"
    assert withdrawal_event.data["beneficiary_hash"] == payout.beneficiary_hash
    for message in OutboxMessage.objects.all():
        assert not _plain_in(json.dumps(message.payload))
    assert not _plain_in(caplog.text), "in the log"

    # The plain text is there for the provider (and screening), and only through this door.
    plain = beneficiary_open(payout)
    assert plain.name == NAME and plain.destination == {"name": NAME, "iban": IBAN, "country": "DE", "bank_name": "Deutsche Bank"}
    assert payout.destination_masked == {"name": "A**** W*****", "iban": MASKED_IBAN, "country": "DE", "bank_name": "Deutsche Bank"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_provider_sees_the_real_name():
    """The sandbox provider refuses a beneficiary named REJECT: it reads the decrypted name."""
    reseed()
    user = person()
    response = _withdraw(user, name="Reject Me")
    for message in OutboxMessage.objects.filter(topic="payout.send"):
        outbox_dispatch(message_id=message.pk)
    payout = Payout.objects.get(pk=response.json()["payout"]["id"])
    assert payout.status == "failed" and payout.beneficiary_name_masked == "R***** M*"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_payouts_are_found_by_keyed_hash_and_the_admin_shows_them_masked():
    reseed()
    user = person()
    first = Payout.objects.get(pk=_withdraw(user).json()["payout"]["id"])
    _withdraw(user, name="Bob Other", iban="GB82WEST12345698765432")
    assert list(beneficiaries_matching(Payout.objects.all(), name="  alice   WALKER ")) == [first]
    assert list(beneficiaries_matching(Payout.objects.all(), iban_or_account="de89 3704 0044 0532 0130 00")) == [first]
    assert list(beneficiaries_matching(Payout.objects.all(), name=NAME, iban_or_account="GB82WEST12345698765432")) == []
    assert first.beneficiary_hash == beneficiary_name_hash("alice walker") and len(first.account_hash) == 64

    staff = Client()
    staff.force_login(StaffUserFactory(is_superuser=True))
    listing = staff.get("/admin/wallets/payout/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "A**** W*****" in page and not _plain_in(page)
    found = staff.get("/admin/wallets/payout/", {"q": IBAN}).content.decode()
    assert f"/admin/wallets/payout/{first.pk}/change/" in found and "B** O****" not in found
    change = staff.get(f"/admin/wallets/payout/{first.pk}/change/").content.decode()
    assert MASKED_IBAN in change and not _plain_in(change) and first.destination_encrypted not in change


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rotate_field_keys_re_encrypts_and_re_hashes_payout_beneficiaries(settings):
    reseed()
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    payout = Payout.objects.get(pk=_withdraw(person()).json()["payout"]["id"])
    old_hash = payout.beneficiary_hash

    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    assert list(beneficiaries_matching(Payout.objects.all(), name=NAME)) == [payout]  # found under the old key meanwhile
    out = io.StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "wallets.Payout: 1 re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key dropped
    payout.refresh_from_db()
    assert beneficiary_open(payout).name == NAME and beneficiary_open(payout).destination["iban"] == IBAN
    assert payout.beneficiary_hash == beneficiary_name_hash(NAME) != old_hash
    assert list(beneficiaries_matching(Payout.objects.all(), iban_or_account=IBAN)) == [payout]

    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    with pytest.raises(SecretDecryptionError):
        beneficiary_open(payout)


# --- The data migration ---------------------------------------------------------------------------------

BEFORE = [("wallets", "0003_schedules")]
AFTER = [("wallets", "0004_payout_beneficiary_encrypted")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_payouts_written_before_it_and_migrating_back_restores_them():
    reseed()
    user = person()
    wallet = open_wallet(user, "EUR", funded="10.00")
    tx = Transaction.objects.create(type="withdrawal", status="pending", reference=f"m-{uuid.uuid4().hex}", customer=user.customer)
    try:
        old_apps = _migrate(BEFORE)
        OldPayout = old_apps.get_model("wallets", "Payout")
        old = OldPayout.objects.create(
            transaction_id=tx.pk, wallet_id=wallet.pk, customer_id=user.customer.pk, amount=Decimal("5"), fee=Decimal("1"),
            currency="EUR", destination_type="IBAN", beneficiary_name=NAME, reference=f"po_{uuid.uuid4().hex}",
            destination={"name": NAME, "iban": IBAN, "country": "DE", "bank_name": "Deutsche Bank"}, status="completed",
        )
        assert IBAN in _row_text("wallets_payout", old.pk)  # the old shape: in clear

        _migrate(AFTER)
        assert not _plain_in(_row_text("wallets_payout", old.pk))
        migrated = Payout.objects.get(pk=old.pk)
        assert beneficiary_open(migrated).name == NAME and beneficiary_open(migrated).destination["iban"] == IBAN
        assert migrated.beneficiary_name_masked == "A**** W*****" and migrated.destination_masked["iban"] == MASKED_IBAN
        assert list(beneficiaries_matching(Payout.objects.all(), iban_or_account=IBAN)) == [migrated]

        back = _migrate(BEFORE).get_model("wallets", "Payout").objects.get(pk=old.pk)
        assert back.beneficiary_name == NAME and back.destination["iban"] == IBAN
    finally:
        _migrate(_latest())
