"""Webhook deliveries and their attempts become tables partitioned by month (issue 15 item 3),
like ledger_entry in ledger 0010 and compliance_auditevent in compliance 0011; PostgreSQL only
(on SQLite the columns and the Django-side changes only). See accounts/models/webhooks.py for the
invariants and docs/deploy.md "Partitioned history" for retention and archiving.

1. Attempts get `delivery_created_at`, filled from their delivery (this UPDATE rewrites the
   attempts table once: time it on a restored copy of production), then NOT NULL; Django's
   single-column foreign key constraint goes (`db_constraint=False`): the reference becomes
   composite below. New delivery ids are UUIDv7 carrying `created_at`; existing ids stay.
2. Forward, in one transaction, nothing copied: each table is renamed `..._p_legacy` (its indexes
   get legacy names, its foreign keys go: the parent's are put on it), the attempts' id stops
   being an identity column, and each primary key gains the partition key ((id, created_at) and
   (id, delivery_created_at)); the partitioned tables are created with the same columns and
   CHECK constraints, the legacy tables attached for everything before the first of the month
   after the newest delivery (this month when there is none; the same bound for both, so a month
   of deliveries and its attempts go together), then the foreign keys, the indexes Django knows
   by name, and the composite foreign key
   (delivery_id, delivery_created_at) -> accounts_webhookdelivery (id, created_at) ON DELETE
   CASCADE (not deferrable: an orphan attempt is refused at its INSERT).
3. Monthly partitions from there for LEDGER_PARTITION_MONTHS_AHEAD months; the daily beat task
   `ledger.tasks.ensure_entry_partitions` keeps them coming (`ledger.partitions.PARTITIONED`), and
   the hourly `accounts.tasks.purge_webhook_deliveries` drops the months past retention.
Backward: the rows are copied into plain tables of the old shape (then Django puts its foreign
key back and drops the column).
"""

import django.db.models.deletion
from django.db import migrations, models

import accounts.models.webhooks

FILL = """
UPDATE accounts_webhookattempt SET delivery_created_at = (
    SELECT d.created_at FROM accounts_webhookdelivery d WHERE d.id = accounts_webhookattempt.delivery_id)
"""

