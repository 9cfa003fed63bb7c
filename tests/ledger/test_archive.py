"""Archiving a month of ledger_entry (issue 15 item 3; ledger/archive.py, `archive_entries`).

On PostgreSQL, with monthly partitions for past months (a database partitioned months ago) and
entries posted by the real engine with the clock in those months: a month is dumped to a CSV that
matches its manifest, its per-wallet totals recorded and its partition dropped, after which
`check_ledger` is still clean (balances, chains, per-asset sums), balances and statements that
need the archived entries are refused with HISTORY_ARCHIVED and the others answer right; a
changed total is caught; archiving twice changes nothing; recent months, the legacy partition and
a month that is not clean are refused; a run stopped after its dump, or by a lock it could not
take, finishes on the next run."""

import csv
import hashlib
import json
from datetime import datetime, timedelta, timezone as tz
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent
from ledger.archive import _dump, entries_archive, month_parse
from ledger.checks import ledger_check
from ledger.errors import ArchiveRefused, HistoryArchived
from ledger.models import ArchivedMonth, ArchivedTotal, Wallet
from ledger.partitions import add_months, month_start, partition_name, partitions
from ledger.posting import Issue, Transfer, ledger_post
from ledger.selectors import wallet_balance_at, wallet_balance_before
from ledger.services import wallet_open
from ledger.statements import Period, statement_build
from tests.concurrency import side_connection
from tests.factories.ledger import clock_at, past_month_partitions, platform_asset
from tests.factories.ledger_api import person, user_client

pytestmark = [pytest.mark.postgres]


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _mid(month, day=10) -> datetime:
    return datetime(month.year, month.month, day, 12, tzinfo=tz.utc)


def _attached() -> set[str]:
    return {name for name, _ in partitions("ledger_entry")}


