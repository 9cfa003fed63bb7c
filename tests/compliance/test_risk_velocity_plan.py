"""The velocity rule's count reads only the wallet's recent rows, whatever plan PostgreSQL picks.

The money path sends it as a prepared statement, whose plan is made from the statistics of its
moment. An earlier version, planned on statistics taken before a burst of traffic, joined from
`ledger_transaction` (a sequential scan of every transaction of the window, platform-wide) on
every request; the next one read `ledger_entry`, whose generic plan locks every monthly partition
and its indexes (~40 relation locks per request, most outside the fast path). Here the statistics
were taken before the traffic, then the wallet made a few transfers and other wallets many: the
count touches a few buffers per transaction of this wallet and no partition of the history, in
a custom plan and in the generic plan a prepared statement keeps.
"""

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from compliance.risk import wallet_outgoing_count_subquery
from ledger.posting import Transfer, ledger_post
from tests.factories.ledger import open_wallet, usd  # noqa: F401  (usd: a pytest fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

OWN, OTHERS = 20, 1500  # the wallet's debits in the window; other wallets' transactions in it
PER_ROW, OVERHEAD = 12, 40  # buffers: a good plan touches a few index pages per counted row


def _buffers(plan: dict) -> int:
    return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


def _plan(value) -> dict:
    """EXPLAIN's JSON (psycopg may hand it over parsed or as text): its one plan."""
    (plan,) = json.loads(value) if isinstance(value, str) else value
    return plan


@pytest.fixture
def busy_wallet(usd):
    wallet, other = open_wallet(usd, "100000"), open_wallet(usd)
    third, fourth = open_wallet(usd, "100000"), open_wallet(usd)
    with connection.cursor() as cursor:  # statistics from before the traffic, as a new plan sees them
        cursor.execute("ANALYZE ledger_transaction, ledger_entry, ledger_hold")
    for _ in range(OWN):
        ledger_post(type="transfer", operations=[Transfer(source=wallet, destination=other, amount=Decimal("1"))]).raise_for_error()
    for _ in range(OTHERS):
        ledger_post(type="transfer", operations=[Transfer(source=third, destination=fourth, amount=Decimal("1"))]).raise_for_error()
    return wallet


def _count_sql(wallet_id: int) -> tuple[str, list]:
    since = timezone.now() - dt.timedelta(minutes=10)
    sql, params = wallet_outgoing_count_subquery(wallet_id=wallet_id, since=since, cap=100)
    return "SELECT " + sql, params


def _relations(plan: dict) -> set[str]:
    names = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        names |= _relations(child)
    return names


def _explain_generic(cursor, sql: str, params: list) -> dict:
    numbered = sql  # psycopg's %s -> PREPARE's $n (types inferred from the columns)
    for index in range(1, len(params) + 1):
        numbered = numbered.replace("%s", f"${index}", 1)
    cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    cursor.execute(f"PREPARE velocity_probe AS {numbered}")
    try:
        literals = ", ".join(["%s"] * len(params))
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE velocity_probe({literals})", params)
        return _plan(cursor.fetchone()[0])
    finally:
        cursor.execute("DEALLOCATE velocity_probe")
        cursor.execute("SET LOCAL plan_cache_mode = auto")


def _scans(plan: dict) -> set[tuple[str, str]]:
    """(node type, relation) of every scan in the plan."""
    found = {(plan["Node Type"], plan["Relation Name"])} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _scans(child)
    return found


# Planner settings standing in for statistics under which a join looks cheaper than a walk: on a
# platform of a few hundred transactions the planner hashed all of `ledger_transaction` to find
# each step's transaction (a sequential scan of every transaction on every request).
PLANNER = {"default": [], "joins-look-cheap": ["SET LOCAL enable_nestloop = off"]}


@pytest.mark.parametrize("planner", sorted(PLANNER))
def test_the_count_reads_only_the_wallets_recent_rows_in_custom_and_generic_plans(busy_wallet, planner):
    sql, params = _count_sql(busy_wallet.pk)
    with connection.cursor() as cursor:
        for setting in PLANNER[planner]:
            cursor.execute(setting)
        cursor.execute(sql, params)
        assert cursor.fetchone()[0] == OWN

        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        custom = _plan(cursor.fetchone()[0])
        generic = _explain_generic(cursor, sql, params)
    for plan in (custom, generic):
        assert _buffers(plan["Plan"]) <= OVERHEAD + PER_ROW * OWN, json.dumps(plan, indent=1)[:6000]
        # no partitioned history: a generic plan locks every partition of a table it reads
        assert not any(name.startswith("ledger_entry") for name in _relations(plan["Plan"])), _relations(plan["Plan"])
        # each step finds its transaction by key, never by scanning the table
        assert all("Index" in node or "Bitmap" in node for node, relation in _scans(plan["Plan"]) if relation == "ledger_transaction"), _scans(plan["Plan"])