FORWARD = r"""
DO $$
DECLARE
    idx record;
    con record;
    cut date;
    next_id bigint;
BEGIN
    ALTER TABLE accounts_webhookdelivery RENAME TO accounts_webhookdelivery_p_legacy;
    ALTER TABLE accounts_webhookattempt RENAME TO accounts_webhookattempt_p_legacy;
    FOR idx IN SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()
               AND tablename IN ('accounts_webhookdelivery_p_legacy', 'accounts_webhookattempt_p_legacy') LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.indexname, idx.tablename || '_' || md5(idx.indexname)::varchar(12));
    END LOOP;
    FOR con IN SELECT conrelid::regclass::text AS tab, conname FROM pg_constraint
               WHERE conrelid IN ('accounts_webhookdelivery_p_legacy'::regclass, 'accounts_webhookattempt_p_legacy'::regclass) AND contype = 'f' LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', con.tab, con.conname);
    END LOOP;
    ALTER TABLE accounts_webhookattempt_p_legacy ALTER COLUMN id DROP IDENTITY;
    -- a partitioned primary key holds the partition key: its like on every partition
    CREATE UNIQUE INDEX accounts_webhookdelivery_p_legacy_pk ON accounts_webhookdelivery_p_legacy (id, created_at);
    EXECUTE (SELECT format('ALTER TABLE accounts_webhookdelivery_p_legacy DROP CONSTRAINT %I', conname)
               FROM pg_constraint WHERE conrelid = 'accounts_webhookdelivery_p_legacy'::regclass AND contype = 'p');
    ALTER TABLE accounts_webhookdelivery_p_legacy ADD CONSTRAINT accounts_webhookdelivery_p_legacy_pkey
        PRIMARY KEY USING INDEX accounts_webhookdelivery_p_legacy_pk;
    CREATE UNIQUE INDEX accounts_webhookattempt_p_legacy_pk ON accounts_webhookattempt_p_legacy (id, delivery_created_at);
    EXECUTE (SELECT format('ALTER TABLE accounts_webhookattempt_p_legacy DROP CONSTRAINT %I', conname)
               FROM pg_constraint WHERE conrelid = 'accounts_webhookattempt_p_legacy'::regclass AND contype = 'p');
    ALTER TABLE accounts_webhookattempt_p_legacy ADD CONSTRAINT accounts_webhookattempt_p_legacy_pkey
        PRIMARY KEY USING INDEX accounts_webhookattempt_p_legacy_pk;

    -- both legacy partitions end after the newest delivery's month (and this one); none: at this month
    SELECT CASE WHEN max(created_at) IS NULL THEN date_trunc('month', now() AT TIME ZONE 'UTC')
                ELSE date_trunc('month', greatest(now(), max(created_at)) AT TIME ZONE 'UTC') + interval '1 month' END::date
      INTO cut FROM accounts_webhookdelivery_p_legacy;
    SELECT coalesce(max(id), 0) + 1 INTO next_id FROM accounts_webhookattempt_p_legacy;

    CREATE TABLE accounts_webhookdelivery (
        id uuid NOT NULL,
        event_id varchar(64) NOT NULL,
        event_type varchar(100) NOT NULL,
        payload jsonb NOT NULL,
        status varchar(16) NOT NULL,
        attempt_count integer NOT NULL CONSTRAINT accounts_webhookdelivery_attempt_count_check CHECK (attempt_count >= 0),
        next_attempt_at timestamp with time zone,
        last_attempt_at timestamp with time zone,
        last_status_code integer CONSTRAINT accounts_webhookdelivery_last_status_code_check CHECK (last_status_code >= 0),
        last_error varchar(500) NOT NULL,
        delivered_at timestamp with time zone,
        created_at timestamp with time zone NOT NULL,
        updated_at timestamp with time zone NOT NULL,
        organization_id bigint NOT NULL,
        endpoint_id bigint NOT NULL,
        CONSTRAINT accounts_webhookdelivery_pkey PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at);
    EXECUTE format('ALTER TABLE accounts_webhookdelivery ATTACH PARTITION accounts_webhookdelivery_p_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                   cut::text || ' 00:00:00+00');
    ALTER TABLE accounts_webhookdelivery ADD CONSTRAINT accounts_webhookdeli_endpoint_id_bf21cfff_fk_accounts_
        FOREIGN KEY (endpoint_id) REFERENCES accounts_webhookendpoint (id) DEFERRABLE INITIALLY DEFERRED;
    ALTER TABLE accounts_webhookdelivery ADD CONSTRAINT accounts_webhookdeli_organization_id_fdf5a436_fk_accounts_
        FOREIGN KEY (organization_id) REFERENCES accounts_organization (id) DEFERRABLE INITIALLY DEFERRED;
    CREATE INDEX accounts_webhookdelivery_endpoint_id_bf21cfff ON accounts_webhookdelivery (endpoint_id);
    CREATE INDEX accounts_webhookdelivery_event_id_ff7f0aaa ON accounts_webhookdelivery (event_id);
    CREATE INDEX accounts_webhookdelivery_event_id_ff7f0aaa_like ON accounts_webhookdelivery (event_id varchar_pattern_ops);
    CREATE INDEX accounts_webhookdelivery_organization_id_fdf5a436 ON accounts_webhookdelivery (organization_id);
    CREATE INDEX webhook_delivery_due ON accounts_webhookdelivery (next_attempt_at) WHERE status::text = 'pending'::text;
    CREATE INDEX webhook_delivery_org ON accounts_webhookdelivery (organization_id, created_at DESC);

    CREATE TABLE accounts_webhookattempt (
        id bigint GENERATED BY DEFAULT AS IDENTITY,
        attempted_at timestamp with time zone NOT NULL,
        url varchar(2000) NOT NULL,
        status_code integer CONSTRAINT accounts_webhookattempt_status_code_check CHECK (status_code >= 0),
        duration_ms integer NOT NULL CONSTRAINT accounts_webhookattempt_duration_ms_check CHECK (duration_ms >= 0),
        response_excerpt text NOT NULL,
        error varchar(500) NOT NULL,
        succeeded boolean NOT NULL,
        delivery_id uuid NOT NULL,
        delivery_created_at timestamp with time zone NOT NULL,
        CONSTRAINT accounts_webhookattempt_pkey PRIMARY KEY (id, delivery_created_at)
    ) PARTITION BY RANGE (delivery_created_at);
    EXECUTE format('ALTER TABLE accounts_webhookattempt ALTER COLUMN id RESTART WITH %s', next_id);
    EXECUTE format('ALTER TABLE accounts_webhookattempt ATTACH PARTITION accounts_webhookattempt_p_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                   cut::text || ' 00:00:00+00');
    CREATE INDEX accounts_webhookattempt_delivery_id_5d63057d ON accounts_webhookattempt (delivery_id);
    ALTER TABLE accounts_webhookattempt ADD CONSTRAINT webhook_attempt_delivery
        FOREIGN KEY (delivery_id, delivery_created_at) REFERENCES accounts_webhookdelivery (id, created_at) ON DELETE CASCADE;
END
$$;
"""