@pytest.fixture
def history(transactional_db):
    """Two customers' USD wallets: 100 issued to a and 30 moved a -> b in month A (five months
    ago), 5 moved back in month B (four months ago), 1 more a -> b now."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")
    with past_month_partitions(6) as months:
        usd = platform_asset("USD")
        owner = person()
        a = wallet_open(asset=usd, customer=owner.customer)
        b = wallet_open(asset=usd, customer=person().customer)
        month_a, month_b = months[1], months[2]
        with clock_at(_mid(month_a)):
            ledger_post(type="deposit", operations=[Issue(wallet=a, amount=Decimal("100"))]).raise_for_error()
        with clock_at(_mid(month_a, 20)):
            ledger_post(type="transfer", operations=[Transfer(a, b, "30")]).raise_for_error()
        with clock_at(_mid(month_b)):
            ledger_post(type="transfer", operations=[Transfer(b, a, "5")]).raise_for_error()
        ledger_post(type="transfer", operations=[Transfer(a, b, "1")]).raise_for_error()
        assert ledger_check() == []
        yield {"a": a, "b": b, "owner": owner, "A": month_a, "B": month_b, "months": months}


def test_archiving_a_month_keeps_the_ledger_checkable_and_refuses_what_it_cannot_answer(history, tmp_path, capsys):
    a, b, month_a, month_b = history["a"], history["b"], history["A"], history["B"]
    part = partition_name("ledger_entry", month_a)
    entries_of_a = _sql(f"SELECT id, wallet_id, direction, amount, balance_after FROM {part} ORDER BY id")
    assert len(entries_of_a) == 4

    call_command("archive_entries", "--month", f"{month_a:%Y-%m}", "--to", str(tmp_path))
    assert "Archived" in capsys.readouterr().out
    assert part not in _attached() and _sql("SELECT to_regclass(%s)", [part])[0][0] is None

    # the file: the month's rows, matching its manifest and the database's record
    data, manifest = tmp_path / f"{part}.csv", json.loads((tmp_path / f"{part}.manifest.json").read_text())
    assert hashlib.sha256(data.read_bytes()).hexdigest() == manifest["sha256"] == ArchivedMonth.objects.get().sha256
    rows = list(csv.DictReader(data.open()))
    assert [int(r["id"]) for r in rows] == [e[0] for e in entries_of_a] and manifest["rows"] == 4
    assert {r["direction"] for r in rows} == {"debit", "credit"} and all(r["created_at"].startswith(f"{month_a:%Y-%m}") for r in rows)
    assert manifest["assets"] == {str(a.asset_id): {"debit_sum": "130.000000000000000000", "credit_sum": "130.000000000000000000"}}

    # the totals: per wallet, what the month moved and where its chain stood
    record = ArchivedMonth.objects.get()
    assert record.status == "archived" and record.row_count == 4 and record.month == month_a
    totals = {t.wallet_id: t for t in ArchivedTotal.objects.all()}
    assert set(totals) == {a.pk, b.pk} | {w for _, w, *_ in entries_of_a}
    ta, tb = totals[a.pk], totals[b.pk]
    assert (ta.entry_count, ta.credit_sum, ta.debit_sum, ta.last_balance_after) == (2, Decimal(100), Decimal(30), Decimal(70))
    assert (tb.entry_count, tb.credit_sum, tb.debit_sum, tb.last_balance_after) == (1, Decimal(30), Decimal(0), Decimal(30))
    assert tb.last_entry_id == max(e[0] for e in entries_of_a if e[1] == b.pk)
    assert AuditEvent.objects.filter(action="ledger.month_archived", target_id=str(record.pk)).exists()

    # check_ledger stays clean: balance = archived totals + remaining entries, chains continue
    assert ledger_check() == []
    call_command("check_ledger")
    assert Wallet.objects.get(pk=a.pk).balance == Decimal(74) and Wallet.objects.get(pk=b.pk).balance == Decimal(26)
    ledger_post(type="transfer", operations=[Transfer(b, a, "2")]).raise_for_error()  # the engine writes on
    assert ledger_check() == []

    # balances and statements: refused inside or across the archived month, right after it
    for at in (_mid(month_a, 25), datetime(month_a.year, month_a.month, 1, tzinfo=tz.utc)):
        with pytest.raises(HistoryArchived) as refused:
            wallet_balance_at(wallet=a, at=at)
        assert refused.value.details["archived_months"] == [f"{month_a:%Y-%m}"]
    end_of_a = datetime(month_b.year, month_b.month, 1, tzinfo=tz.utc)
    assert wallet_balance_at(wallet=a, at=end_of_a).balance == Decimal(70)
    assert wallet_balance_at(wallet=b, at=end_of_a).entry_id == tb.last_entry_id
    assert wallet_balance_at(wallet=b, at=_mid(month_b, 20)).balance == Decimal(25)
    assert wallet_balance_before(wallet=a, before=end_of_a).balance == Decimal(70)
    assert wallet_balance_at(wallet=a, at=_mid(add_months(month_a, -1))).balance == Decimal(0)  # before the month: nothing yet
    with pytest.raises(HistoryArchived):
        wallet_balance_before(wallet=a, before=_mid(month_a))
    statement = statement_build(wallet=a, period=Period(start=end_of_a, end=timezone.now()))
    assert (statement.opening, statement.total_in, statement.total_out, statement.closing) == (Decimal(70), Decimal(7), Decimal(1), Decimal(76))
    assert len(list(statement.rows())) == 3
    for start in (None, _mid(month_a, 15), end_of_a - timedelta(microseconds=1)):
        with pytest.raises(HistoryArchived):
            statement_build(wallet=a, period=Period(start=start, end=timezone.now()))

    # over HTTP: the error envelope, 410, never a wrong number
    client = user_client(history["owner"])
    r = client.get(f"/api/v1/wallets/{a.pk}/balance", {"at": _mid(month_a, 25).isoformat()})
    assert r.status_code == 410, r.content
    assert r.json()["error"]["code"] == "HISTORY_ARCHIVED" and r.json()["error"]["details"]["archived_months"] == [f"{month_a:%Y-%m}"]
    r = client.get(f"/api/v1/wallets/{a.pk}/statement", {"from": f"{month_a:%Y-%m-%d}", "format": "json"})
    assert r.status_code == 410 and r.json()["error"]["code"] == "HISTORY_ARCHIVED"
    r = client.get(f"/api/v1/wallets/{a.pk}/balance", {"at": end_of_a.isoformat()})
    assert r.status_code == 200 and r.json()["balance"] == "70.00"


def test_archiving_twice_is_a_no_op(history, tmp_path):
    first = entries_archive(month=history["A"], to=tmp_path)
    checksum = (tmp_path / f"{first.partition}.csv").read_bytes()
    again = entries_archive(month=history["A"], to=tmp_path)
    assert (first.status, again.status) == ("archived", "already archived")
    assert (again.rows, again.sha256, again.wallets) == (first.rows, first.sha256, first.wallets)
    assert ArchivedTotal.objects.count() == first.wallets and (tmp_path / f"{first.partition}.csv").read_bytes() == checksum
    call_command("archive_entries", "--month", f"{history['A']:%Y-%m}", "--to", str(tmp_path))
    assert ledger_check() == []
    # and the next month archives after it, the chain still whole
    entries_archive(month=history["B"], to=tmp_path)
    assert ledger_check() == [] and ArchivedMonth.objects.filter(status="archived").count() == 2


def test_the_current_recent_and_legacy_months_are_refused(history, tmp_path, settings):
    current = month_start(timezone.now())
    assert settings.LEDGER_ARCHIVE_MIN_AGE_MONTHS == 2
    for month in (current, add_months(current, -1), add_months(current, -2), add_months(current, 1)):
        with pytest.raises(ArchiveRefused, match="newest month that can be archived is " + f"{add_months(current, -3):%Y-%m}"):
            entries_archive(month=month, to=tmp_path)
    with pytest.raises(ArchiveRefused, match="history from before partitioning"):
        entries_archive(month=add_months(history["months"][0], -1), to=tmp_path)
    with pytest.raises(ArchiveRefused, match="YYYY-MM"):
        month_parse("2026-13")
    with pytest.raises(SystemExit) as exited:
        call_command("archive_entries", "--month", f"{current:%Y-%m}", "--to", str(tmp_path))
    assert exited.value.code == 1
    assert not ArchivedMonth.objects.exists() and not list(tmp_path.iterdir())
    assert partition_name("ledger_entry", history["A"]) in _attached()


def test_a_changed_archived_total_is_caught(history, tmp_path):
    entries_archive(month=history["A"], to=tmp_path)
    b = history["b"]
    for sql in ("UPDATE ledger_archivedtotal SET credit_sum = credit_sum + 1 WHERE wallet_id = %s",
                "DELETE FROM ledger_archivedtotal WHERE wallet_id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            _sql(sql, [b.pk])
    # someone who can switch the trigger off (the table owner) changes a total: check_ledger says so
    with transaction.atomic():
        _sql("ALTER TABLE ledger_archivedtotal DISABLE TRIGGER ledger_archivedtotal_append_only")
        _sql("UPDATE ledger_archivedtotal SET credit_sum = credit_sum + 1 WHERE wallet_id = %s", [b.pk])
        _sql("ALTER TABLE ledger_archivedtotal ENABLE TRIGGER ledger_archivedtotal_append_only")
    breaches = ledger_check()
    assert f"wallet {b.pk}: balance 26.000000000000000000 but its entries sum to 27.000000000000000000" in breaches
    assert any(m.startswith(f"archived month {history['A']:%Y-%m}: the totals of asset") for m in breaches)
    assert any(m.startswith(f"archived month {history['A']:%Y-%m} (entries") and f"(wallet {b.pk})" in m for m in breaches)
    with pytest.raises(SystemExit):
        call_command("check_ledger")


def test_a_run_stopped_after_its_dump_finishes_next_time_and_a_bad_dump_is_redone(history, tmp_path):
    month = history["A"]
    part = partition_name("ledger_entry", month)
    _dump(month=month, partition=part, directory=tmp_path, now=timezone.now())  # the run killed after step 1
    assert ArchivedMonth.objects.get().status == "dumped" and part in _attached()
    assert ledger_check() == []  # nothing is carried by totals yet
    (tmp_path / f"{part}.csv").write_text("id\n")  # and its file cut short since
    outcome = entries_archive(month=month, to=tmp_path)
    assert outcome.status == "archived" and outcome.dumped_this_run and outcome.rows == 4
    assert hashlib.sha256((tmp_path / f"{part}.csv").read_bytes()).hexdigest() == outcome.sha256
    assert ledger_check() == []


def test_a_lock_not_taken_in_time_changes_nothing_and_the_next_run_uses_the_dump(history, tmp_path):
    month = history["A"]
    part = partition_name("ledger_entry", month)
    other = side_connection()
    try:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM ledger_entry")  # a long read holds ledger_entry's ACCESS SHARE lock
        with pytest.raises(ArchiveRefused, match="lock was not free within 200 ms"):
            entries_archive(month=month, to=tmp_path, lock_timeout_ms=200)
    finally:
        other.rollback()
        other.close()
    record = ArchivedMonth.objects.get()
    assert record.status == "dumped" and part in _attached() and not ArchivedTotal.objects.exists()
    assert ledger_check() == []
    outcome = entries_archive(month=month, to=tmp_path)
    assert outcome.status == "archived" and not outcome.dumped_this_run and outcome.sha256 == record.sha256
    assert ledger_check() == []


def test_a_month_with_a_transaction_reaching_into_another_is_refused(history, tmp_path):
    a, b, month_a, month_b = history["a"], history["b"], history["A"], history["B"]
    tx = _sql(f"SELECT transaction_id FROM {partition_name('ledger_entry', month_a)} ORDER BY id DESC LIMIT 1")[0][0]
    with transaction.atomic():  # a balanced pair of that transaction dated in the next month
        _sql("INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
             " VALUES (%s, %s, 'debit', 1, 1, 5, %s), (%s, %s, 'credit', 1, 1, 5, %s)",
             [tx, a.pk, _mid(month_b, 2), tx, b.pk, _mid(month_b, 2)])
    with pytest.raises(ArchiveRefused, match=f"transactions {tx} have entries outside this month"):
        entries_archive(month=month_a, to=tmp_path)
    assert not ArchivedMonth.objects.exists() and partition_name("ledger_entry", month_a) in _attached()
    assert not Path(tmp_path, f"{partition_name('ledger_entry', month_a)}.csv").exists()


def test_the_back_office_lists_archived_months_read_only(history, tmp_path, client):
    from django.urls import reverse

    from tests.factories.accounts import StaffUserFactory

    outcome = entries_archive(month=history["A"], to=tmp_path)
    client.force_login(StaffUserFactory(is_superuser=True))
    record = ArchivedMonth.objects.get()
    r = client.get(reverse("admin:ledger_archivedmonth_changelist"))
    assert r.status_code == 200 and outcome.partition in r.content.decode()
    r = client.get(reverse("admin:ledger_archivedmonth_change", args=[record.pk]))
    assert r.status_code == 200 and outcome.sha256 in r.content.decode() and "70.00" in r.content.decode()
    assert client.post(reverse("admin:ledger_archivedmonth_delete", args=[record.pk])).status_code == 403


def test_a_later_month_archives_before_an_earlier_one(history, tmp_path):
    a, b, month_a, month_b = history["a"], history["b"], history["A"], history["B"]
    entries_archive(month=month_b, to=tmp_path)  # B archived, A still attached: the chain steps over B
    assert ledger_check() == []
    assert wallet_balance_at(wallet=a, at=_mid(month_a, 25)).balance == Decimal(70)  # from A's remaining entries
    after_b = add_months(month_b, 1)
    assert wallet_balance_at(wallet=a, at=datetime(after_b.year, after_b.month, 1, tzinfo=tz.utc)).balance == Decimal(75)
    with pytest.raises(HistoryArchived):
        wallet_balance_at(wallet=b, at=_mid(month_b, 20))
    entries_archive(month=month_a, to=tmp_path)
    assert ledger_check() == []


@pytest.mark.parametrize("flaw", ["broken chain", "pending transaction"])
def test_a_month_that_is_not_clean_is_refused(history, tmp_path, flaw):
    a, b, month_a = history["a"], history["b"], history["A"]
    part = partition_name("ledger_entry", month_a)
    tx = _sql(f"SELECT transaction_id FROM {part} ORDER BY id DESC LIMIT 1")[0][0]
    if flaw == "broken chain":
        with transaction.atomic():  # a balanced pair in the month whose balance_after follows nothing
            _sql("INSERT INTO ledger_entry (transaction_id, wallet_id, direction, amount, balance_after, operation_index, created_at)"
                 " VALUES (%s, %s, 'debit', 1, 1, 5, %s), (%s, %s, 'credit', 1, 1, 5, %s)",
                 [tx, a.pk, _mid(month_a, 28), tx, b.pk, _mid(month_a, 28)])
        expected = "break their wallet's balance_after chain"
    else:
        _sql("UPDATE ledger_transaction SET status = 'pending' WHERE id = %s", [tx])  # as a payout still in flight
        expected = f"transactions {tx} are still pending"
    with pytest.raises(ArchiveRefused, match=expected):
        entries_archive(month=month_a, to=tmp_path)
    assert not ArchivedMonth.objects.exists() and part in _attached()
