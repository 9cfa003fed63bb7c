"""Database guards for the ledger (SPEC 4.2, 4.5).

PostgreSQL:
* entries are append-only: a trigger refuses every UPDATE and DELETE on ledger_entry;
* transactions and holds are never deleted (their status changes; the rows stay): DELETE refused;
* a DEFERRABLE INITIALLY DEFERRED constraint trigger checks, at commit, that the entries of
  every transaction that gained entries net to zero per asset. It fires per inserted entry
  row (constraint triggers are row-level); each firing is one index lookup on
  entry(transaction_id) over a handful of rows.
TRUNCATE stays allowed: it is what the test runner's database flush uses, and no application
code path issues it.

SQLite (development fallback): a trigger refuses UPDATE on entries. DELETE is left to the
application there because Django's test flush deletes rows on SQLite.
"""

from django.db import migrations

PG_FORWARD = r"""
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is not allowed (append-only ledger)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_transaction_no_delete
    BEFORE DELETE ON ledger_transaction
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_hold_no_delete
    BEFORE DELETE ON ledger_hold
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE OR REPLACE FUNCTION ledger_check_transaction_balanced() RETURNS trigger AS $$
DECLARE
    bad_asset bigint;
    bad_sum numeric;
BEGIN
    SELECT w.asset_id, sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)
      INTO bad_asset, bad_sum
      FROM ledger_entry e JOIN ledger_wallet w ON w.id = e.wallet_id
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY w.asset_id
    HAVING sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction % is unbalanced in asset % (credits - debits = %)',
            NEW.transaction_id, bad_asset, bad_sum
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_transaction_balanced
    AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced();
"""

PG_BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_entry_transaction_balanced ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_check_transaction_balanced();
DROP TRIGGER IF EXISTS ledger_hold_no_delete ON ledger_hold;
DROP TRIGGER IF EXISTS ledger_transaction_no_delete ON ledger_transaction;
DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""

SQLITE_FORWARD = """
CREATE TRIGGER IF NOT EXISTS ledger_entry_no_update BEFORE UPDATE ON ledger_entry
BEGIN
    SELECT RAISE(ABORT, 'ledger: UPDATE on ledger_entry is not allowed (append-only ledger)');
END;
"""

SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS ledger_entry_no_update;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
