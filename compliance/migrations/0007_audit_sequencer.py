"""The audit chain leaves the request path (issue 10, item 4).

- `sequence` (gapless chain order), and `prev_hash` / `hash` become NULL until the sequencer
  links an event; `AuditCheckpoint` holds the sequencer's signed checkpoints.
- Events written before this migration lose their unkeyed SHA-256 links: the sequencer re-links
  them, in id order (their old chain order), under the keyed HMAC on its first run.
- PostgreSQL: `txid xid8 NOT NULL DEFAULT pg_current_xact_id()`, the inserting transaction, which
  the sequencer's watermark compares with its snapshot's xmin. Not declared on the model, so
  Django's INSERT leaves it to the default (existing rows get this migration's xid).
- PostgreSQL triggers: UPDATE is allowed only to fill `sequence`, `prev_hash` and `hash` from NULL
  (all three at once, nothing else changed); DELETE is refused; TRUNCATE is refused on the event
  and checkpoint tables. TRUNCATE is let through only in a database Django's test runner created
  (`test_...`) on a connection that asks for it with `coffer.allow_audit_truncate=on` (the test
  settings do, because the test runner empties tables with TRUNCATE between transactional
  tests). The checkpoint table refuses UPDATE and DELETE too.
- SQLite: the UPDATE trigger gets the same NULL -> value exception (DELETE stays allowed there, see
  migration 0002).
"""

from django.db import migrations, models

EVENTS = "compliance_auditevent"
CHECKPOINTS = "compliance_auditcheckpoint"
OLD_PG_FUNCTION = "compliance_auditevent_refuse_change"
OLD_PG_TRIGGER = "compliance_auditevent_append_only"
PG_EVENT_FUNCTION = "compliance_auditevent_guard"
PG_REFUSE_FUNCTION = "compliance_audit_refuse_change"
PG_TRUNCATE_FUNCTION = "compliance_audit_refuse_truncate"
SQLITE_TRIGGER = "compliance_auditevent_no_update"
CHAIN_COLUMNS = ("sequence", "prev_hash", "hash")
SQLITE_FIXED_COLUMNS = ("id", "created_at", "actor_id", "actor_label", "action", "target_type", "target_id", "data")


def _pg_install(execute) -> None:
    # Every column but the three chain columns must stay as it was (compared as jsonb, so a
    # column added later is covered without editing this function).
    execute(
        f"""
        CREATE OR REPLACE FUNCTION {PG_EVENT_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE'
               AND OLD.sequence IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
               AND NEW.sequence IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
               AND (to_jsonb(NEW) - 'sequence' - 'prev_hash' - 'hash') = (to_jsonb(OLD) - 'sequence' - 'prev_hash' - 'hash')
            THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'audit events are append-only: %% refused on {EVENTS} (only the sequencer may fill sequence, prev_hash and hash, once)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        """
    )
    execute(
        f"""
        CREATE OR REPLACE FUNCTION {PG_REFUSE_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit checkpoints are append-only: %% refused on %%', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        """
    )
    execute(
        f"""
        CREATE OR REPLACE FUNCTION {PG_TRUNCATE_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF current_database() LIKE 'test\\_%%'
               AND coalesce(current_setting('coffer.allow_audit_truncate', true), '') = 'on' THEN
                RETURN NULL;
            END IF;
            RAISE EXCEPTION 'the audit chain is append-only: TRUNCATE refused on %%', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        """
    )
    execute(f"DROP TRIGGER IF EXISTS {OLD_PG_TRIGGER} ON {EVENTS};")
    execute(f"DROP FUNCTION IF EXISTS {OLD_PG_FUNCTION}();")
    execute(
        f"CREATE TRIGGER {OLD_PG_TRIGGER} BEFORE UPDATE OR DELETE ON {EVENTS} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_EVENT_FUNCTION}();"
    )
    execute(
        f"CREATE TRIGGER compliance_auditevent_no_truncate BEFORE TRUNCATE ON {EVENTS} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_TRUNCATE_FUNCTION}();"
    )
    execute(
        f"CREATE TRIGGER compliance_auditcheckpoint_append_only BEFORE UPDATE OR DELETE ON {CHECKPOINTS} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_REFUSE_FUNCTION}();"
    )
    execute(
        f"CREATE TRIGGER compliance_auditcheckpoint_no_truncate BEFORE TRUNCATE ON {CHECKPOINTS} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_TRUNCATE_FUNCTION}();"
    )


def _sqlite_install(execute) -> None:
    unchanged = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in SQLITE_FIXED_COLUMNS)
    filled = " AND ".join(f"OLD.{c} IS NULL AND NEW.{c} IS NOT NULL" for c in CHAIN_COLUMNS)
    execute(f"DROP TRIGGER IF EXISTS {SQLITE_TRIGGER};")
    execute(
        f"""
        CREATE TRIGGER {SQLITE_TRIGGER}
        BEFORE UPDATE ON {EVENTS}
        WHEN NOT ({filled} AND {unchanged})
        BEGIN
            SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused on {EVENTS}');
        END;
        """
    )


def before(apps, schema_editor):
    """Drop the old UPDATE guard so the legacy links can be cleared below."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {OLD_PG_TRIGGER} ON {EVENTS};")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {SQLITE_TRIGGER};")


def after(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    # Legacy rows are re-linked by the sequencer under the keyed HMAC.
    schema_editor.execute(f"UPDATE {EVENTS} SET prev_hash = NULL, hash = NULL WHERE sequence IS NULL")
    if vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {EVENTS} ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()")
        _pg_install(schema_editor.execute)
    elif vendor == "sqlite":
        _sqlite_install(schema_editor.execute)


def after_reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for trigger, table in (
            (OLD_PG_TRIGGER, EVENTS), ("compliance_auditevent_no_truncate", EVENTS),
            ("compliance_auditcheckpoint_append_only", CHECKPOINTS), ("compliance_auditcheckpoint_no_truncate", CHECKPOINTS),
        ):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table};")
        for function in (PG_EVENT_FUNCTION, PG_REFUSE_FUNCTION, PG_TRUNCATE_FUNCTION):
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {function}();")
        schema_editor.execute(f"ALTER TABLE {EVENTS} DROP COLUMN IF EXISTS txid")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {SQLITE_TRIGGER};")


def before_reverse(apps, schema_editor):
    """Back to migration 0002's guard. Chained rows keep their keyed links, which the old
    unkeyed verifier does not understand: reversing is for development databases only."""
    import importlib

    importlib.import_module("compliance.migrations.0002_auditevent_append_only").install(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0006_back_office_permissions")]

    operations = [
        migrations.RunPython(before, before_reverse),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField()),
                ("head_sequence", models.BigIntegerField()),
                ("head_id", models.BigIntegerField()),
                ("head_hash", models.CharField(max_length=64)),
                ("count", models.BigIntegerField()),
                ("signature", models.CharField(max_length=64)),
            ],
            options={"ordering": ["-head_sequence"]},
        ),
        migrations.AddField(
            model_name="auditevent",
            name="sequence",
            field=models.BigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(condition=models.Q(("sequence__isnull", True)), fields=["id"], name="auditevent_unchained_idx"),
        ),
        migrations.RunPython(after, after_reverse),
    ]
