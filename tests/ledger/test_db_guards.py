"""The database guards the ledger even against raw SQL (SPEC 4.2, 4.4, 4.5), and the invariant
checker / `check_ledger` command find every kind of breach."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction

from accounts.models import Customer
from ledger.checks import ledger_check
from ledger.models import Entry, Hold, Posting, Transaction, Wallet
from ledger.posting import Issue, Transfer, ledger_post
from tests.factories.accounts import OrganizationFactory
from tests.factories.ledger import hold_pending, open_wallet, platform_asset
from tests.migrations import latest_migrations, migrate_to


def raw(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def posted(transactional_db):
    usd = platform_asset("USD")
    a, b = open_wallet(usd, "10"), open_wallet(usd)
    tx = ledger_post(type="transfer", operations=[Transfer(a, b, "4")]).raise_for_error()
    return a, b, tx


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_entries_refuse_update_and_delete_even_raw(posted):
    a, _, tx = posted
    entry = tx.entries.first()
    for sql in (
        "UPDATE ledger_entry SET amount = 1000 WHERE id = %s",
        "UPDATE ledger_entry SET balance_after = 0 WHERE id = %s",
        "DELETE FROM ledger_entry WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(sql, [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Entry.objects.filter(pk=entry.pk).delete()
    assert Entry.objects.get(pk=entry.pk).amount == Decimal("4")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postings_refuse_update_and_delete_even_raw(posted):
    _, _, tx = posted
    posting = tx.postings.get()
    for sql in ("UPDATE ledger_posting SET amount = 1000 WHERE id = %s", "DELETE FROM ledger_posting WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(sql, [posting.pk])
    assert Posting.objects.get(pk=posting.pk).amount == Decimal("4")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_transactions_and_holds_refuse_delete(posted):
    a, _, tx = posted
    hold = Hold.objects.get(transaction=hold_pending(a, "1"))
    with pytest.raises(DatabaseError, match="not allowed"), transaction.atomic():
        raw("DELETE FROM ledger_transaction WHERE id = %s", [tx.pk])
    with pytest.raises(DatabaseError, match="not allowed"), transaction.atomic():
        raw("DELETE FROM ledger_hold WHERE id = %s", [hold.pk])
    assert Transaction.objects.filter(pk=tx.pk).exists() and Hold.objects.filter(pk=hold.pk).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_negative_customer_balance_refused_by_check(posted):
    a, _, _ = posted
    for sql in (
        "UPDATE ledger_wallet SET balance = -0.01 WHERE id = %s",
        "UPDATE ledger_wallet SET held = balance + 1 WHERE id = %s",
        "UPDATE ledger_wallet SET held = -1 WHERE id = %s",
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            raw(sql, [a.pk])
    # the issuance account is the one kind allowed below zero
    issuance = Wallet.objects.filter(kind="issuance", balance__lt=0).first()
    assert issuance is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_unbalanced_transaction_refused_at_commit(posted):
    a, b, tx = posted
    with pytest.raises(IntegrityError, match="unbalanced"):
        with transaction.atomic():
            raw(
                "INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
                " VALUES (%s, %s, 'credit', 5, 11, 0, now())",
                [tx.pk, b.pk],
            )
            # deferred: nothing is refused until COMMIT
            assert Entry.objects.filter(transaction=tx).count() == 3
    assert Entry.objects.filter(transaction=tx).count() == 2


def _wallet_rows_read() -> int:
    """Rows of `ledger_wallet` this transaction has read so far (sequential and index scans)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_get_xact_tuples_returned(%s::regclass) + pg_stat_get_xact_tuples_fetched(%s::regclass)",
                       ["ledger_wallet", "ledger_wallet"])
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plan", ["auto", "force_generic_plan"])
def test_the_balance_check_reads_the_transactions_entries_not_every_wallet(posted, plan):
    """The deferred check at COMMIT reads the transaction's entries and their wallets by key. It
    once walked every wallet of the platform in asset order against the two entries (the plan its
    join got on a platform of a few hundred wallets): a posting's COMMIT grew with the platform."""
    a, b, _ = posted
    organization = OrganizationFactory()
    customers = Customer.objects.bulk_create(
        [Customer(organization=organization, external_id=f"many-{i}", name=f"Many {i}") for i in range(1000)])
    Wallet.objects.bulk_create([Wallet(asset=a.asset, kind="customer", customer=c) for c in customers])
    raw("ANALYZE ledger_wallet")
    for _ in range(6):  # PL/pgSQL's plan cache goes generic after five executions
        ledger_post(type="transfer", operations=[Transfer(a, b, "0.01")]).raise_for_error()
    with transaction.atomic():
        raw(f"SET LOCAL plan_cache_mode = {plan}")
        ledger_post(type="transfer", operations=[Transfer(a, b, "0.01")]).raise_for_error()
        before = _wallet_rows_read()
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred checks run here instead of at COMMIT
        read = _wallet_rows_read() - before
    # two entries, each checked (its wallet by key, twice) and each wallet FK checked: a handful
    assert read <= 16, f"the checks at commit read {read} wallet rows of {Wallet.objects.count()}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_balanced_in_each_asset_is_required(posted):
    """A EUR credit cannot balance a USD debit."""
    a, _, _ = posted
    eur_wallet = open_wallet(platform_asset("EUR"))
    tx = ledger_post(type="deposit", operations=[Issue(a, "1")]).raise_for_error()
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        raw(
            "INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
            " VALUES (%s, %s, 'debit', 2, 9, 1, now()), (%s, %s, 'credit', 2, 2, 1, now())",
            [tx.pk, a.pk, tx.pk, eur_wallet.pk],
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_check_ledger_command_exit_codes(posted, capsys):
    a, _, _ = posted
    call_command("check_ledger")
    assert "Ledger OK" in capsys.readouterr().out
    raw("UPDATE ledger_wallet SET balance = balance + 1 WHERE id = %s", [a.pk])  # allowed: >= 0
    with pytest.raises(SystemExit) as info:
        call_command("check_ledger")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"wallet {a.pk}: balance 7" in err and "sum of wallet balances is 1" in err


# --- the checker finds each breach (corrupt rows written inside the test's transaction, which
# --- is rolled back; the guards that would refuse them are switched off in that transaction) ---


def _entry(tx, wallet, direction, amount, after, index=0):
    if connection.vendor == "postgresql":
        # The test's teardown runs SET CONSTRAINTS ALL IMMEDIATE, which would fire the deferred
        # balance trigger; switch it off inside this test's transaction (rolled back after).
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # run the checks pending for the honest rows first
        raw("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_transaction_balanced")
    raw(
        "INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP)",
        [tx.pk, wallet.pk, direction, str(amount), str(after), index],
    )


@pytest.mark.django_db
def test_checker_clean_ledger(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(a, b, "3")]).raise_for_error()
    hold_pending(a, "2")
    assert ledger_check() == []


