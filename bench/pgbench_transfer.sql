-- The ceiling for bench/ledger_bench.py: a transfer written by hand against the SAME ledger
-- tables (same indexes, CHECK constraints, foreign keys and the deferred "transaction is
-- balanced" trigger), the way a hand-tuned client would do it, one statement per step:
-- lock 2 wallets in id order, 2 balance UPDATEs, 1 transaction INSERT, 1 posting INSERT (the
-- operation as a row, as the engine writes it), 2 entry INSERTs, and the two customers' usage
-- counters (outgoing, incoming; today, UTC) upserted as the engine charges them.
-- balance_after comes back from the UPDATEs (\gset), so the rows it writes are a correct
-- ledger: the invariant checker at the end of the benchmark covers them too.
--
-- Variables (pgbench -D): first = id of the first bench wallet, n = number of wallets (their
-- ids are first .. first + n - 1). Amounts are 0.01, far below the wallets' funding.
\set a random(0, :n - 1)
\set b (:a + random(1, :n - 1)) % :n
\set src :first + :a
\set dst :first + :b
BEGIN;
SELECT id, balance FROM ledger_wallet WHERE id IN (:src, :dst) ORDER BY id FOR UPDATE;
UPDATE ledger_wallet SET balance = balance - 0.01, updated_at = now() WHERE id = :src RETURNING balance AS src_after \gset
UPDATE ledger_wallet SET balance = balance + 0.01, updated_at = now() WHERE id = :dst RETURNING balance AS dst_after \gset
INSERT INTO ledger_transaction (type, status, organization_id, customer_id, reference, description, metadata, failure_code, failure_message, failure_operation_index, created_at, completed_at, livemode) VALUES ('transfer', 'completed', NULL, NULL, '', '', '{}', '', '', NULL, now(), now(), true) RETURNING id AS tx \gset
INSERT INTO ledger_posting (transaction_id, "index", kind, source_wallet_id, source_purpose, destination_wallet_id, destination_purpose, amount, asset_id, reference_rate) SELECT :tx, 0, 'transfer', :src, '', :dst, '', 0.01, asset_id, 1 FROM ledger_wallet WHERE id = :src;
INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at) VALUES (:tx, :src, 'debit', 0.01, :src_after, 0, now());
INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at) VALUES (:tx, :dst, 'credit', 0.01, :dst_after, 0, now());
INSERT INTO ledger_usagecounter (customer_id, asset_id, movement_type, direction, day, amount, reference_amount, count) SELECT customer_id, asset_id, 'transfer', CASE WHEN id = :src THEN 'outgoing' ELSE 'incoming' END, (now() AT TIME ZONE 'UTC')::date, 0.01, 0.01, 1 FROM ledger_wallet WHERE id IN (:src, :dst) AND customer_id IS NOT NULL ORDER BY id ON CONFLICT (customer_id, asset_id, movement_type, direction, day) DO UPDATE SET amount = ledger_usagecounter.amount + excluded.amount, reference_amount = ledger_usagecounter.reference_amount + excluded.reference_amount, count = ledger_usagecounter.count + excluded.count;
END;
