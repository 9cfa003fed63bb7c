"""API keys get scopes (issue 12 item 6). New keys default to read-only. Keys that exist already
keep working for what integrations do with them: they get every scope except `keys:manage`
(creating and revoking keys with a key was the hole being closed; an owner can grant it again).
The list is written out here, not imported, so this migration means the same forever."""

from django.db import migrations, models

import accounts.models.orgs

LEGACY_SCOPES = ["read", "customers:write", "ledger:write", "payorders:write", "webhooks:write"]


def grant_legacy_scopes(apps, schema_editor):
    ApiKey = apps.get_model("accounts", "ApiKey")
    ApiKey.objects.update(scopes=LEGACY_SCOPES)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0005_refresh_token_families"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(default=accounts.models.orgs.default_api_key_scopes, help_text="What the key may do (accounts.orgs.scopes); least privilege by default."),
        ),
        migrations.RunPython(grant_legacy_scopes, migrations.RunPython.noop),
    ]
