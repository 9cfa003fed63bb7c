"""Payout beneficiaries encrypted at rest (issue 12 item 17): the name and the destination (IBAN or
account) move from clear columns into Fernet-encrypted ones under the field keys, beside a masked
form and keyed hashes (wallets.beneficiaries). Existing rows are encrypted here; migrating back
decrypts them into the clear columns again."""

import json

from django.db import migrations, models


def encrypt_existing(apps, schema_editor):
    from wallets.beneficiaries import beneficiary_sealed_fields

    Payout = apps.get_model("wallets", "Payout")
    for payout in Payout.objects.order_by("pk").iterator(chunk_size=500):
        destination = dict(payout.destination or {})
        destination.setdefault("name", payout.beneficiary_name)
        fields = beneficiary_sealed_fields(name=payout.beneficiary_name, destination=destination)
        Payout.objects.filter(pk=payout.pk).update(**fields)


def decrypt_back(apps, schema_editor):
    from accounts.crypto import decrypt_secret

    Payout = apps.get_model("wallets", "Payout")
    for payout in Payout.objects.order_by("pk").iterator(chunk_size=500):
        Payout.objects.filter(pk=payout.pk).update(
            beneficiary_name=decrypt_secret(payout.beneficiary_name_encrypted),
            destination=json.loads(decrypt_secret(payout.destination_encrypted)),
        )


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0003_schedules"),
    ]

    operations = [
        migrations.AddField(
            model_name="payout", name="beneficiary_name_encrypted",
            field=models.TextField(default="", help_text="Fernet, field keys."), preserve_default=False,
        ),
        migrations.AddField(
            model_name="payout", name="beneficiary_name_masked",
            field=models.CharField(default="", help_text='What is shown: "J*** S****".', max_length=200), preserve_default=False,
        ),
        migrations.AddField(
            model_name="payout", name="beneficiary_hash",
            field=models.CharField(db_index=True, default="", help_text="Keyed HMAC of the normalised name, for lookups.", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="payout", name="destination_encrypted",
            field=models.TextField(default="", help_text="Fernet, field keys: the beneficiary as given (IBAN normalised), JSON."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="payout", name="destination_masked",
            field=models.JSONField(default=dict, help_text='What is shown: the IBAN as "DE89 **** **** **** 3000".'),
        ),
        migrations.AddField(
            model_name="payout", name="account_hash",
            field=models.CharField(db_index=True, default="", help_text="Keyed HMAC of the IBAN or account, for lookups.", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_existing, decrypt_back),
        # Migrating back re-adds these empty (then decrypt_back fills them): hence the defaults.
        migrations.AlterField(model_name="payout", name="beneficiary_name", field=models.CharField(default="", max_length=200)),
        migrations.RemoveField(model_name="payout", name="destination"),
        migrations.RemoveField(model_name="payout", name="beneficiary_name"),
    ]
