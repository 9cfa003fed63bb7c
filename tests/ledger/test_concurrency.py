"""Real threads on PostgreSQL (SPEC 4.4, 4.7, 4.9): no deadlock, nothing negative, totals
conserved, references unique under races, hot accounts shared safely. Every test ends with the
invariant checker."""

import random
import threading
import time
from decimal import Decimal

import pytest
from django.db import close_old_connections, transaction

from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Redeem, Transfer, ledger_fail_pending, ledger_hold_pending, ledger_post
from tests.concurrency import errors_of, run_in_threads
from tests.factories.accounts import OrganizationFactory
from tests.factories.ledger import open_wallet, platform_asset

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_threads(count: int, target, *args) -> list[BaseException]:
    return errors_of(run_in_threads(count, lambda n: target(n, *args), timeout=60))


def test_sixteen_threads_transfer_both_ways_without_deadlock():
    usd = platform_asset("USD")
    wallets = [open_wallet(usd, "1000") for _ in range(4)]
    ids = [w.pk for w in wallets]
    stats = {"ok": 0, "insufficient": 0, "other": []}
    lock = threading.Lock()
    deadline = time.monotonic() + 3.0

    def worker(n: int) -> None:
        rng = random.Random(n)
        close_old_connections()
        while time.monotonic() < deadline:
            src, dst = rng.sample(ids, 2)
            # multi-leg postings in both directions, including a fee to the sharded fee account
            ops = [Transfer(src, dst, Decimal(rng.randint(1, 40_000)) / 100)]
            if rng.random() < 0.5:
                ops.append(Transfer(dst, src, Decimal(rng.randint(1, 20_000)) / 100))
            if rng.random() < 0.3:
                ops.append(Transfer(src, PlatformAccount("fee"), Decimal("0.25")))
            with transaction.atomic():
                result = ledger_post(type="transfer", operations=ops)
            with lock:
                if result.ok:
                    stats["ok"] += 1
                elif result.error.code == "INSUFFICIENT_FUNDS":
                    stats["insufficient"] += 1
                else:
                    stats["other"].append(result.error.code)

    errors = run_threads(16, worker)
    print(f"16 threads, 3 s: {stats['ok']} postings, {stats['insufficient']} refused for funds")
    assert errors == [], errors[:3]  # includes any "deadlock detected"
    assert stats["other"] == []
    assert stats["ok"] > 50, stats
    balances = [w.balance for w in Wallet.objects.filter(pk__in=ids)]
    fees = sum(w.balance for w in Wallet.objects.filter(asset=usd, purpose="fee"))
    assert all(b >= 0 for b in balances)
    assert sum(balances) + fees == Decimal("4000")
    assert Transaction.objects.filter(status="completed", type="transfer").count() == stats["ok"]
    assert ledger_check() == []


def test_concurrent_spends_of_one_balance_never_overdraw():
    usd = platform_asset("USD")
    source = open_wallet(usd, "100")
    sinks = [open_wallet(usd) for _ in range(16)]

    def worker(n: int) -> None:
        for _ in range(5):
            ledger_post(type="transfer", operations=[Transfer(source, sinks[n], "7")])

    assert run_threads(16, worker) == []
    source.refresh_from_db()
    received = sum(w.balance for w in Wallet.objects.filter(pk__in=[s.pk for s in sinks]))
    assert source.balance == Decimal("2") and received == Decimal("98")  # exactly 14 of 80 fit
    assert Transaction.objects.filter(status="failed", failure_code="INSUFFICIENT_FUNDS").count() == 80 - 14
    assert ledger_check() == []


def test_deposits_race_on_the_hot_issuance_account():
    usd = platform_asset("USD")
    wallets = [open_wallet(usd) for _ in range(32)]

    def worker(n: int) -> None:
        for _ in range(10):
            ledger_post(type="deposit", operations=[Issue(wallets[n * 2], "1"), Issue(wallets[n * 2 + 1], "2")]).raise_for_error()

    assert run_threads(16, worker) == []
    assert sum(w.balance for w in Wallet.objects.filter(pk__in=[w.pk for w in wallets])) == Decimal("480")
    shards = Wallet.objects.filter(asset=usd, kind="issuance")
    assert sum(s.balance for s in shards) == Decimal("-480")
    assert sum(1 for s in shards if s.balance) > 1  # spread over several rows
    assert ledger_check() == []


def test_racing_duplicate_references_post_once():
    usd = platform_asset("USD")
    org = OrganizationFactory()
    wallet = open_wallet(usd)
    outcomes: list[str] = []

    def worker(n: int) -> None:
        with transaction.atomic():
            result = ledger_post(type="ledger", operations=[Issue(wallet, "10")], organization=org, reference="once")
        outcomes.append("ok" if result.ok else result.error.code)

    assert run_threads(12, worker) == []
    assert sorted(outcomes) == ["DUPLICATE_REFERENCE"] * 11 + ["ok"]
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("10")
    assert Transaction.objects.filter(reference="once").count() == 1
    assert ledger_check() == []


def test_holds_and_postings_race_without_overdraft():
    usd = platform_asset("USD")
    wallet = open_wallet(usd, "50")
    sink = open_wallet(usd)

    def worker(n: int) -> None:
        rng = random.Random(n)
        for _ in range(15):
            if n % 2:
                held = ledger_hold_pending(type="withdrawal", operations=[Redeem(wallet, "3")])
                if not held.ok:
                    assert held.error.code == "INSUFFICIENT_FUNDS", held.error
                    continue
                if rng.random() < 0.5:
                    ledger_fail_pending(held.transaction, code="PAYOUT_FAILED")
            else:
                ledger_post(type="withdrawal", operations=[Redeem(wallet, "2"), Transfer(wallet, sink, "1")])

    assert run_threads(16, worker) == []
    wallet.refresh_from_db()
    assert wallet.balance >= 0 and wallet.balance - wallet.held >= 0
    assert ledger_check() == []