BACKWARD = r"""
DO $$
DECLARE
    idx record;
    next_id bigint;
BEGIN
    ALTER TABLE accounts_webhookattempt RENAME TO accounts_webhookattempt_partitioned;
    ALTER TABLE accounts_webhookdelivery RENAME TO accounts_webhookdelivery_partitioned;
    FOR idx IN SELECT indexrelid::regclass::text AS name FROM pg_index
               WHERE indrelid IN ('accounts_webhookattempt_partitioned'::regclass, 'accounts_webhookdelivery_partitioned'::regclass) LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.name, 'accounts_webhook_old_' || md5(idx.name)::varchar(12));
    END LOOP;
    CREATE TABLE accounts_webhookdelivery (
        id uuid NOT NULL PRIMARY KEY,
        event_id varchar(64) NOT NULL,
        event_type varchar(100) NOT NULL,
        payload jsonb NOT NULL,
        status varchar(16) NOT NULL,
        attempt_count integer NOT NULL CONSTRAINT accounts_webhookdelivery_attempt_count_check CHECK (attempt_count >= 0),
        next_attempt_at timestamp with time zone,
        last_attempt_at timestamp with time zone,
        last_status_code integer CONSTRAINT accounts_webhookdelivery_last_status_code_check CHECK (last_status_code >= 0),
        last_error varchar(500) NOT NULL,
        delivered_at timestamp with time zone,
        created_at timestamp with time zone NOT NULL,
        updated_at timestamp with time zone NOT NULL,
        organization_id bigint NOT NULL,
        endpoint_id bigint NOT NULL
    );
    INSERT INTO accounts_webhookdelivery (id, event_id, event_type, payload, status, attempt_count, next_attempt_at, last_attempt_at,
                                          last_status_code, last_error, delivered_at, created_at, updated_at, organization_id, endpoint_id)
        SELECT id, event_id, event_type, payload, status, attempt_count, next_attempt_at, last_attempt_at,
               last_status_code, last_error, delivered_at, created_at, updated_at, organization_id, endpoint_id
          FROM accounts_webhookdelivery_partitioned;
    CREATE TABLE accounts_webhookattempt (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        attempted_at timestamp with time zone NOT NULL,
        url varchar(2000) NOT NULL,
        status_code integer CONSTRAINT accounts_webhookattempt_status_code_check CHECK (status_code >= 0),
        duration_ms integer NOT NULL CONSTRAINT accounts_webhookattempt_duration_ms_check CHECK (duration_ms >= 0),
        response_excerpt text NOT NULL,
        error varchar(500) NOT NULL,
        succeeded boolean NOT NULL,
        delivery_id uuid NOT NULL,
        delivery_created_at timestamp with time zone NOT NULL
    );
    SELECT coalesce(max(id), 0) + 1 INTO next_id FROM accounts_webhookattempt_partitioned;
    EXECUTE format('ALTER TABLE accounts_webhookattempt ALTER COLUMN id RESTART WITH %s', next_id);
    INSERT INTO accounts_webhookattempt (id, attempted_at, url, status_code, duration_ms, response_excerpt, error, succeeded,
                                         delivery_id, delivery_created_at)
        SELECT id, attempted_at, url, status_code, duration_ms, response_excerpt, error, succeeded, delivery_id, delivery_created_at
          FROM accounts_webhookattempt_partitioned ORDER BY id;
    DROP TABLE accounts_webhookattempt_partitioned;
    DROP TABLE accounts_webhookdelivery_partitioned;
    ALTER TABLE accounts_webhookdelivery ADD CONSTRAINT accounts_webhookdeli_endpoint_id_bf21cfff_fk_accounts_
        FOREIGN KEY (endpoint_id) REFERENCES accounts_webhookendpoint (id) DEFERRABLE INITIALLY DEFERRED;
    ALTER TABLE accounts_webhookdelivery ADD CONSTRAINT accounts_webhookdeli_organization_id_fdf5a436_fk_accounts_
        FOREIGN KEY (organization_id) REFERENCES accounts_organization (id) DEFERRABLE INITIALLY DEFERRED;
    CREATE INDEX accounts_webhookdelivery_endpoint_id_bf21cfff ON accounts_webhookdelivery (endpoint_id);
    CREATE INDEX accounts_webhookdelivery_event_id_ff7f0aaa ON accounts_webhookdelivery (event_id);
    CREATE INDEX accounts_webhookdelivery_event_id_ff7f0aaa_like ON accounts_webhookdelivery (event_id varchar_pattern_ops);
    CREATE INDEX accounts_webhookdelivery_organization_id_fdf5a436 ON accounts_webhookdelivery (organization_id);
    CREATE INDEX webhook_delivery_due ON accounts_webhookdelivery (next_attempt_at) WHERE status::text = 'pending'::text;
    CREATE INDEX webhook_delivery_org ON accounts_webhookdelivery (organization_id, created_at DESC);
    CREATE INDEX accounts_webhookattempt_delivery_id_5d63057d ON accounts_webhookattempt (delivery_id);
END
$$;
"""


