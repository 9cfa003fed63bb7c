"""The velocity rule's count reads only the wallet's recent rows, whatever plan PostgreSQL picks.

The money path sends it as a prepared statement, whose plan is made once per connection from the
statistics of that moment: on a new deployment the tables look empty. Planned that way, an
earlier version joined from `ledger_transaction` (a sequential scan of the whole platform's
transactions) or materialised the wallet's whole history for its "first debit" check, on every
request. Here the statistics were taken before the traffic (so the window looks empty to the planner),
then the wallet made a few transfers and other wallets many: the count must touch a few buffers
per row of this wallet, in a custom plan and in the generic plan a prepared statement keeps.
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

OWN, OTHERS = 20, 600  # the wallet's debits in the window; other wallets' transactions in it
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


def test_custom_plan_touches_only_the_wallets_recent_rows(busy_wallet):
    sql, params = _count_sql(busy_wallet.pk)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        plan = _plan(cursor.fetchone()[0])
    assert _buffers(plan["Plan"]) <= OVERHEAD + PER_ROW * OWN, json.dumps(plan, indent=1)[:6000]


def test_generic_plan_of_the_prepared_statement_touches_only_the_wallets_recent_rows(busy_wallet):
    sql, params = _count_sql(busy_wallet.pk)
    numbered = sql  # psycopg's %s -> PREPARE's $n (types inferred from the columns)
    for index in range(1, len(params) + 1):
        numbered = numbered.replace("%s", f"${index}", 1)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE velocity_probe AS {numbered}")
        try:
            literals = ", ".join(["%s"] * len(params))
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE velocity_probe({literals})", params)
            plan = _plan(cursor.fetchone()[0])
        finally:
            cursor.execute("DEALLOCATE velocity_probe")
    assert _buffers(plan["Plan"]) <= OVERHEAD + PER_ROW * OWN, json.dumps(plan, indent=1)[:6000]


def test_the_count_is_still_right(busy_wallet):
    sql, params = _count_sql(busy_wallet.pk)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.fetchone()[0] == OWN
