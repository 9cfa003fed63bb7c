"""Usage counters (ledger.usage) equal a recount from the ledger after any mix of movements,
holds, rejections, failures and reversals (issue 10 item 2); check_ledger reports a counter that
drifted."""

from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.checks import ledger_check
from ledger.models import Transaction, UsageCounter
from ledger.posting import (
    Issue,
    PlatformAccount,
    Redeem,
    Transfer,
    ledger_complete_pending,
    ledger_complete_reviewed,
    ledger_fail_pending,
    ledger_hold_pending,
    ledger_post,
    ledger_reject_reviewed,
    ledger_reverse,
)
from ledger.usage import usage_check, usage_recount
from tests.factories.accounts import CustomerFactory
from tests.factories.ledger import open_wallet

pytestmark = pytest.mark.django_db

AMOUNTS = st.integers(min_value=1, max_value=5000).map(lambda cents: Decimal(cents) / 100)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "transfer", "own_transfer", "withdrawal", "review", "exchange_like", "reverse", "settle"]),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=0, max_value=2),
        AMOUNTS,
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)


def _run(step, wallets, spare, open_txs, posted):
    kind, i, j, amount, flag = step
    a, b = wallets[i], wallets[j if j != i else (i + 1) % len(wallets)]
    if kind == "deposit":
        result = ledger_post(type="deposit", operations=[Issue(wallet=a, amount=amount)])
    elif kind == "transfer":
        result = ledger_post(type="transfer", operations=[Transfer(a, b, amount)])
    elif kind == "own_transfer":
        result = ledger_post(type="transfer", operations=[Transfer(a, spare[i], amount)])
    elif kind == "exchange_like":
        result = ledger_post(type="exchange", operations=[Transfer(a, PlatformAccount("fx"), amount), Transfer(a, PlatformAccount("fee"), Decimal("0.01"))])
    elif kind == "withdrawal":
        result = ledger_hold_pending(type="withdrawal", operations=[Redeem(wallet=a, amount=amount), Transfer(a, PlatformAccount("fee"), Decimal("0.10"))])
    elif kind == "review":
        result = ledger_post(type="transfer", operations=[Transfer(a, b, amount)], hold_for_review=True)
    elif kind == "reverse":
        if posted:
            tx = posted.pop(0)
            ledger_reverse(tx)
        return
    else:  # settle: end the oldest held or pending transaction, one way or the other
        if open_txs:
            tx = open_txs.pop(0)
            tx.refresh_from_db()
            if tx.status == Transaction.Status.PENDING:
                ledger_complete_pending(tx) if flag else ledger_fail_pending(tx, code="PAYOUT_FAILED")
            elif tx.status == Transaction.Status.IN_REVIEW:
                ledger_complete_reviewed(tx) if flag else ledger_reject_reviewed(tx, reason="no")
        return
    if result.ok:
        tx = result.transaction
        (open_txs if tx.status in ("pending", "in_review") else posted).append(tx)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=STEPS)
def test_counters_equal_the_recount_after_any_mix(usd, steps):
    with transaction.atomic():
        customers = [CustomerFactory(kyc_level="enhanced") for _ in range(3)]
        wallets = [open_wallet(usd, "100", customer=c) for c in customers]
        spare = [open_wallet(usd, customer=c, label="spare") for c in customers]
        open_txs, posted = [], []
        for step in steps:
            with transaction.atomic():  # a refusal that raises leaves the rest standing
                try:
                    _run(step, wallets, spare, open_txs, posted)
                except Exception as exc:  # noqa: BLE001 - only the ledger's own refusals are expected here
                    from core.errors import CofferError

                    if not isinstance(exc, CofferError):
                        raise
        assert usage_check() == []
        assert ledger_check() == []
        transaction.set_rollback(True)


def test_own_transfers_and_fees_do_not_count_but_an_exchange_fee_does(usd):
    customer = CustomerFactory()
    a, b = open_wallet(usd, "100", customer=customer), open_wallet(usd, customer=customer, label="savings")
    other = open_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(a, b, Decimal("10"))]).raise_for_error()
    ledger_post(type="transfer", operations=[Transfer(a, other, Decimal("5")), Transfer(a, PlatformAccount("fee"), Decimal("1"))]).raise_for_error()
    ledger_post(type="exchange", operations=[Transfer(a, PlatformAccount("fx"), Decimal("7")), Transfer(a, PlatformAccount("fee"), Decimal("2"))]).raise_for_error()
    totals = {(key[2], key[3]): charge.amount for (key, _), charge in usage_recount().items() if key[0] == customer.pk}
    assert totals == {("deposit", "incoming"): Decimal("100"), ("transfer", "outgoing"): Decimal("5"), ("exchange", "outgoing"): Decimal("9")}
    assert usage_check() == []


def test_check_ledger_reports_a_counter_that_drifted(usd):
    wallet = open_wallet(usd, "100")
    UsageCounter.objects.filter(customer_id=wallet.customer_id).update(amount=Decimal("99"))
    problems = ledger_check()
    assert any("counter 99" in p and "ledger counts 100" in p for p in problems), problems
