"""POST /withdrawals end to end: beneficiary checks, the fee on top, amount + fee held while the
payout is in flight (202 pending), the outbox sending it through the sandbox provider (claim
committed, provider called with no transaction open, answer recorded under the payout lock), the
`payout.check` messages settling it (or releasing it when the payout fails), exactly once.
The outbox dispatcher runs outside any transaction, so these tests commit for real. Concurrency
and the broker outage run on PostgreSQL."""

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent, FeeRule, ReviewCase
from compliance.risk import register_risk_kind, unregister_risk_kind
from wallets.review import review_approve, review_reject
from core.models import OutboxMessage
from core.outbox import outbox_dispatch, outbox_sweep
from ledger.checks import ledger_check
from ledger.models import Hold, Transaction, Wallet
from ledger.selectors import platform_account_balance
from ledger.services import wallet_suspend, wallet_activate
from tests.concurrency import run_in_threads
from tests.factories.compliance import RiskRuleFactory, SanctionsEntryFactory
from tests.factories.accounts import StaffUserFactory
from tests.payorders.support import reseed
from tests.factories.wallets import asset, client_for, open_wallet, person
from wallets import payouts
from wallets.models import Payout
from wallets.movements.payouts import _payout_claim_send, payout_send, payout_settle

URL = "/api/v1/withdrawals"
IBAN = "DE89370400440532013000"
REPO = Path(__file__).resolve().parents[2]


def _key() -> str:
    return str(uuid.uuid4())


def _code(response) -> str:
    return response.json()["error"]["code"]


def _wallet(w) -> Wallet:
    return Wallet.objects.get(pk=w.pk)


def _iban(name="Jane Smith", **extra):
    return {"type": "IBAN", "iban": IBAN, "name": name, "bank_name": "Deutsche Bank", "country": "DE", **extra}


def _withdraw(client, wallet, amount="50.00", destination=None, key=None, raw=None):
    headers = {"Idempotency-Key": key or _key()}
    body = raw if raw is not None else {"wallet_id": wallet.pk, "amount": amount, "destination": destination if destination is not None else _iban()}
    return client.post(URL, body, format="json", headers=headers)


def _send_all() -> None:
    for message in OutboxMessage.objects.filter(topic="payout.send", status="pending"):
        assert outbox_dispatch(message_id=message.pk) == "dispatched"


def _due_checks() -> list[int]:
    """The payouts whose `payout.check` outbox message is due now."""
    due = OutboxMessage.objects.filter(topic="payout.check", status="pending", next_attempt_at__lte=timezone.now())
    return [m.payload["payout_id"] for m in due.order_by("id")]


def _check_all() -> None:
    for message in OutboxMessage.objects.filter(topic="payout.check", status="pending", next_attempt_at__lte=timezone.now()):
        assert outbox_dispatch(message_id=message.pk) == "dispatched"


@pytest.fixture
def instant(settings):
    settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 0


@pytest.fixture
def seeded(transactional_db):
    """The dispatcher runs outside any transaction, so these tests commit for real; the flush
    between them removes the migration seeds (assets, default fee rules): put them back. The
    figures below are in EUR: a per-asset IBAN fee rule keeps the minimum at EUR 1.00 (the
    default's minimum is USD 1.00, EUR 0.93 at the sandbox rate; tests/compliance/test_reference_currency.py)."""
    reseed()
    _iban_fee_rule()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
