"""The deferred sum-to-zero check (0002) reads the transaction's entries first and each entry's
wallet by its key, whatever the statistics say.

Its query joined `ledger_entry` to `ledger_wallet` and grouped by the wallet's asset. PL/pgSQL keeps
a generic plan of it per connection, planned once: on a platform of a few hundred wallets the
planner walked every wallet in asset order (an index scan of `ledger_wallet` feeding the group)
against the transaction's two entries, at every commit, twice per transfer. The cost of a posting's
COMMIT grew with the number of wallets on the platform (a quarter of the PostgreSQL backend's CPU
of an API transfer at 500 wallets). The asset is now a scalar subquery per entry (an index lookup
by the wallet's primary key): no join for the planner to order. `tests/ledger/test_db_guards.py`
counts the wallet rows the checks read at commit, and runs this migration both ways. The
function's frame repeats 0002's on purpose: a migration keeps the text it ran.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_check_transaction_balanced() RETURNS trigger AS $$
DECLARE
    bad_asset bigint;
    bad_sum numeric;
BEGIN
    %(query)s
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: transaction %% is unbalanced in asset %% (credits - debits = %%)',
            NEW.transaction_id, bad_asset, bad_sum
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

NEW_QUERY = """SELECT s.asset_id, s.total INTO bad_asset, bad_sum FROM (
        SELECT (SELECT w.asset_id FROM ledger_wallet w WHERE w.id = e.wallet_id) AS asset_id,
               sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END) AS total
          FROM ledger_entry e
         WHERE e.transaction_id = NEW.transaction_id
         GROUP BY 1
    ) s
     WHERE s.total <> 0
     LIMIT 1;"""

OLD_QUERY = """SELECT w.asset_id, sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)
      INTO bad_asset, bad_sum
      FROM ledger_entry e JOIN ledger_wallet w ON w.id = e.wallet_id
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY w.asset_id
    HAVING sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END) <> 0
     LIMIT 1;"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION % {"query": NEW_QUERY}, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION % {"query": OLD_QUERY}, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0013_livemode")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
