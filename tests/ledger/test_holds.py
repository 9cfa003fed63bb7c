"""Holds through the engine's two-phase postings: pending (a payout in flight, an authorization:
hold, complete, fail, capture in part, void) and review (hold_for_review, complete, reject)."""

from decimal import Decimal

import pytest

from core.errors import InvalidState, ValidationFailed
from ledger.checks import ledger_check
from ledger.errors import WalletNotFound
from ledger.models import Hold, Transaction, Wallet
from ledger.posting import (
    Issue,
    PlatformAccount,
    Redeem,
    Transfer,
    ledger_capture_pending,
    ledger_complete_pending,
    ledger_complete_reviewed,
    ledger_fail_pending,
    ledger_hold_pending,
    ledger_post,
    ledger_reject_reviewed,
    ledger_void_pending,
)
from ledger.services import wallet_suspend
from tests.factories.ledger import balance, hold_pending

pytestmark = pytest.mark.django_db


def held(wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).held


def pending(wallet, *operations, **posting):
    """A payout in flight's reservation (`ledger_hold_pending`, as withdrawals and POST /holds make it)."""
    return ledger_hold_pending(type="withdrawal", operations=list(operations), customer=wallet.customer, **posting)


def test_a_pending_transaction_reduces_available_and_failing_it_restores_it(usd, make_wallet):
    a = make_wallet(usd, "10")
    tx = hold_pending(a, "4")
    assert tx.status == "pending" and not tx.entries.exists()
    [hold] = Hold.objects.filter(transaction=tx)
    assert hold.status == "held" and hold.amount == Decimal("4")
    assert (a.balance, a.held, a.available_balance) == (Decimal("10"), Decimal("4"), Decimal("6"))
    assert ledger_check() == []
    failed = ledger_fail_pending(tx, code="PAYOUT_FAILED", reason="returned by the bank")
    assert failed.status == "failed" and failed.failure_code == "PAYOUT_FAILED" and not failed.entries.exists()
    assert Hold.objects.get(pk=hold.pk).status == "released" and held(a) == 0 and balance(a) == Decimal("10")
    with pytest.raises(InvalidState):
        ledger_fail_pending(tx.pk, code="PAYOUT_FAILED")
    assert ledger_check() == []


def test_a_hold_refuses_more_than_available(usd, make_wallet):
    a = make_wallet(usd, "10")
    hold_pending(a, "6")
    refused = pending(a, Redeem(a, "4.01"))
    assert refused.error.code == "INSUFFICIENT_FUNDS" and refused.transaction.status == "failed"
    assert not Hold.objects.filter(transaction=refused.transaction).exists()
    hold_pending(a, "4")
    assert held(a) == Decimal("10") and ledger_check() == []


def test_a_hold_validates(usd, make_wallet):
    a = make_wallet(usd, "10")
    with pytest.raises(ValidationFailed):
        pending(a, Redeem(a, "0"))
    with pytest.raises(ValidationFailed):
        pending(a, Redeem(a, "0.001"))
    with pytest.raises(WalletNotFound):
        pending(a, Redeem(987654321, "1"))
    wallet_suspend(wallet=a)
    assert pending(a, Redeem(a, "1")).error.code == "WALLET_INACTIVE"
    assert not Hold.objects.exists()


def test_completing_a_pending_transaction_captures_and_posts_in_one_posting(usd, make_wallet):
    a = make_wallet(usd, "10")
    tx = pending(a, Redeem(a, "9"), Transfer(a, PlatformAccount("fee"), "1"), reference="payout-1").raise_for_error()
    # with the whole balance held, nothing else can leave
    assert ledger_post(type="withdrawal", operations=[Redeem(a, "1")]).error.code == "INSUFFICIENT_FUNDS"
    done = ledger_complete_pending(tx).raise_for_error()
    assert done.pk == tx.pk and done.status == "completed" and done.entries.count() == 4
    hold = Hold.objects.get(transaction=tx)
    assert hold.status == "captured" and hold.amount == Decimal("10")
    assert (balance(a), held(a)) == (0, 0)
    assert ledger_check() == []
    with pytest.raises(InvalidState):
        ledger_complete_pending(tx)


def test_a_completion_refused_now_fails_the_transaction_and_releases_the_hold(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = pending(a, Transfer(a, b, "5")).raise_for_error()
    wallet_suspend(wallet=b)
    result = ledger_complete_pending(tx)
    assert result.error.code == "WALLET_INACTIVE"
    tx.refresh_from_db()
    assert tx.status == "failed" and Hold.objects.get(transaction=tx).status == "released"
    assert held(a) == 0 and balance(a) == Decimal("10") and balance(b) == 0
    assert ledger_check() == []


def test_an_authorization_is_captured_in_part_or_voided(usd, make_wallet):
    """The two ends POST /holds/{id}/capture and /void use (wallets.movements.holds)."""
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = ledger_hold_pending(type="ledger", operations=[Transfer(a, b, "6")]).raise_for_error()
    part = ledger_capture_pending(tx, amount=Decimal("2.50")).raise_for_error()
    assert part.pk != tx.pk and part.status == "completed"
    assert Transaction.objects.get(pk=tx.pk).status == "voided" and not Hold.objects.filter(status="held").exists()
    assert (balance(a), held(a), balance(b)) == (Decimal("7.50"), 0, Decimal("2.50"))
    other = ledger_hold_pending(type="ledger", operations=[Transfer(a, b, "7.50")]).raise_for_error()
    assert held(a) == Decimal("7.50")
    voided = ledger_void_pending(other, code="HOLD_VOIDED")
    assert voided.status == "voided" and held(a) == 0 and balance(a) == Decimal("7.50")
    with pytest.raises(InvalidState):
        ledger_capture_pending(other)
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