class TestWithdrawals:
    def test_iban_withdrawal_holds_then_settles(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="200.00")
        client = client_for(jane)
        response = _withdraw(client, wallet, "50.00")
        assert response.status_code == 202, response.content
        body = response.json()
        assert (body["type"], body["status"], body["amount"], body["fee"], body["currency"]) == ("withdrawal", "pending", "50.00", "1.00", "EUR")
        payout = body["payout"]
        assert payout["status"] == "pending" and payout["total_amount"] == "51.00"
        assert payout["destination"]["iban"] == "DE89 **** **** **** 3000" and IBAN not in response.content.decode()
        held = _wallet(wallet)
        assert (held.balance, held.held) == (Decimal("200.00"), Decimal("51.00"))
        tx = Transaction.objects.get(pk=body["id"])
        assert tx.status == "pending" and not tx.entries.exists()
        message = OutboxMessage.objects.get(topic="payout.send")
        assert message.payload == {"transaction_id": body["id"]} and message.key == f"payout:tx:{body['id']}"

        _send_all()
        sent = Payout.objects.get(pk=payout["id"])
        assert sent.status == "sent" and sent.provider_reference == f"sbx_{sent.reference}"
        assert _due_checks() == [sent.pk]
        _check_all()  # the provider says completed: the held transaction is posted

        done = client.get(f"{URL}/{body['id']}").json()
        assert done["status"] == "completed" and done["payout"]["status"] == "completed" and done["balance_after"] == "149.00"
        after = _wallet(wallet)
        assert (after.balance, after.held) == (Decimal("149.00"), Decimal("0"))
        assert platform_account_balance(asset=asset("EUR"), purpose="fee") == Decimal("1.00")
        assert Hold.objects.get(transaction=tx).status == "captured"
        assert [a for a in AuditEvent.objects.order_by("id").values_list("action", flat=True) if a.startswith(("withdrawal", "payout"))] == [
            "withdrawal.pending", "payout.sent", "withdrawal.completed"]
        assert ledger_check() == []

    def test_settlement_waits_for_the_provider(self, jane, settings):
        settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 3600
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00").json()
        _send_all()
        payout = Payout.objects.get(pk=body["payout"]["id"])
        assert payout.next_check_at > timezone.now() + timedelta(minutes=59)
        assert _due_checks() == []
        check = OutboxMessage.objects.get(topic="payout.check", payload__payout_id=payout.pk)
        assert check.next_attempt_at == payout.next_check_at  # the outbox comes back when the provider said
        assert payout_settle(payout_id=payout.pk).status == "sent"  # not yet
        assert Transaction.objects.get(pk=body["id"]).status == "pending"

    def test_percentage_fee_above_the_minimum(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="1000")
        body = _withdraw(client_for(jane), wallet, "500.00").json()
        assert body["fee"] == "5.00" and _wallet(wallet).held == Decimal("505.00")

    def test_external_destination(self, jane, instant):
        wallet = open_wallet(jane, "USD", funded="100")
        response = _withdraw(client_for(jane), wallet, "10.00", destination={"type": "EXTERNAL", "name": "Jane", "account": "jane@pay.example"})
        assert response.status_code == 202, response.content
        assert response.json()["fee"] == "0.10"  # 1%, no minimum off the IBAN rail

    def test_failed_payout_releases_the_hold(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "40.00", destination=_iban(name="Fail Example")).json()
        _send_all()
        payout_settle(payout_id=body["payout"]["id"])
        payout = Payout.objects.get(pk=body["payout"]["id"])
        tx = Transaction.objects.get(pk=body["id"])
        assert payout.status == "failed" and "returned" in payout.failure_reason
        assert tx.status == "failed" and tx.failure_code == "PAYOUT_FAILED" and not tx.entries.exists()
        after = _wallet(wallet)
        assert (after.balance, after.held) == (Decimal("100"), Decimal("0"))
        assert Hold.objects.get(transaction=tx).status == "released"
        assert ledger_check() == []

    def test_refused_at_send_releases_the_hold(self, jane):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "40.00", destination=_iban(name="Reject Me")).json()
        _send_all()
        assert Payout.objects.get(pk=body["payout"]["id"]).status == "failed"
        assert _wallet(wallet).held == 0 and Transaction.objects.get(pk=body["id"]).status == "failed"

    def test_send_and_settle_happen_once(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00").json()
        payout_id = body["payout"]["id"]
        payout_send(payout_id=payout_id)
        first = Payout.objects.get(pk=payout_id)
        payout_send(payout_id=payout_id)  # a second dispatch of the same row
        assert Payout.objects.get(pk=payout_id).attempts == first.attempts == 1
        payout_settle(payout_id=payout_id)
        payout_settle(payout_id=payout_id)
        tx = Transaction.objects.get(pk=body["id"])
        assert tx.status == "completed" and tx.entries.count() == 4  # redeem + fee, two entries each
        assert _wallet(wallet).balance == Decimal("89.00")
        assert ledger_check() == []

    def test_the_provider_is_called_with_no_transaction_open_and_no_lock_held(self, jane, instant, settings):
        seen = []

        class ProbeProvider(payouts.SandboxPayoutProvider):
            def _observe(self, payout, call):
                def from_another_connection():
                    with transaction.atomic():  # NOWAIT: raises if anyone holds the payout row
                        return Payout.objects.select_for_update(nowait=True).get(pk=payout.pk).status
                other = run_in_threads(1, lambda i: from_another_connection())[0]
                seen.append((call, connection.in_atomic_block, connection.get_autocommit(), other))

            def send(self, payout):
                self._observe(payout, "send")
                return super().send(payout)

            def status(self, payout):
                self._observe(payout, "status")
                return super().status(payout)

        payouts.register_payout_provider("probe", ProbeProvider)
        settings.PAYOUT_PROVIDER = "probe"
        try:
            wallet = open_wallet(jane, "EUR", funded="100")
            body = _withdraw(client_for(jane), wallet, "10.00").json()
            _send_all()
            _check_all()
        finally:
            payouts._PROVIDERS.pop("probe")
        # the claim (pending -> sending) was committed before the provider was called
        assert seen == [("send", False, True, "sending"), ("status", False, True, "sent")]
        assert Payout.objects.get(pk=body["payout"]["id"]).status == "completed"
        with transaction.atomic(), pytest.raises(RuntimeError, match="outside any database transaction"):
            payout_send(payout_id=body["payout"]["id"])

    def test_a_send_that_died_after_its_claim_is_sent_again_with_the_same_reference(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00").json()
        payout_id = body["payout"]["id"]
        claimed = _payout_claim_send(payout_id)  # step 1 committed; the worker dies before the provider answers
        assert claimed.status == "sending" and Payout.objects.get(pk=payout_id).status == "sending"
        _send_all()  # the outbox message was never marked done: it runs again
        payout = Payout.objects.get(pk=payout_id)
        assert payout.status == "sent" and payout.attempts == 2 and payout.provider_reference == f"sbx_{payout.reference}"
        _check_all()
        assert Payout.objects.get(pk=payout_id).status == "completed" and ledger_check() == []

    def test_idempotent_replay_makes_one_payout(self, jane):
        wallet = open_wallet(jane, "EUR", funded="100")
        client, key = client_for(jane), _key()
        first = _withdraw(client, wallet, "10.00", key=key)
        second = _withdraw(client, wallet, "10.00", key=key)
        assert second["Idempotency-Replayed"] == "true" and second.content == first.content
        assert Payout.objects.count() == 1 and _wallet(wallet).held == Decimal("11.00")

    def test_insufficient_funds_counts_the_fee(self, jane):
        wallet = open_wallet(jane, "EUR", funded="50.00")
        response = _withdraw(client_for(jane), wallet, "49.50")  # + 1.00 fee
        assert response.status_code == 422 and _code(response) == "INSUFFICIENT_FUNDS"
        assert _wallet(wallet).held == 0 and not Payout.objects.exists() and not OutboxMessage.objects.filter(topic="payout.send").exists()
        assert Transaction.objects.get(type="withdrawal").status == "failed"

    def test_someone_elses_wallet_is_404_and_nothing_moves(self, jane, john):
        theirs = open_wallet(john, "EUR", funded="100")
        response = _withdraw(client_for(jane), theirs, "10.00")
        assert response.status_code == 404 and _code(response) == "NOT_FOUND"
        assert _wallet(theirs).held == 0 and not Payout.objects.exists()
        mine = open_wallet(john, "USD", funded="100")
        body = _withdraw(client_for(john), mine, "10.00").json()
        assert client_for(jane).get(f"{URL}/{body['id']}").status_code == 404
        assert client_for(jane).get(URL).json()["count"] == 0
        assert client_for(john).get(URL).json()["count"] == 1

    def test_suspended_wallet_is_409(self, jane):
        wallet = open_wallet(jane, "EUR", funded="100")
        wallet_suspend(wallet=wallet)
        response = _withdraw(client_for(jane), wallet, "10.00")
        assert response.status_code == 409 and _code(response) == "WALLET_INACTIVE"
        assert not Payout.objects.exists()

    def test_a_wallet_suspended_mid_flight_keeps_the_payout_sent_until_it_can_post(self, jane, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00").json()
        _send_all()
        wallet_suspend(wallet=wallet)
        payout = payout_settle(payout_id=body["payout"]["id"])
        assert payout.status == "sent" and "WALLET_INACTIVE" in payout.failure_reason
        assert Transaction.objects.get(pk=body["id"]).status == "pending" and _wallet(wallet).held == Decimal("11.00")
        wallet_activate(wallet=wallet)
        Payout.objects.filter(pk=payout.pk).update(next_check_at=timezone.now())
        assert payout_settle(payout_id=payout.pk).status == "completed"
        assert _wallet(wallet).balance == Decimal("89.00") and ledger_check() == []

    @pytest.mark.parametrize("destination, code, field", [
        (_iban(iban="DE89370400440532013001"), "INVALID_IBAN", "destination.iban"),
        (_iban(iban="DE8937040044053201300"), "INVALID_IBAN", "destination.iban"),
        (_iban(iban="not an iban"), "INVALID_IBAN", "destination.iban"),
        (_iban(iban=""), "INVALID_BENEFICIARY", "destination.iban"),
        (_iban(name=""), "INVALID_BENEFICIARY", "destination.name"),
        (_iban(name="   "), "INVALID_BENEFICIARY", "destination.name"),
        (_iban(country="FR"), "INVALID_BENEFICIARY", "destination.country"),
        ({"type": "EXTERNAL", "name": "Jane"}, "INVALID_BENEFICIARY", "destination.account"),
        ({"type": "SWIFT", "name": "Jane"}, "INVALID_BENEFICIARY", "destination.type"),
        ("DE89370400440532013000", "INVALID_BENEFICIARY", "destination"),
    ])
    def test_bad_beneficiary(self, jane, destination, code, field):
        wallet = open_wallet(jane, "EUR", funded="100")
        response = _withdraw(client_for(jane), wallet, "10.00", destination=destination)
        assert response.status_code == 400 and _code(response) == code, response.content
        assert field in response.json()["error"]["details"]["fields"]
        assert _wallet(wallet).held == 0 and not Transaction.objects.filter(type="withdrawal").exists()

    @pytest.mark.parametrize("amount, says", [
        ("0", "greater than zero"), ("-5.00", "positive"), ("1.001", "at most 2 decimals"), ("NaN", "finite"),
        ("Infinity", "finite"), ("1e3", "exponent"), ("", "required"), ("abc", "decimal number"), ("1" * 25, "too large"),
        (True, "boolean"), (None, "null"),
    ])
    def test_bad_amount_is_400_naming_the_field(self, jane, amount, says):
        wallet = open_wallet(jane, "EUR", funded="100")
        response = _withdraw(client_for(jane), wallet, amount)
        assert response.status_code == 400 and _code(response) == "VALIDATION_ERROR"
        assert says in json.dumps(response.json()["error"]["details"]["fields"]["amount"])
        assert _wallet(wallet).held == 0

    def test_key_required(self, jane):
        wallet = open_wallet(jane, "EUR", funded="100")
        response = client_for(jane).post(URL, {"wallet_id": wallet.pk, "amount": "1", "destination": _iban()}, format="json")
        assert response.status_code == 400 and _code(response) == "IDEMPOTENCY_KEY_REQUIRED"

    def test_sanctioned_beneficiary_is_rejected(self, jane):
        SanctionsEntryFactory(name="Ivan Petrov", aliases=["I. Petrov"])
        wallet = open_wallet(jane, "EUR", funded="100")
        response = _withdraw(client_for(jane), wallet, "10.00", destination=_iban(name="Petrov Ivan"))
        assert response.status_code == 422 and _code(response) == "TRANSACTION_REJECTED"
        assert _wallet(wallet).held == 0 and not Payout.objects.exists()
        assert AuditEvent.objects.filter(action="risk.rejected").count() == 1

    def test_over_the_withdrawal_limit(self, jane):
        wallet = open_wallet(jane, "EUR", funded="3000")
        response = _withdraw(client_for(jane), wallet, "1000.01")
        assert response.status_code == 422 and _code(response) == "LIMIT_EXCEEDED"
        assert response.json()["error"]["details"]["type"] == "withdrawal"


@pytest.fixture
def review_withdrawals():
    @register_risk_kind("test_review_withdrawals")
    def check(rule, ctx):
        return "withdrawal" if ctx.movement_type == "withdrawal" else None

    RiskRuleFactory(name="test", kind="test_review_withdrawals", action="review", params={})
    yield
    unregister_risk_kind("test_review_withdrawals")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
class TestWithdrawalReview:
    def test_approved_withdrawal_is_then_paid_out(self, jane, review_withdrawals, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        response = _withdraw(client_for(jane), wallet, "10.00")
        assert response.status_code == 202 and response.json()["status"] == "in_review"
        payout_id = response.json()["payout"]["id"]
        assert Payout.objects.get(pk=payout_id).status == "in_review" and not OutboxMessage.objects.filter(topic="payout.send").exists()
        assert _wallet(wallet).held == Decimal("11.00")
        case = ReviewCase.objects.get(transaction_id=response.json()["id"])
        review_approve(case=case, actor=StaffUserFactory(), reason="ok")  # releases the payout explicitly
        assert Payout.objects.get(pk=payout_id).status == "pending"
        assert OutboxMessage.objects.filter(topic="payout.send", payload__transaction_id=Payout.objects.get(pk=payout_id).transaction_id).count() == 1
        _send_all()
        assert payout_settle(payout_id=payout_id).status == "completed"
        assert _wallet(wallet).balance == Decimal("89.00") and _wallet(wallet).held == 0
        assert ledger_check() == []

    def test_approved_then_failed_payout_is_reversed(self, jane, review_withdrawals, instant):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00", destination=_iban(name="Fail Later")).json()
        review_approve(case=ReviewCase.objects.get(transaction_id=body["id"]), actor=StaffUserFactory(), reason="ok")
        _send_all()
        assert payout_settle(payout_id=body["payout"]["id"]).status == "failed"
        assert Transaction.objects.get(pk=body["id"]).status == "reversed"
        assert _wallet(wallet).balance == Decimal("100") and ledger_check() == []

    def test_rejected_withdrawal_cancels_the_payout(self, jane, review_withdrawals):
        wallet = open_wallet(jane, "EUR", funded="100")
        body = _withdraw(client_for(jane), wallet, "10.00").json()
        review_reject(case=ReviewCase.objects.get(transaction_id=body["id"]), actor=StaffUserFactory(), reason="no")
        assert Payout.objects.get(pk=body["payout"]["id"]).status == "cancelled"
        assert _wallet(wallet).held == 0 and _wallet(wallet).balance == Decimal("100")


# --- PostgreSQL: racing withdrawals, broker outage --------------------------------------------------------------
def _iban_fee_rule():
    """1%, minimum EUR 1.00: a rule naming EUR, so its minimum is in EUR (not the reference currency)."""
    FeeRule.objects.get_or_create(movement_type="withdrawal", destination_type="IBAN", currency="EUR",
                                  defaults={"percent": Decimal("1"), "minimum": Decimal("1.00")})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestConcurrentWithdrawals:
    def test_racing_withdrawals_cannot_overdraw_through_holds(self, settings):
        settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 0
        _iban_fee_rule()
        jane = person()
        wallet = open_wallet(jane, "EUR", funded="100.00")
        def worker(i):
            response = _withdraw(client_for(jane), wallet, "30.00")
            return (response.status_code, json.loads(response.content))

        results = [("exception", repr(r)) if isinstance(r, BaseException) else r for r in run_in_threads(8, worker)]
        statuses = sorted(r[0] for r in results)
        assert statuses == [202] * 3 + [422] * 5, results  # 3 x (30 + 1 fee) = 93 <= 100
        assert all(r[1]["error"]["code"] == "INSUFFICIENT_FUNDS" for r in results if r[0] == 422)
        held = _wallet(wallet)
        assert held.held == Decimal("93.00") and held.available_balance == Decimal("7.00")
        assert ledger_check() == []
        _send_all()
        for payout in Payout.objects.all():
            payout_settle(payout_id=payout.pk)
        assert _wallet(wallet).balance == Decimal("7.00") and _wallet(wallet).held == 0
        assert ledger_check() == []

    def test_broker_outage_at_request_time_delays_the_payout_and_loses_nothing(self, settings):
        settings.PAYOUT_SANDBOX_SETTLE_SECONDS = 0
        _iban_fee_rule()
        jane = person()
        wallet = open_wallet(jane, "EUR", funded="100.00")
        script = textwrap.dedent(f"""
            import time
            import django
            django.setup()
            from django.db import transaction
            from accounts.models import User
            from wallets.movements.withdrawals import withdrawal_create
            started = time.monotonic()
            with transaction.atomic():
                tx = withdrawal_create(user=User.objects.get(pk={jane.pk}), wallet_id={wallet.pk}, amount="20.00",
                                       destination={{"type": "IBAN", "iban": "{IBAN}", "name": "Jane Smith"}})
            print(tx.pk, round(time.monotonic() - started, 2))
        """)
        db = connection.settings_dict
        env = {
            **__import__("os").environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
        }
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=90, env=env)
        assert done.returncode == 0, done.stderr
        tx_id, elapsed = done.stdout.split()
        assert float(elapsed) < 10, "a broker outage must not hang the request"
        assert "could not enqueue dispatch" in done.stderr
        payout = Payout.objects.get(transaction_id=int(tx_id))
        assert payout.status == "pending" and _wallet(wallet).held == Decimal("21.00")
        # The broker is back: the sweeper sends it, then runs the status check the send scheduled,
        # which posts it.
        assert outbox_sweep(now=timezone.now() + timedelta(seconds=30)) == {"dispatched": 2}
        assert Payout.objects.get(pk=payout.pk).status == "completed"
        assert _wallet(wallet).balance == Decimal("79.00") and ledger_check() == []
