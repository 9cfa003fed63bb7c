"""The ledger invariant checker (SPEC 4, invariants 2-4), over the whole database.

`ledger_check()` returns human-readable breaches (empty when the ledger is sound) of:
* per asset, wallet balances (issuance included) sum to zero; per transaction and asset, its
  entries net to zero;
* each wallet's balance is its entries' credits - debits, each `balance_after` continues the
  previous one, and `held` is the sum of its `held` holds;
* no customer or system wallet is negative or below its holds;
* only completed, reversed or pending transactions carry entries, and they are its postings
  (a debit on the source, a credit on the destination, per posting; nothing else);
* every usage counter equals its recount (`ledger.usage.usage_check`);
* archived months (`ledger.archive`): a wallet's archived month counts as one step of its chain
  and of its sum (`ArchivedTotal`: credits - debits, ending at `last_balance_after` after
  `last_entry_id`), so balance = archived totals + remaining entries and the chain goes on from
  the archived last balance; each archived month's totals net to zero per asset, in the asset
  of their wallet. A changed total breaks at least one of these.
Read-only, any transaction. One set-based query per check on PostgreSQL; on SQLite (NUMERIC is
floating point there) the same checks in Python over Decimals. At most `limit` rows per check.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from decimal import Decimal

from django.db import connection

from ledger.models import ArchivedTotal, Entry, Hold, Posting, Transaction, Wallet

_PG_CHECKS: list[tuple[str, str]] = [
    (
        "asset {0}: the sum of wallet balances is {1}, not 0",
        "SELECT asset_id, sum(balance) FROM ledger_wallet GROUP BY asset_id HAVING sum(balance) <> 0 ORDER BY 1 LIMIT %s",
    ),
    (
        "transaction {0}: entries in asset {1} net to {2}, not 0",
        "SELECT e.transaction_id, w.asset_id,"
        " sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)"
        " FROM ledger_entry e JOIN ledger_wallet w ON w.id = e.wallet_id"
        " GROUP BY e.transaction_id, w.asset_id"
        " HAVING sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END) <> 0 ORDER BY 1 LIMIT %s",
    ),
    (
        "wallet {0}: balance {1} but its entries sum to {2}",
        "SELECT w.id, w.balance, coalesce(s.total, 0) FROM ledger_wallet w LEFT JOIN ("
        " SELECT wallet_id, sum(delta) AS total FROM ("
        " SELECT wallet_id, CASE WHEN direction = 'credit' THEN amount ELSE -amount END AS delta FROM ledger_entry"
        " UNION ALL SELECT wallet_id, credit_sum - debit_sum FROM ledger_archivedtotal) x GROUP BY wallet_id) s ON s.wallet_id = w.id"
        " WHERE w.balance <> coalesce(s.total, 0) ORDER BY 1 LIMIT %s",
    ),
    (
        # An archived month of a wallet is one step of its chain: from the balance before the
        # month to `last_balance_after`, by its credits - debits (`ledger.archive`).
        "{0} (wallet {1}): balance_after {2} but the previous balance {3} {4} {5}",
        "SELECT label, wallet_id, balance_after, prev, CASE WHEN delta >= 0 THEN '+' ELSE '-' END, abs(delta) FROM ("
        " SELECT id, label, wallet_id, delta, balance_after,"
        " coalesce(lag(balance_after) OVER (PARTITION BY wallet_id ORDER BY id), 0) AS prev FROM ("
        " SELECT id, 'entry ' || id AS label, wallet_id, CASE WHEN direction = 'credit' THEN amount ELSE -amount END AS delta,"
        " balance_after FROM ledger_entry"
        " UNION ALL SELECT last_entry_id, 'archived month ' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM')"
        " || ' (entries ' || first_entry_id || '..' || last_entry_id || ')', wallet_id, credit_sum - debit_sum, last_balance_after"
        " FROM ledger_archivedtotal) i) c"
        " WHERE balance_after <> prev + delta ORDER BY id LIMIT %s",
    ),
    (
        "archived month {0}: the totals of asset {1} net to {2}, not 0",
        "SELECT to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM'), asset_id, sum(credit_sum - debit_sum) FROM ledger_archivedtotal"
        " GROUP BY month_start, asset_id HAVING sum(credit_sum - debit_sum) <> 0 ORDER BY 1, 2 LIMIT %s",
    ),
    (
        "archived month {0}, wallet {1}: asset {2} but the wallet holds asset {3}",
        "SELECT to_char(t.month_start AT TIME ZONE 'UTC', 'YYYY-MM'), t.wallet_id, t.asset_id, w.asset_id FROM ledger_archivedtotal t"
        " JOIN ledger_wallet w ON w.id = t.wallet_id WHERE w.asset_id <> t.asset_id ORDER BY 1, 2 LIMIT %s",
    ),
    (
        "wallet {0} ({1}): balance {2}, held {3}: negative or below its holds",
        "SELECT id, kind, balance, held FROM ledger_wallet"
        " WHERE held < 0 OR (kind <> 'issuance' AND (balance < 0 OR balance < held)) ORDER BY 1 LIMIT %s",
    ),
    (
        "wallet {0}: held {1} but its open holds sum to {2}",
        "SELECT w.id, w.held, coalesce(h.total, 0) FROM ledger_wallet w LEFT JOIN ("
        " SELECT wallet_id, sum(amount) AS total FROM ledger_hold WHERE status = 'held' GROUP BY wallet_id) h"
        " ON h.wallet_id = w.id WHERE w.held <> coalesce(h.total, 0) ORDER BY 1 LIMIT %s",
    ),
    (
        "transaction {0} is {1} but has entries",
        "SELECT t.id, t.status FROM ledger_transaction t"
        " WHERE t.status NOT IN ('completed', 'reversed', 'pending')"
        " AND EXISTS (SELECT 1 FROM ledger_entry e WHERE e.transaction_id = t.id) ORDER BY 1 LIMIT %s",
    ),
    (
        "transaction {0}: operation {1} has entries that do not match its posting",
        "SELECT transaction_id, operation_index FROM ("
        " SELECT e.transaction_id, e.operation_index, e.wallet_id, e.direction, e.amount FROM ledger_entry e"
        " EXCEPT SELECT p.transaction_id, p.\"index\", v.wallet_id, v.direction, p.amount FROM ledger_posting p"
        " CROSS JOIN LATERAL (VALUES (p.source_wallet_id, 'debit'), (p.destination_wallet_id, 'credit')) AS v(wallet_id, direction)"
        " WHERE EXISTS (SELECT 1 FROM ledger_entry x WHERE x.transaction_id = p.transaction_id)"
        " ) d UNION SELECT p.transaction_id, p.\"index\" FROM ledger_posting p"
        " WHERE EXISTS (SELECT 1 FROM ledger_entry x WHERE x.transaction_id = p.transaction_id)"
        " AND NOT (EXISTS (SELECT 1 FROM ledger_entry e WHERE e.transaction_id = p.transaction_id AND e.operation_index = p.\"index\""
        " AND e.wallet_id = p.source_wallet_id AND e.direction = 'debit' AND e.amount = p.amount)"
        " AND EXISTS (SELECT 1 FROM ledger_entry e WHERE e.transaction_id = p.transaction_id AND e.operation_index = p.\"index\""
        " AND e.wallet_id = p.destination_wallet_id AND e.direction = 'credit' AND e.amount = p.amount))"
        " ORDER BY 1, 2 LIMIT %s",
    ),
]


def _check_postgres(limit: int) -> list[str]:
    breaches: list[str] = []
    with connection.cursor() as cursor:
        for template, sql in _PG_CHECKS:
            cursor.execute(sql, [limit])
            breaches += [template.format(*row) for row in cursor.fetchall()]
    return breaches


def _signed(direction: str, amount: Decimal) -> Decimal:
    return amount if direction == Entry.Direction.CREDIT else -amount


def _check_python(limit: int) -> list[str]:
    found: dict[str, list[str]] = defaultdict(list)

    def add(kind: str, message: str) -> None:
        if len(found[kind]) < limit:
            found[kind].append(message)

    wallets = {w["id"]: w for w in Wallet.objects.values("id", "asset_id", "kind", "balance", "held")}
    per_asset: dict[int, Decimal] = defaultdict(Decimal)
    for w in wallets.values():
        per_asset[w["asset_id"]] += w["balance"]
    for asset_id, total in sorted(per_asset.items()):
        if total != 0:
            add("asset", f"asset {asset_id}: the sum of wallet balances is {total}, not 0")

    per_tx: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    running: dict[int, Decimal] = defaultdict(Decimal)
    tx_with_entries: set[int] = set()
    # An archived month of a wallet is one step of its chain (`ledger.archive`), at its last entry's id.
    archived = [
        (t.wallet_id, t.last_entry_id, None, f"archived month {t.month_start:%Y-%m} (entries {t.first_entry_id}..{t.last_entry_id})",
         t.credit_sum - t.debit_sum, t.last_balance_after)
        for t in ArchivedTotal.objects.all()
    ]
    entries = (
        (wid, eid, tx_id, f"entry {eid}", _signed(direction, amount), after)
        for eid, tx_id, wid, direction, amount, after in Entry.objects.order_by("wallet_id", "id").values_list(
            "id", "transaction_id", "wallet_id", "direction", "amount", "balance_after").iterator()
    )
    for wid, _, tx_id, label, signed, after in heapq.merge(entries, sorted(archived), key=lambda item: item[:2]):
        if tx_id is not None:
            per_tx[(tx_id, wallets[wid]["asset_id"])] += signed
            tx_with_entries.add(tx_id)
        if after != running[wid] + signed:
            sign = "+" if signed >= 0 else "-"
            add("chain", f"{label} (wallet {wid}): balance_after {after} but the previous balance {running[wid]} {sign} {abs(signed)}")
        running[wid] = after
    for (tx_id, asset_id), total in sorted(per_tx.items()):
        if total != 0:
            add("tx", f"transaction {tx_id}: entries in asset {asset_id} net to {total}, not 0")

    sums: dict[int, Decimal] = defaultdict(Decimal)
    for wid, direction, amount in Entry.objects.values_list("wallet_id", "direction", "amount").iterator():
        sums[wid] += _signed(direction, amount)
    archived_net: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for wid, _, _, label, signed, _ in archived:
        sums[wid] += signed
        archived_net[(label[15:22], wallets[wid]["asset_id"])] += signed
    for (month, asset_id), total in sorted(archived_net.items()):
        if total != 0:
            add("archived", f"archived month {month}: the totals of asset {asset_id} net to {total}, not 0")
    held: dict[int, Decimal] = defaultdict(Decimal)
    for wid, amount in Hold.objects.filter(status=Hold.Status.HELD).values_list("wallet_id", "amount"):
        held[wid] += amount
    for wid, w in sorted(wallets.items()):
        if w["balance"] != sums[wid]:
            add("sum", f"wallet {wid}: balance {w['balance']} but its entries sum to {sums[wid]}")
        if w["held"] < 0 or (w["kind"] != Wallet.Kind.ISSUANCE and (w["balance"] < 0 or w["balance"] < w["held"])):
            add("neg", f"wallet {wid} ({w['kind']}): balance {w['balance']}, held {w['held']}: negative or below its holds")
        if w["held"] != held[wid]:
            add("held", f"wallet {wid}: held {w['held']} but its open holds sum to {held[wid]}")
    bad_status = Transaction.objects.filter(pk__in=tx_with_entries).exclude(
        status__in=[Transaction.Status.COMPLETED, Transaction.Status.REVERSED, Transaction.Status.PENDING]
    )
    for tx_id, status in bad_status.values_list("id", "status")[:limit]:
        add("status", f"transaction {tx_id} is {status} but has entries")

    legs = {
        (p.transaction_id, p.index, wid, direction, p.amount)
        for p in Posting.objects.filter(transaction_id__in=tx_with_entries).iterator()
        for wid, direction in ((p.source_wallet_id, Entry.Direction.DEBIT), (p.destination_wallet_id, Entry.Direction.CREDIT))
    }
    written = set(Entry.objects.values_list("transaction_id", "operation_index", "wallet_id", "direction", "amount"))
    for tx_id, index in sorted({(t, i) for t, i, *_ in legs ^ written}):
        add("postings", f"transaction {tx_id}: operation {index} has entries that do not match its posting")
    return [m for kind in ("asset", "tx", "sum", "chain", "archived", "neg", "held", "status", "postings") for m in found[kind]]


def ledger_check(*, limit: int = 100) -> list[str]:
    """Every breach of the ledger invariants, as messages (empty list: all hold)."""
    from ledger.usage import usage_check

    found = _check_postgres(limit) if connection.vendor == "postgresql" else _check_python(limit)
    return found + usage_check(limit=limit)
