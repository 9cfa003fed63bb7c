"""Property test: random multi-operation transactions against the engine and against a plain
in-memory model of SPEC 3/4 agree on every balance and on every failure (code and operation
index). Each example gets a fresh set of wallets."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.checks import ledger_check
from ledger.models import Wallet
from ledger.posting import Issue, PlatformAccount, Redeem, Transfer, ledger_post
from ledger.services import wallet_suspend
from tests.factories.ledger import hold_pending, open_wallet, platform_asset

pytestmark = pytest.mark.django_db

N_WALLETS = 4
FEE = "fee"  # the model's name for the platform fee account
CENTS = st.integers(min_value=1, max_value=6_000).map(lambda c: Decimal(c) / 100)

op_strategy = st.one_of(
    st.tuples(st.just("issue"), st.integers(0, N_WALLETS - 1), CENTS),
    st.tuples(st.just("redeem"), st.integers(0, N_WALLETS - 1), CENTS),
    st.tuples(st.just("transfer"), st.integers(0, N_WALLETS - 1), st.integers(0, N_WALLETS - 1), CENTS),
    st.tuples(st.just("fee"), st.integers(0, N_WALLETS - 1), CENTS),
).filter(lambda op: not (op[0] == "transfer" and op[1] == op[2]))


@dataclass
class Model:
    """SPEC 3/4 in a few lines: ops apply in order; a suspended wallet fails the op that touches
    it; after each op the source's balance minus holds must stay >= 0 (issuance is exempt); a
    failure leaves every balance as it was."""

    balances: dict
    held: dict
    suspended: set

    def post(self, ops):
        after = dict(self.balances)
        for index, op in enumerate(ops):
            kind = op[0]
            if kind == "issue":
                src, dst, amount = "issuance", op[1], op[2]
            elif kind == "redeem":
                src, dst, amount = op[1], "issuance", op[2]
            elif kind == "fee":
                src, dst, amount = op[1], FEE, op[2]
            else:
                src, dst, amount = op[1], op[2], op[3]
            if src in self.suspended or dst in self.suspended:
                return ("WALLET_INACTIVE", index)
            after[src] = after.get(src, Decimal(0)) - amount
            after[dst] = after.get(dst, Decimal(0)) + amount
            if src != "issuance" and after[src] - self.held.get(src, Decimal(0)) < 0:
                return ("INSUFFICIENT_FUNDS", index)
        self.balances = after
        return None


def to_operation(op, wallets):
    kind = op[0]
    if kind == "issue":
        return Issue(wallet=wallets[op[1]], amount=op[2])
    if kind == "redeem":
        return Redeem(wallet=wallets[op[1]].pk, amount=str(op[2]))
    if kind == "fee":
        return Transfer(source=wallets[op[1]], destination=PlatformAccount("fee"), amount=op[2])
    return Transfer(source=wallets[op[1]].pk, destination=wallets[op[2]].pk, amount=op[3])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    opening=st.lists(st.integers(min_value=0, max_value=5_000).map(lambda c: Decimal(c) / 100), min_size=N_WALLETS, max_size=N_WALLETS),
    hold_on=st.one_of(st.none(), st.tuples(st.integers(0, N_WALLETS - 1), st.integers(1, 100))),
    suspend=st.one_of(st.none(), st.integers(0, N_WALLETS - 1)),
    transactions=st.lists(st.lists(op_strategy, min_size=1, max_size=6), min_size=1, max_size=6),
)
def test_engine_agrees_with_the_model(db, opening, hold_on, suspend, transactions):
    usd = platform_asset("USD")
    wallets = [open_wallet(usd, amount if amount else None) for amount in opening]
    model = Model(balances={i: amount for i, amount in enumerate(opening)}, held={}, suspended=set())
    if hold_on is not None:
        index, percent = hold_on
        amount = (opening[index] * percent / 100).quantize(Decimal("0.01"))
        if amount > 0:
            hold_pending(wallets[index], amount)
            model.held[index] = amount
    if suspend is not None:
        wallet_suspend(wallet=wallets[suspend])
        model.suspended.add(suspend)
    def platform_balances(**filters):
        return {w.pk: w.balance for w in Wallet.objects.filter(asset=usd, customer__isnull=True, organization__isnull=True, **filters)}

    issuance_before, fee_before = platform_balances(kind="issuance"), platform_balances(purpose="fee")

    for ops in transactions:
        expected_failure = model.post(ops)
        result = ledger_post(type="ledger", operations=[to_operation(op, wallets) for op in ops])
        if expected_failure is None:
            assert result.ok, (ops, result.error and result.error.details)
        else:
            assert not result.ok, ops
            assert (result.error.code, result.error.details["operation_index"]) == expected_failure, ops
            assert result.transaction.failure_operation_index == expected_failure[1]
        for i, wallet in enumerate(wallets):
            assert Wallet.objects.get(pk=wallet.pk).balance == model.balances.get(i, Decimal(0)), (i, ops)

    def moved(before, after):
        return sum((balance - before.get(pk, Decimal(0)) for pk, balance in after.items()), Decimal(0))

    assert moved(fee_before, platform_balances(purpose="fee")) == model.balances.get(FEE, Decimal(0))
    assert moved(issuance_before, platform_balances(kind="issuance")) == model.balances.get("issuance", Decimal(0))
    assert ledger_check() == []
