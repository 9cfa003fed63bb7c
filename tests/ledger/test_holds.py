"""Holds (place, release, capture) and review (hold_for_review, complete, reject)."""

from decimal import Decimal

import pytest

from core.errors import InvalidState, ValidationFailed
from ledger.checks import ledger_check
from ledger.errors import InsufficientFunds, WalletInactive, WalletNotFound
from ledger.models import Hold, Transaction, Wallet
from ledger.posting import (
    Issue,
    PlatformAccount,
    Redeem,
    Transfer,
    hold_capture,
    hold_place,
    hold_release,
    ledger_complete_reviewed,
    ledger_post,
    ledger_reject_reviewed,
)
from ledger.services import wallet_suspend
from tests.factories.ledger import balance

pytestmark = pytest.mark.django_db


def held(wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).held


def test_place_reduces_available_and_release_restores_it(usd, make_wallet):
    a = make_wallet(usd, "10")
    hold = hold_place(wallet=a, amount="4", reason="payout")
    assert hold.status == "held" and hold.amount == Decimal("4")
    a.refresh_from_db()
    assert (a.balance, a.held, a.available_balance) == (Decimal("10"), Decimal("4"), Decimal("6"))
    assert ledger_check() == []
    released = hold_release(hold=hold)
    assert released.status == "released" and held(a) == 0
    with pytest.raises(InvalidState):
        hold_release(hold=hold.pk)
    assert ledger_check() == []


def test_place_refuses_more_than_available(usd, make_wallet):
    a = make_wallet(usd, "10")
    hold_place(wallet=a, amount="6", reason="one")
    with pytest.raises(InsufficientFunds):
        hold_place(wallet=a, amount="4.01", reason="two")
    hold_place(wallet=a, amount="4", reason="two")
    assert held(a) == Decimal("10")


def test_place_validates(usd, make_wallet):
    a = make_wallet(usd, "10")
    with pytest.raises(ValidationFailed):
        hold_place(wallet=a, amount="0", reason="x")
    with pytest.raises(ValidationFailed):
        hold_place(wallet=a, amount="0.001", reason="x")
    with pytest.raises(WalletNotFound):
        hold_place(wallet=987654321, amount="1", reason="x")
    wallet_suspend(wallet=a)
    with pytest.raises(WalletInactive):
        hold_place(wallet=a, amount="1", reason="x")
    assert not Hold.objects.exists()


def test_capture_releases_and_posts_in_one_posting(usd, make_wallet):
    a = make_wallet(usd, "10")
    hold = hold_place(wallet=a, amount="10", reason="payout in flight")
    # with the whole balance held, nothing else can leave
    assert ledger_post(type="withdrawal", operations=[Redeem(a, "1")]).error.code == "INSUFFICIENT_FUNDS"
    result = hold_capture(
        hold=hold,
        type="withdrawal",
        operations=[Redeem(a, "9"), Transfer(a, PlatformAccount("fee"), "1")],
        reference="payout-1",
        customer=a.customer,
    )
    tx = result.raise_for_error()
    hold.refresh_from_db()
    assert hold.status == "captured" and hold.transaction_id == tx.pk
    a.refresh_from_db()
    assert (a.balance, a.held) == (0, 0)
    assert ledger_check() == []
    with pytest.raises(InvalidState):
        hold_capture(hold=hold, type="withdrawal", operations=[Redeem(a, "1")])


def test_failed_capture_keeps_the_hold(usd, make_wallet):
    a = make_wallet(usd, "10")
    hold = hold_place(wallet=a, amount="5", reason="payout")
    result = hold_capture(hold=hold, type="withdrawal", operations=[Redeem(a, "10.01")])
    assert result.error.code == "INSUFFICIENT_FUNDS" and result.transaction.status == "failed"
    hold.refresh_from_db()
    assert hold.status == "held" and held(a) == Decimal("5") and balance(a) == Decimal("10")
    assert ledger_check() == []