def _fill(apps, schema_editor):
    schema_editor.execute(FILL, params=None)


def _convert(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from datetime import date

    from django.conf import settings

    from ledger.partitions import add_months, create_month_sql, month_start

    schema_editor.execute(FORWARD, params=None)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'accounts_webhookdelivery_p_legacy'")
        bound = cursor.fetchone()[0]  # FOR VALUES FROM (MINVALUE) TO ('2027-01-01 00:00:00+00')
    cut = month_start(date.fromisoformat(bound.split("TO ('")[1][:10]))
    for n in range(settings.LEDGER_PARTITION_MONTHS_AHEAD + 1):
        for table in ("accounts_webhookdelivery", "accounts_webhookattempt"):
            schema_editor.execute(create_month_sql(table, add_months(cut, n)), params=None)


def _unconvert(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0010_customer_webhookendpoint_livemode"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookattempt",
            name="delivery_created_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="delivery",
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name="attempts", to="accounts.webhookdelivery"),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="webhookattempt",
            name="delivery_created_at",
            field=models.DateTimeField(editable=False, help_text="The delivery's created_at: the partition key (PostgreSQL)."),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="created_at",
            field=accounts.models.webhooks.DeliveryCreatedAtField(blank=True, editable=False),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="id",
            field=models.UUIDField(default=accounts.models.webhooks.new_delivery_id, editable=False, primary_key=True, serialize=False),
        ),
        migrations.RunPython(_convert, _unconvert),
    ]
