"""ledger_post: every path and every error code (runs on PostgreSQL and on SQLite)."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.errors import ValidationFailed
from ledger.checks import ledger_check
from ledger.errors import CurrencyMismatch, DuplicateReference, InsufficientFunds, WalletInactive, WalletNotFound
from ledger.models import Entry, Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Redeem, Transfer, ledger_post, ledger_reverse
from ledger.services import wallet_suspend
from tests.factories.accounts import CustomerFactory
from tests.factories.ledger import balance, hold_pending

pytestmark = pytest.mark.django_db


def entries_of(tx: Transaction) -> list[tuple[int, str, Decimal, Decimal, int]]:
    return list(tx.entries.order_by("id").values_list("wallet_id", "direction", "amount", "balance_after", "operation_index"))


def test_issue_credits_wallet_and_debits_an_issuance_shard(usd, make_wallet):
    wallet = make_wallet(usd)
    result = ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount="100.50", currency="USD")])
    assert result.ok and result.error is None
    tx = result.raise_for_error()
    tx.refresh_from_db()
    assert tx.status == Transaction.Status.COMPLETED and tx.completed_at is not None
    assert balance(wallet) == Decimal("100.50")
    (debit_wallet, d, amount, after, op), credit = entries_of(tx)
    issuance = Wallet.objects.get(pk=debit_wallet)
    assert issuance.kind == Wallet.Kind.ISSUANCE and issuance.shard == wallet.pk % 16
    assert (d, amount, after, op) == ("debit", Decimal("100.50"), Decimal("-100.50"), 0)
    assert credit == (wallet.pk, "credit", Decimal("100.50"), Decimal("100.50"), 0)
    # the operation as stored: a posting row (was the JSON `operations`; the stated currency is its asset)
    assert list(tx.postings.values_list(
        "index", "kind", "source_wallet_id", "source_purpose", "destination_wallet_id", "destination_purpose", "amount", "asset__code"
    )) == [(0, "issue", issuance.pk, "issuance", wallet.pk, "", Decimal("100.50"), "USD")]
    assert ledger_check() == []


def test_multi_operation_transfer_with_fee_leg_posts_all(usd, make_wallet):
    a, b = make_wallet(usd, "100"), make_wallet(usd)
    result = ledger_post(
        type="transfer",
        operations=[Transfer(source=a, destination=b, amount="60"), Transfer(source=a, destination=PlatformAccount("fee"), amount="0.60")],
        description="rent",
        metadata={"note": "march", "amount": Decimal("60")},
    )
    tx = result.raise_for_error()
    assert balance(a) == Decimal("39.40") and balance(b) == Decimal("60")
    rows = entries_of(tx)
    assert [(r[1], r[3], r[4]) for r in rows if r[0] == a.pk] == [("debit", Decimal("40"), 0), ("debit", Decimal("39.40"), 1)]
    fee = Wallet.objects.get(pk=rows[-1][0])
    assert fee.purpose == "fee" and fee.kind == Wallet.Kind.SYSTEM and fee.shard == a.pk % 16 and fee.balance == Decimal("0.60")
    tx.refresh_from_db()
    assert tx.metadata == {"note": "march", "amount": "60"} and tx.description == "rent"
    assert ledger_check() == []


def test_redeem_debits_wallet_and_credits_issuance(usd, make_wallet):
    wallet = make_wallet(usd, "10")
    ledger_post(type="withdrawal", operations=[Redeem(wallet=wallet.pk, amount=Decimal("10"))]).raise_for_error()
    assert balance(wallet) == 0
    assert ledger_check() == []


def test_operations_apply_in_order_so_money_received_can_be_spent(usd, make_wallet):
    a, b, c = make_wallet(usd, "10"), make_wallet(usd), make_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(a, b, "10"), Transfer(b, c, "10")]).raise_for_error()
    assert (balance(a), balance(b), balance(c)) == (0, 0, Decimal("10"))


def test_insufficient_funds_records_a_failed_transaction_and_moves_nothing(usd, make_wallet):
    customer = CustomerFactory()
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    result = ledger_post(
        type="transfer",
        operations=[Transfer(a, b, "5"), Transfer(a, b, "5"), Transfer(a, b, "0.01")],
        customer=customer,
        reference="r-1",
    )
    assert not result.ok
    assert isinstance(result.error, InsufficientFunds)
    assert result.error.status == 422 and result.error.code == "INSUFFICIENT_FUNDS"
    assert result.error.details == {"operation_index": 2, "wallet_id": a.pk, "transaction_id": result.transaction.pk}
    failed = Transaction.objects.get(pk=result.transaction.pk)
    assert failed.status == Transaction.Status.FAILED
    assert (failed.failure_code, failed.failure_operation_index) == ("INSUFFICIENT_FUNDS", 2)
    assert failed.reference == "r-1" and failed.customer == customer and failed.postings.count() == 3
    assert not failed.entries.exists()
    assert (balance(a), balance(b)) == (Decimal("10"), 0)
    with pytest.raises(InsufficientFunds):
        result.raise_for_error()
    assert ledger_check() == []


def test_failed_record_survives_when_the_caller_commits_after_raising_outside(usd, make_wallet):
    """The API pattern: post inside the caller's transaction, get a failed result, commit."""
    a, b = make_wallet(usd, "1"), make_wallet(usd)
    with transaction.atomic():
        result = ledger_post(type="transfer", operations=[Transfer(a, b, "2")])
        assert not result.ok
        # the caller's transaction is still usable after a failed posting
        assert Transaction.objects.filter(pk=result.transaction.pk, status="failed").exists()
    assert Transaction.objects.get(pk=result.transaction.pk).failure_code == "INSUFFICIENT_FUNDS"


