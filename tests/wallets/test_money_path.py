"""The money path (SPEC 4) as deposits and transfers take it: limits for the caller's own
customer, 2FA step-up at the threshold (a code spent once), the risk step (a rule defined here
sends a transfer to review with its funds held; a sanctions match rejects), organization
webhooks, and the audit chain. Racing requests against a daily limit run on PostgreSQL."""

import json
import uuid
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pyotp
import pytest

from accounts.models import WebhookDelivery, WebhookEndpoint
from accounts.identity.totp import totp_confirm, totp_enrol
from compliance.models import AuditEvent, LimitRule, ReviewCase
from compliance.risk import register_risk_kind, unregister_risk_kind
from wallets.beneficiaries import beneficiary_name_hash, mask_name
from wallets.review import review_approve, review_reject
from ledger.checks import ledger_check
from ledger.models import Transaction, Wallet
from tests.audit_chain import audit_chain_verified
from tests.concurrency import run_in_threads
from tests.factories.compliance import RiskRuleFactory, SanctionsEntryFactory
from tests.factories.accounts import CustomerFactory, OrganizationFactory, StaffUserFactory
from tests.factories.wallets import asset, client_for, open_wallet, person

DEPOSITS, TRANSFERS = "/api/v1/deposits", "/api/v1/transfers"


def _key() -> str:
    return str(uuid.uuid4())


def _code(response) -> str:
    return response.json()["error"]["code"]


def _wallet(w) -> Wallet:
    return Wallet.objects.get(pk=w.pk)


def _transfer(client, source, destination, amount, key=None, code=None, currency="USD"):
    headers = {"Idempotency-Key": key or _key()}
    if code is not None:
        headers["X-2FA-Code"] = code
    body = {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount, "currency": currency}
    return client.post(TRANSFERS, body, format="json", headers=headers)


def _deposit(client, wallet, amount, key=None):
    return client.post(DEPOSITS, {"wallet_id": wallet.pk, "amount": amount}, format="json", headers={"Idempotency-Key": key or _key()})


def _verified(email=None):
    user = person(email)
    user.customer.kyc_level = "verified"
    user.customer.save(update_fields=["kyc_level"])
    return user


def _with_totp(user):
    enrolment = totp_enrol(user=user)
    totp_confirm(user=user, code=pyotp.TOTP(enrolment.secret).now())
    return enrolment.secret


def _fresh_code(secret: str) -> str:
    """The code of the NEXT time step: confirm spent the current one, and +-1 step is accepted."""
    now = datetime.now(dt_timezone.utc)
    return pyotp.TOTP(secret).at(now, counter_offset=1)


def _actions(target_type=None) -> list[str]:
    events = AuditEvent.objects.order_by("id")
    if target_type:
        events = events.filter(target_type=target_type)
    return list(events.values_list("action", flat=True))


# --- Limits ------------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestLimits:
    def test_deposit_over_the_single_incoming_limit_is_422_and_moves_nothing(self, jane):
        wallet = open_wallet(jane, "USD")
        response = _deposit(client_for(jane), wallet, "1000.01")
        assert response.status_code == 422 and _code(response) == "LIMIT_EXCEEDED"
        details = response.json()["error"]["details"]
        assert (details["limit_type"], details["limit"], details["direction"], details["type"]) == ("single", "1000.00", "incoming", "deposit")
        assert _wallet(wallet).balance == 0 and not Transaction.objects.exists()
        assert _deposit(client_for(jane), wallet, "1000.00").status_code == 201

    def test_daily_deposit_limit_counts_earlier_deposits(self, jane):
        wallet = open_wallet(jane, "USD")
        client = client_for(jane)
        assert [_deposit(client, wallet, "1000").status_code for _ in range(2)] == [201, 201]
        refused = _deposit(client, wallet, "0.01")
        assert refused.status_code == 422 and refused.json()["error"]["details"]["limit_type"] == "daily"
        assert _wallet(wallet).balance == Decimal("2000")

    def test_transfer_outgoing_limit_applies_to_the_sender(self, jane, john):
        source = open_wallet(jane, "USD", funded="3000")
        destination = open_wallet(john, "USD")
        response = _transfer(client_for(jane), source, destination, "1000.01")
        assert response.status_code == 422 and _code(response) == "LIMIT_EXCEEDED"
        assert response.json()["error"]["details"]["direction"] == "outgoing"
        assert _wallet(source).balance == Decimal("3000") and _wallet(destination).balance == 0

    def test_moving_between_my_own_wallets_is_not_limited(self, jane):
        source = open_wallet(jane, "USD", funded="3000")
        savings = open_wallet(jane, "USD", label="savings")
        response = _transfer(client_for(jane), source, savings, "2500")
        assert response.status_code == 201, response.content
        assert _wallet(savings).balance == Decimal("2500")