@pytest.mark.django_db
def test_checker_finds_a_balance_that_disagrees_with_entries(usd, make_wallet):
    a = make_wallet(usd, "10")
    Wallet.objects.filter(pk=a.pk).update(balance=Decimal("11"))
    breaches = ledger_check()
    assert any(f"wallet {a.pk}: balance 11" in b for b in breaches)
    assert any("sum of wallet balances is 1" in b for b in breaches)


@pytest.mark.django_db
def test_checker_finds_an_unbalanced_transaction_and_a_broken_chain(usd, make_wallet):
    a = make_wallet(usd, "10")
    tx = ledger_post(type="deposit", operations=[Issue(a, "1")]).raise_for_error()
    _entry(tx, a, "credit", "1", "999", 1)  # wrong balance_after and unbalanced
    Wallet.objects.filter(pk=a.pk).update(balance=Decimal("12"))
    breaches = ledger_check()
    assert any(f"transaction {tx.pk}: entries in asset {usd.pk} net to 1" in b for b in breaches), breaches
    assert any("balance_after 999" in b for b in breaches), breaches


@pytest.mark.django_db
def test_checker_finds_entries_that_are_not_the_postings(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    tx = ledger_post(type="transfer", operations=[Transfer(a, b, "3")]).raise_for_error()
    assert ledger_check() == []
    _entry(tx, a, "debit", "1", "6", 1)  # an operation the transaction never had
    _entry(tx, b, "credit", "1", "4", 1)
    breaches = ledger_check()
    assert any(f"transaction {tx.pk}: operation 1 has entries that do not match its posting" in x for x in breaches), breaches
    assert not any(f"transaction {tx.pk}: operation 0 " in x for x in breaches), breaches


@pytest.mark.django_db
def test_checker_finds_held_mismatch_and_entries_on_failed_transactions(usd, make_wallet):
    a, b = make_wallet(usd, "10"), make_wallet(usd)
    Wallet.objects.filter(pk=a.pk).update(held=Decimal("3"))
    failed = ledger_post(type="transfer", operations=[Transfer(b, a, "1")]).transaction
    _entry(failed, a, "credit", "1", "11")
    _entry(failed, b, "debit", "1", "-1")
    breaches = ledger_check()
    assert any(f"wallet {a.pk}: held 3" in x for x in breaches), breaches
    assert any(f"transaction {failed.pk} is failed but has entries" in x for x in breaches), breaches


@pytest.mark.django_db
def test_checker_finds_negative_wallets(usd, make_wallet, is_postgres):
    a = make_wallet(usd, "1")
    # Switch the CHECK constraints off inside this test's transaction (PostgreSQL DDL is
    # transactional, so the rollback at the end restores them), to prove the checker sees it.
    if is_postgres:
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # no pending deferred checks may remain before ALTER
        raw("ALTER TABLE ledger_wallet DROP CONSTRAINT wallet_balance_non_negative, DROP CONSTRAINT wallet_available_non_negative")
    else:
        raw("PRAGMA ignore_check_constraints = ON")
    try:
        Wallet.objects.filter(pk=a.pk).update(balance=Decimal("-1"))
        breaches = ledger_check()
    finally:
        if not is_postgres:
            raw("PRAGMA ignore_check_constraints = OFF")
    assert any(f"wallet {a.pk} (customer): balance -1" in x and "negative" in x for x in breaches), breaches


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_balance_check_migration_both_ways(posted):
    """ledger 0014 rewrites the check's query, back and forth; in each state the trigger refuses
    an unbalanced transaction at commit and accepts a balanced one."""
    a, b, tx = posted

    def source() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'ledger_check_transaction_balanced'")
            return cursor.fetchone()[0]

    def guards() -> None:
        with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
            raw("INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
                " VALUES (%s, %s, 'credit', 5, 11, 0, now())", [tx.pk, b.pk])
        ledger_post(type="transfer", operations=[Transfer(a, b, "1")]).raise_for_error()

    try:
        migrate_to([("ledger", "0013_livemode")])
        assert "JOIN ledger_wallet w ON w.id = e.wallet_id" in source()
        guards()
        migrate_to([("ledger", "0014_balance_check_by_entry")])
        assert "WHERE w.id = e.wallet_id" in source() and "JOIN ledger_wallet" not in source()
        guards()
    finally:
        migrate_to(latest_migrations())