def test_review_holds_then_completes(usd, make_wallet):
    a, b = make_wallet(usd, "100"), make_wallet(usd)
    result = ledger_post(
        type="transfer",
        operations=[Transfer(a, b, "30"), Transfer(a, PlatformAccount("fee"), "1")],
        customer=a.customer,
        reference="big-1",
        hold_for_review=True,
    )
    tx = result.raise_for_error()
    assert tx.status == "in_review" and not tx.entries.exists()
    assert held(a) == Decimal("31") and balance(a) == Decimal("100") and held(b) == 0
    assert [h.amount for h in Hold.objects.filter(transaction=tx)] == [Decimal("31")]
    # the held money cannot be spent meanwhile
    assert ledger_post(type="transfer", operations=[Transfer(a, b, "69.01")]).error.code == "INSUFFICIENT_FUNDS"
    assert ledger_check() == []

    done = ledger_complete_reviewed(tx.pk)
    assert done.ok
    tx.refresh_from_db()
    assert tx.status == "completed" and tx.completed_at and tx.entries.count() == 4
    assert (balance(a), held(a), balance(b)) == (Decimal("69"), 0, Decimal("30"))
    assert Hold.objects.get(transaction=tx).status == "captured"
    assert ledger_check() == []
    with pytest.raises(InvalidState):
        ledger_complete_reviewed(tx)


def test_review_hold_is_the_largest_running_outflow(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = ledger_post(
        type="transfer", operations=[Transfer(a, b, "10"), Transfer(b, a, "4"), Transfer(a, b, "4")], hold_for_review=True
    ).raise_for_error()
    holds = {h.wallet_id: h.amount for h in Hold.objects.filter(transaction=tx)}
    assert holds == {a.pk: Decimal("10")}  # b ends up net positive: nothing held on it
    ledger_complete_reviewed(tx).raise_for_error()
    assert (balance(a), balance(b)) == (0, Decimal("10"))


def test_review_refused_up_front_when_funds_are_missing(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    result = ledger_post(type="transfer", operations=[Transfer(a, b, "11")], hold_for_review=True)
    assert result.error.code == "INSUFFICIENT_FUNDS" and result.transaction.status == "failed"
    assert not Hold.objects.exists()


def test_reject_releases_the_holds(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = ledger_post(type="transfer", operations=[Transfer(a, b, "7")], hold_for_review=True).raise_for_error()
    rejected = ledger_reject_reviewed(tx, reason="structuring")
    assert rejected.status == "rejected" and rejected.failure_message == "structuring"
    assert held(a) == 0 and balance(a) == Decimal("10") and balance(b) == 0
    assert Hold.objects.get(transaction=tx).status == "released"
    assert not rejected.entries.exists()
    assert ledger_check() == []
    with pytest.raises(InvalidState):
        ledger_reject_reviewed(tx)


def test_completion_fails_cleanly_when_a_wallet_was_suspended_meanwhile(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = ledger_post(type="transfer", operations=[Transfer(a, b, "7")], hold_for_review=True).raise_for_error()
    wallet_suspend(wallet=b)
    result = ledger_complete_reviewed(tx)
    assert not result.ok and result.error.code == "WALLET_INACTIVE"
    tx.refresh_from_db()
    assert tx.status == Transaction.Status.FAILED and tx.failure_code == "WALLET_INACTIVE"
    assert Hold.objects.get(transaction=tx).status == "released" and held(a) == 0
    assert balance(a) == Decimal("10")
    assert ledger_check() == []


def test_review_of_a_deposit_holds_nothing(usd, make_wallet):
    a = make_wallet(usd)
    tx = ledger_post(type="deposit", operations=[Issue(a, "5000")], hold_for_review=True).raise_for_error()
    assert not Hold.objects.filter(transaction=tx).exists()  # issuance is never held
    ledger_complete_reviewed(tx).raise_for_error()
    assert balance(a) == Decimal("5000")