# --- 2FA step-up -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestStepUp:
    def test_at_the_threshold_a_code_is_required_and_spent_once(self):
        jane, john = _verified(), _verified()
        secret = _with_totp(jane)
        source, destination = open_wallet(jane, "USD", funded="20000"), open_wallet(john, "USD")
        client = client_for(jane)

        below = _transfer(client, source, destination, "4999.99")
        assert below.status_code == 201, below.content

        missing = _transfer(client, source, destination, "5000.00")
        assert missing.status_code == 403 and _code(missing) == "2FA_REQUIRED"
        assert missing.json()["error"]["details"]["methods"] == ["totp"]

        code = _fresh_code(secret)
        passed = _transfer(client, source, destination, "5000.00", code=code)
        assert passed.status_code == 201, passed.content
        replayed = _transfer(client, source, destination, "5000.00", code=code)
        assert replayed.status_code == 403 and _code(replayed) == "2FA_VERIFICATION_FAILED"
        assert replayed.json()["error"]["details"]["reason"] == "replayed"
        wrong = _transfer(client, source, destination, "6000.00", code="000000")
        assert wrong.status_code == 403 and _code(wrong) == "2FA_VERIFICATION_FAILED"

        assert _wallet(destination).balance == Decimal("9999.99")
        # The refused attempts are in the audit chain (committed with the stored 403s).
        assert _actions("accounts.user").count("2fa.verification_failed") == 2
        tx = Transaction.objects.get(pk=passed.json()["id"])
        assert AuditEvent.objects.get(target_type="ledger.transaction", target_id=str(tx.pk)).data["two_factor"] == "totp"

    def test_deposits_never_need_a_code(self):
        jane = _verified()
        wallet = open_wallet(jane, "USD")
        assert _deposit(client_for(jane), wallet, "9000").status_code == 201


# --- Risk ----------------------------------------------------------------------------------------------------
@pytest.fixture
def review_everything_over_100():
    @register_risk_kind("test_over_100")
    def over_100(rule, ctx):
        return "over 100" if ctx.amount > Decimal("100") else None

    rule = RiskRuleFactory(name="test", kind="test_over_100", action="review", params={})
    yield rule
    unregister_risk_kind("test_over_100")


@pytest.mark.django_db
class TestRisk:
    def test_a_rule_holds_the_transfer_for_review_with_funds_held(self, jane, john, review_everything_over_100):
        source, destination = open_wallet(jane, "USD", funded="500"), open_wallet(john, "USD")
        response = _transfer(client_for(jane), source, destination, "150.00")
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["status"] == "in_review" and body["completed_at"] is None
        held = _wallet(source)
        assert held.balance == Decimal("500") and held.held == Decimal("150") and held.available_balance == Decimal("350")
        assert _wallet(destination).balance == 0
        case = ReviewCase.objects.get(transaction_id=body["id"])
        assert case.status == "open" and case.rule == review_everything_over_100
        # The held funds cannot be spent twice.
        assert _code(_transfer(client_for(jane), source, destination, "360.00")) == "INSUFFICIENT_FUNDS"
        review_approve(case=case, actor=StaffUserFactory(), reason="known customer")
        assert _wallet(source).balance == Decimal("350") and _wallet(source).held == 0
        assert _wallet(destination).balance == Decimal("150")
        assert Transaction.objects.get(pk=body["id"]).status == "completed"
        assert ledger_check() == [] and audit_chain_verified()["valid"]

    def test_rejected_review_releases_the_funds(self, jane, john, review_everything_over_100):
        source, destination = open_wallet(jane, "USD", funded="500"), open_wallet(john, "USD")
        body = _transfer(client_for(jane), source, destination, "150.00").json()
        review_reject(case=ReviewCase.objects.get(transaction_id=body["id"]), actor=StaffUserFactory(), reason="mule")
        assert _wallet(source).available_balance == Decimal("500") and _wallet(destination).balance == 0
        assert Transaction.objects.get(pk=body["id"]).status == "rejected"

    def test_a_sanctioned_recipient_is_rejected_and_recorded(self, jane):
        SanctionsEntryFactory(name="Ivan Sanctioned Petrov")
        target = person()
        target.first_name, target.last_name = "Ivan", "Petrov Sanctioned"
        target.save(update_fields=["first_name", "last_name"])
        source, destination = open_wallet(jane, "USD", funded="100"), open_wallet(target, "USD")
        key = _key()
        response = _transfer(client_for(jane), source, destination, "10.00", key=key)
        assert response.status_code == 422 and _code(response) == "TRANSACTION_REJECTED"
        assert "sanction" not in response.content.decode().lower()  # no tip-off
        assert _wallet(source).balance == Decimal("100") and _wallet(destination).balance == 0
        assert not Transaction.objects.filter(type="transfer").exists()
        rejected = AuditEvent.objects.get(action="risk.rejected")
        assert rejected.data["rule_kind"] == "sanctions" and rejected.data["beneficiary_name"] == mask_name(target.full_name)
        assert rejected.data["beneficiary_hash"] == beneficiary_name_hash(target.full_name)
        assert "petrov" not in json.dumps(rejected.data).lower()  # the counterparty's name is not kept in clear
        again = _transfer(client_for(jane), source, destination, "10.00", key=key)
        assert again["Idempotency-Replayed"] == "true" and again.status_code == 422


