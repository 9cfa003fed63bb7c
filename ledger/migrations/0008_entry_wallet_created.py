"""The (wallet, created_at, id) index behind balance-at and statements.

Built CONCURRENTLY on PostgreSQL so a live ledger keeps posting while it builds (hence not
atomic); other databases (SQLite for the local run) build it plainly."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("ledger", "0007_reversals_and_authorization_holds")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="entry",
            index=models.Index(fields=["wallet", "created_at", "id"], name="entry_wallet_created"),
        ),
    ]