def test_available_balance_counts_holds(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    hold_pending(a, "7")
    result = ledger_post(type="transfer", operations=[Transfer(a, b, "3.01")])
    assert result.error.code == "INSUFFICIENT_FUNDS"
    ledger_post(type="transfer", operations=[Transfer(a, b, "3")]).raise_for_error()
    assert balance(a) == Decimal("7")


def test_inactive_wallet_is_refused_and_recorded(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    wallet_suspend(wallet=b)
    result = ledger_post(type="transfer", operations=[Issue(a, "1"), Transfer(a, b, "1")])
    assert isinstance(result.error, WalletInactive) and result.error.status == 409
    assert result.error.details["operation_index"] == 1 and result.error.details["wallet_id"] == b.pk
    assert result.transaction.failure_code == "WALLET_INACTIVE"
    assert balance(a) == Decimal("10")


def test_currency_mismatch_between_wallets(usd, eur, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(eur)
    result = ledger_post(type="transfer", operations=[Transfer(a, b, "1")])
    assert isinstance(result.error, CurrencyMismatch) and result.error.status == 400
    assert result.transaction.status == "failed" and result.transaction.failure_operation_index == 0


def test_currency_mismatch_with_the_stated_currency(usd, make_wallet):
    a = make_wallet(usd)
    result = ledger_post(type="deposit", operations=[Issue(a, "1", currency="EUR")])
    assert result.error.code == "CURRENCY_MISMATCH"
    assert result.error.details["currency"] == "EUR"


def test_duplicate_reference_returns_the_existing_transaction(usd, make_wallet, organization):
    a = make_wallet(usd)
    first = ledger_post(type="deposit", operations=[Issue(a, "5")], organization=organization, reference="inv-1").raise_for_error()
    again = ledger_post(type="deposit", operations=[Issue(a, "5")], organization=organization, reference="inv-1")
    assert not again.ok and isinstance(again.error, DuplicateReference) and again.error.status == 409
    assert again.transaction.pk == first.pk
    assert again.error.details == {"reference": "inv-1", "transaction_id": first.pk, "status": "completed", "type": "deposit"}
    assert balance(a) == Decimal("5")
    assert Transaction.objects.filter(reference="inv-1").count() == 1


def test_reference_of_a_failed_attempt_is_used_up(usd, make_wallet, organization):
    a, b = make_wallet(usd), make_wallet(usd)
    failed = ledger_post(type="ledger", operations=[Transfer(a, b, "5")], organization=organization, reference="x")
    assert failed.error.code == "INSUFFICIENT_FUNDS"
    retry = ledger_post(type="ledger", operations=[Issue(a, "5")], organization=organization, reference="x")
    assert retry.error.code == "DUPLICATE_REFERENCE" and retry.error.details["status"] == "failed"
    assert balance(a) == 0


def test_a_duplicate_wins_over_a_failure(usd, make_wallet, organization):
    a, b = make_wallet(usd), make_wallet(usd)
    ledger_post(type="ledger", operations=[Issue(a, "1")], organization=organization, reference="y").raise_for_error()
    again = ledger_post(type="ledger", operations=[Transfer(b, a, "5")], organization=organization, reference="y")
    assert again.error.code == "DUPLICATE_REFERENCE"
    assert Transaction.objects.filter(reference="y").count() == 1


def test_references_are_scoped_per_owner(usd, make_wallet, organization):
    a = make_wallet(usd)
    other = CustomerFactory()
    ledger_post(type="ledger", operations=[Issue(a, "1")], organization=organization, reference="same").raise_for_error()
    ledger_post(type="deposit", operations=[Issue(a, "1")], customer=other, reference="same").raise_for_error()
    # no owner: no reference uniqueness to enforce
    ledger_post(type="deposit", operations=[Issue(a, "1")], reference="same").raise_for_error()
    ledger_post(type="deposit", operations=[Issue(a, "1")], reference="same").raise_for_error()
    assert balance(a) == Decimal("4")


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [("0", "greater than zero"), ("-1", "positive"), ("1.001", "decimals"), (1.5, "floating"), ("1e2", "exponent")],
)
def test_bad_amounts_raise_400_and_record_nothing(usd, make_wallet, amount, fragment):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    before = Transaction.objects.count()
    with pytest.raises(ValidationFailed) as info:
        ledger_post(type="transfer", operations=[Transfer(a, b, "1"), Transfer(a, b, amount)])
    assert "operations[1].amount" in info.value.details["fields"]
    assert fragment in info.value.details["fields"]["operations[1].amount"][0]
    assert Transaction.objects.count() == before and balance(a) == Decimal("10")


@pytest.mark.postgres  # SQLite keeps NUMERIC as a double: 18 decimals do not survive there
def test_amount_precision_follows_the_asset(eth, make_wallet):
    a = make_wallet(eth)
    ledger_post(type="deposit", operations=[Issue(a, "12345.123456789012345678")]).raise_for_error()
    assert balance(a) == Decimal("12345.123456789012345678")  # beyond a bigint of wei
    with pytest.raises(ValidationFailed):
        ledger_post(type="deposit", operations=[Issue(a, "0.0000000000000000001")])


def test_malformed_requests_raise(usd, make_wallet):
    a = make_wallet(usd, "5")
    with pytest.raises(ValidationFailed):
        ledger_post(type="transfer", operations=[])
    with pytest.raises(ValidationFailed):
        ledger_post(type="transfer", operations=[Transfer(a, a, "1")])
    with pytest.raises(ValidationFailed):
        ledger_post(type="transfer", operations=[Transfer(a, "12", "1")])
    with pytest.raises(ValidationFailed):
        ledger_post(type="transfer", operations=[Issue(a, "1")] * 101)
    with pytest.raises(WalletNotFound) as info:
        ledger_post(type="transfer", operations=[Transfer(a, 999_999_999, "1")])
    assert info.value.status == 404
    with pytest.raises(ValueError):
        ledger_post(type="nonsense", operations=[Issue(a, "1")])
    with pytest.raises(TypeError):
        ledger_post(type="deposit", operations=[("issue", a.pk, "1")])
    assert Transaction.objects.filter(status="failed").count() == 0
    assert balance(a) == Decimal("5")


def test_pending_status_on_success(usd, make_wallet):
    a = make_wallet(usd, "5")
    tx = ledger_post(type="withdrawal", operations=[Redeem(a, "5")], status_on_success="pending").raise_for_error()
    tx.refresh_from_db()
    assert tx.status == "pending" and tx.completed_at is None and balance(a) == 0
    assert ledger_check() == []


def test_issuance_may_go_negative_but_nothing_else(usd, make_wallet):
    a = make_wallet(usd, "5")
    issued = Wallet.objects.filter(asset=usd, kind="issuance")
    assert sum(w.balance for w in issued) == Decimal("-5")
    assert ledger_post(type="withdrawal", operations=[Redeem(a, "5.01")]).error.code == "INSUFFICIENT_FUNDS"


def test_reverse_posts_the_inverse_and_marks_the_original(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    original = ledger_post(
        type="transfer", operations=[Transfer(a, b, "4"), Transfer(a, PlatformAccount("fee"), "1")]
    ).raise_for_error()
    reversal = ledger_reverse(original).raise_for_error()
    original.refresh_from_db()
    assert original.status == "reversed" and reversal.type == "reversal"
    assert reversal.metadata == {"reverses": original.pk}
    assert (balance(a), balance(b)) == (Decimal("10"), 0)
    assert ledger_check() == []
    from ledger.errors import InvalidState

    with pytest.raises(InvalidState):
        ledger_reverse(original)


def test_reverse_refused_when_the_money_was_spent(usd, make_wallet):
    a, b, c = make_wallet(usd, "10"), make_wallet(usd), make_wallet(usd)
    original = ledger_post(type="transfer", operations=[Transfer(a, b, "10")]).raise_for_error()
    ledger_post(type="transfer", operations=[Transfer(b, c, "10")]).raise_for_error()
    result = ledger_reverse(original)
    assert result.error.code == "INSUFFICIENT_FUNDS" and result.transaction.type == "reversal"
    original.refresh_from_db()
    assert original.status == "completed"


@pytest.mark.postgres
def test_a_posting_is_two_statements_on_postgres(usd, make_wallet):
    """Lock (one SELECT ... FOR UPDATE in id order) and write (one CTE statement), inside the
    caller's transaction: no savepoints."""
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(a, PlatformAccount("fee"), "1")]).raise_for_error()  # shards exist
    with CaptureQueriesContext(connection) as queries:
        ledger_post(
            type="transfer", operations=[Transfer(a, b, "1"), Transfer(a, PlatformAccount("fee"), "0.10"), Issue(b, "1")]
        ).raise_for_error()
    sqls = [q["sql"] for q in queries.captured_queries]
    assert len(sqls) == 2, sqls
    assert "FOR UPDATE" in sqls[0] and 'ORDER BY "ledger_wallet"."id"' in sqls[0]
    assert sqls[1].startswith("WITH t AS")
    assert ledger_check() == []


def test_entries_follow_the_balance_after_chain_in_id_order(usd, make_wallet):
    a, b = make_wallet(usd, "100"), make_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(a, b, "1"), Transfer(b, a, "0.5"), Transfer(a, b, "2")]).raise_for_error()
    running = Decimal(0)
    for entry in Entry.objects.filter(wallet=a).order_by("id"):
        running += entry.signed_amount
        assert entry.balance_after == running
    assert running == balance(a) == Decimal("97.5")