# --- Audit and webhooks -----------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestAuditAndWebhooks:
    def test_every_movement_lands_in_the_audit_chain(self, jane, john):
        wallet = open_wallet(jane, "USD")
        other = open_wallet(john, "USD")
        client = client_for(jane)
        _deposit(client, wallet, "50")
        _transfer(client, wallet, other, "20")
        _transfer(client, wallet, other, "31")  # insufficient: recorded as failed
        assert _actions("ledger.transaction") == ["deposit.completed", "transfer.completed", "transfer.failed"]
        failed = AuditEvent.objects.get(action="transfer.failed")
        assert failed.data["failure_code"] == "INSUFFICIENT_FUNDS"
        assert audit_chain_verified()["valid"]

    def test_a_transfer_into_an_organization_customers_wallet_is_announced_to_that_organization(self, jane):
        org = OrganizationFactory()
        endpoint = WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", events=["transaction.*"], secret_encrypted="x")
        customer = CustomerFactory(organization=org, user=None, external_id="cust-1", name="Shop customer")
        from ledger.services import wallet_open

        theirs = wallet_open(asset=asset("USD"), customer=customer)
        source = open_wallet(jane, "USD", funded="100")
        response = _transfer(client_for(jane), source, theirs, "10.00")
        assert response.status_code == 201, response.content
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert delivery.event_type == "transaction.completed"
        assert delivery.payload["data"]["id"] == response.json()["id"] and delivery.payload["data"]["amount"] == "10.00"
        # A user's own movements announce nothing.
        _deposit(client_for(jane), source, "5")
        assert WebhookDelivery.objects.count() == 1


# --- Racing requests against a daily limit (PostgreSQL) -----------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestLimitRace:
    def test_eight_racing_transfers_never_pass_the_daily_limit(self):
        LimitRule.objects.update_or_create(
            kyc_level="none", movement_type="transfer", direction="outgoing", currency="",
            defaults={"single_limit": Decimal("100"), "daily_limit": Decimal("100"), "monthly_limit": Decimal("1000")},
        )
        jane, john = person(), person()
        source, destination = open_wallet(jane, "USD", funded="1000"), open_wallet(john, "USD")
        def worker(i):
            response = _transfer(client_for(jane), source, destination, "30.00")
            return (response.status_code, json.loads(response.content))

        results = [("exception", repr(r)) if isinstance(r, BaseException) else r for r in run_in_threads(8, worker)]
        statuses = sorted(r[0] for r in results)
        assert statuses == [201] * 3 + [422] * 5, results
        assert all(r[1]["error"]["code"] == "LIMIT_EXCEEDED" for r in results if r[0] == 422)
        assert _wallet(destination).balance == Decimal("90.00")
        assert _wallet(source).balance == Decimal("910.00")
        assert ledger_check() == []

    def test_racing_deposits_and_a_kyc_upgrade_see_the_customer_locked_by_the_wallet_read(self):
        """A user's deposit takes its customer lock in the wallet read itself (ledger.selectors):
        ten racing deposits of 300 against a daily incoming limit of 2,000 pass six times."""
        LimitRule.objects.update_or_create(
            kyc_level="none", movement_type="deposit", direction="incoming", currency="",
            defaults={"single_limit": Decimal("1000"), "daily_limit": Decimal("2000"), "monthly_limit": Decimal("5000")},
        )
        jane = person()
        wallet = open_wallet(jane, "USD")

        def worker(i):
            response = _deposit(client_for(jane), wallet, "300")
            return (response.status_code, json.loads(response.content))

        results = [("exception", repr(r)) if isinstance(r, BaseException) else r for r in run_in_threads(10, worker)]
        assert sorted(r[0] for r in results) == [201] * 6 + [422] * 4, results
        assert _wallet(wallet).balance == Decimal("1800.00")
        assert ledger_check() == []
