"""Scheduled withdrawals' beneficiaries encrypted at rest (issue 12 item 17, as payouts in 0004):
`Schedule.destination` (the IBAN or account and the name, in clear) becomes Fernet-encrypted
columns under the field keys, beside a masked copy and keyed hashes (wallets.beneficiaries).
Existing rows are encrypted here; migrating back decrypts them into `destination` again.

Order: the old constraint goes before the rows are rewritten and the new one comes after, so
that migrating back re-adds `destination`, fills it, and only then checks the old constraint."""

import json

from django.db import migrations, models
from django.db.models import Q


def encrypt_existing(apps, schema_editor):
    from wallets.beneficiaries import beneficiary_sealed_fields

    Schedule = apps.get_model("wallets", "Schedule")
    for schedule in Schedule.objects.filter(destination__isnull=False).order_by("pk").iterator(chunk_size=500):
        destination = dict(schedule.destination)
        Schedule.objects.filter(pk=schedule.pk).update(**beneficiary_sealed_fields(name=destination.get("name", ""), destination=destination))


def decrypt_back(apps, schema_editor):
    from accounts.crypto import decrypt_secret

    Schedule = apps.get_model("wallets", "Schedule")
    for schedule in Schedule.objects.exclude(destination_encrypted="").order_by("pk").iterator(chunk_size=500):
        Schedule.objects.filter(pk=schedule.pk).update(destination=json.loads(decrypt_secret(schedule.destination_encrypted)))


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0004_payout_beneficiary_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedule", name="beneficiary_name_encrypted",
            field=models.TextField(blank=True, default="", help_text="Fernet, field keys."),
        ),
        migrations.AddField(
            model_name="schedule", name="beneficiary_name_masked",
            field=models.CharField(blank=True, default="", help_text='What is shown: "J*** S****".', max_length=200),
        ),
        migrations.AddField(
            model_name="schedule", name="beneficiary_hash",
            field=models.CharField(blank=True, db_index=True, default="", help_text="Keyed HMAC of the normalised name, for lookups.", max_length=64),
        ),
        migrations.AddField(
            model_name="schedule", name="destination_encrypted",
            field=models.TextField(blank=True, default="", help_text="Fernet, field keys: the beneficiary as given (type, name, IBAN normalised), JSON."),
        ),
        migrations.AddField(
            model_name="schedule", name="destination_masked",
            field=models.JSONField(blank=True, null=True, help_text='What is shown: the IBAN as "DE89 **** **** **** 3000".'),
        ),
        migrations.AddField(
            model_name="schedule", name="account_hash",
            field=models.CharField(blank=True, db_index=True, default="", help_text="Keyed HMAC of the IBAN or account, for lookups.", max_length=64),
        ),
        migrations.RemoveConstraint(model_name="schedule", name="schedule_one_destination"),
        migrations.RunPython(encrypt_existing, decrypt_back),
        migrations.AddConstraint(
            model_name="schedule",
            constraint=models.CheckConstraint(
                condition=(Q(destination_wallet__isnull=True) & ~Q(destination_encrypted=""))
                | Q(destination_wallet__isnull=False, destination_encrypted=""),
                name="schedule_one_destination",
            ),
        ),
        migrations.RemoveField(model_name="schedule", name="destination"),
    ]
