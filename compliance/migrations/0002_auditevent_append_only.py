"""The database refuses UPDATE and DELETE on audit events (SPEC 4.5).

PostgreSQL: a BEFORE UPDATE OR DELETE row trigger that raises. TRUNCATE is deliberately not
refused: Django's test runner empties tables with TRUNCATE between transactional tests, and
TRUNCATE needs table ownership, which the application's role should not have in production.

SQLite (the no-server fallback): a trigger refuses UPDATE. DELETE is not refused there, because
Django's test runner empties SQLite tables with DELETE between transactional tests.
"""

from django.db import migrations

PG_FUNCTION = "compliance_auditevent_refuse_change"
PG_TRIGGER = "compliance_auditevent_append_only"
SQLITE_TRIGGER = "compliance_auditevent_no_update"


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            f"""
            CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit events are append-only: %% refused on compliance_auditevent', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$;
            """
        )
        schema_editor.execute(
            f"""
            CREATE TRIGGER {PG_TRIGGER}
            BEFORE UPDATE OR DELETE ON compliance_auditevent
            FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}();
            """
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            f"""
            CREATE TRIGGER IF NOT EXISTS {SQLITE_TRIGGER}
            BEFORE UPDATE ON compliance_auditevent
            BEGIN
                SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused on compliance_auditevent');
            END;
            """
        )


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {PG_TRIGGER} ON compliance_auditevent;")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}();")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {SQLITE_TRIGGER};")


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
