"""The risk step: the rule registry and the in_review path (with a rule kind defined here), each
built-in rule, sanctions matching and import, review decisions (services and admin), audit."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from compliance.models import AuditEvent, ReviewCase, RiskRule, SanctionsEntry
from compliance.risk import (
    RiskDecision,
    TransactionRejected,
    register_risk_kind,
    risk_evaluate,
    risk_kinds,
    sanctions_match,
    unregister_risk_kind,
)
from compliance.limits import default_direction
from compliance.review import review_case_open
from wallets.beneficiaries import beneficiary_name_hash
from wallets.review import review_approve, review_reject
from core.errors import InvalidState, ValidationFailed
from core.exceptions import api_exception_handler
from ledger.models import Asset, Transaction, Wallet
from ledger.posting import Issue, PlatformAccount, Redeem, Transfer, ledger_post
from ledger.services import wallet_suspend
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from tests.usage import backdate_transaction
from tests.factories.accounts import CustomerFactory, StaffUserFactory, UserFactory
from tests.factories.compliance import RiskRuleFactory, SanctionsEntryFactory
from tests.factories.ledger import WalletFactory, platform_asset

pytestmark = pytest.mark.django_db


def usd() -> Asset:
    return Asset.objects.get(code="USD", organization__isnull=True)


def funded_wallet(customer=None, amount="5000", code="USD", label="") -> Wallet:
    customer = customer or CustomerFactory(kyc_level="verified")
    return WalletFactory(asset=platform_asset(code), customer=customer, label=label, funded=amount or None,
                         deposit_owner={"customer": customer})


def age(customer: Customer, hours: int) -> None:
    Customer.objects.filter(pk=customer.pk).update(created_at=timezone.now() - dt.timedelta(hours=hours))
    customer.refresh_from_db()


def backdate(tx: Transaction, delta: dt.timedelta) -> None:
    backdate_transaction(tx, timezone.now() - delta)


def move(*, wallet: Wallet, movement_type: str, amount: str, operations, beneficiary_name=None, direction=None, counterparty=None):
    """One movement through the money path (wallets.pipeline): lock customer -> limits -> risk
    -> post, or hold for review with a case; a rejection is committed before it is raised."""
    direction = direction or default_direction(movement_type)
    with transaction.atomic():
        result = money_path(MoneyMovement(
            actor=None, movement_type=movement_type, ledger_type=movement_type, wallet=wallet, amount=Decimal(amount),
            operations=operations, direction=direction, step_up=False, beneficiary_name=beneficiary_name,
            limits=[LimitScope(wallet.asset, movement_type, direction, Decimal(amount))],
        ))
    result.raise_for_error()
    return result.decision, result.transaction


def transfer(source: Wallet, destination: Wallet, amount: str, **kwargs):
    return move(
        wallet=source, movement_type="transfer", amount=amount, counterparty=destination.customer,
        operations=[Transfer(source=source, destination=destination, amount=Decimal(amount))], **kwargs,
    )


def withdraw(wallet: Wallet, amount: str, beneficiary_name=None):
    return move(
        wallet=wallet, movement_type="withdrawal", amount=amount, beneficiary_name=beneficiary_name,
        operations=[Redeem(wallet=wallet, amount=Decimal(amount)), Transfer(source=wallet, destination=PlatformAccount("fee"), amount=Decimal("1.00"))],
    )


def evaluate(wallet: Wallet, movement_type: str, amount: str, **kwargs) -> RiskDecision:
    return risk_evaluate(customer=Customer.objects.get(pk=wallet.customer_id), wallet=wallet, movement_type=movement_type,
                         amount=Decimal(amount), asset=wallet.asset, **kwargs)


def balances(wallet: Wallet) -> tuple[Decimal, Decimal]:
    wallet.refresh_from_db()
    return wallet.balance, wallet.held


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def flag_kind():
    """A rule kind defined by the test: fires for amounts whose cents are 13."""

    @register_risk_kind("test_unlucky_cents")
    def check(rule, ctx):
        cents = rule.params.get("cents", "0.13")
        return f"unlucky amount {ctx.amount}" if str(ctx.amount).endswith(cents[-3:]) else None

    yield RiskRuleFactory(name="Unlucky", kind="test_unlucky_cents", params={"cents": ".13"}, action="review")
    unregister_risk_kind("test_unlucky_cents")


# --- the seam and the in_review path --------------------------------------------------------------


def test_a_rule_kind_defined_in_a_test_holds_the_transaction_and_approval_posts_it(flag_kind):
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    assert "test_unlucky_cents" in risk_kinds()

    decision, tx = transfer(alice, bob, "200.13")
    assert decision.needs_review and decision.rule == flag_kind and decision.reason == "unlucky amount 200.13"
    assert tx.status == "in_review"
    assert balances(alice) == (Decimal("500"), Decimal("200.13"))  # held, not moved
    assert balances(bob) == (Decimal("0"), Decimal("0"))
    case = ReviewCase.objects.get(transaction=tx)
    assert (case.status, case.rule, case.rule_kind, case.customer_id) == ("open", flag_kind, "test_unlucky_cents", alice.customer_id)
    opened = audit("review.opened")[-1]
    assert opened.target_id == str(case.pk) and opened.data["transaction_id"] == tx.pk

    officer = StaffUserFactory()
    decided = review_approve(case=case, actor=officer, reason="Customer called, legitimate rent payment")
    assert decided.status == "approved" and decided.decided_by == officer and decided.decided_at is not None
    assert decided.decision_reason == "Customer called, legitimate rent payment"
    tx.refresh_from_db()
    assert tx.status == "completed"
    assert balances(alice) == (Decimal("299.87"), Decimal("0"))
    assert balances(bob) == (Decimal("200.13"), Decimal("0"))
    event = audit("review.approved")[-1]
    assert event.actor == officer and event.data["posted"] is True and event.data["reason"].startswith("Customer called")

    with pytest.raises(InvalidState):
        review_reject(case=case, actor=officer, reason="too late")


def test_rejecting_a_review_releases_the_hold(flag_kind):
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    _, tx = transfer(alice, bob, "100.13")
    case = tx.review_case
    officer = StaffUserFactory()
    review_reject(case=case, actor=officer, reason="Beneficiary unknown")
    tx.refresh_from_db()
    case.refresh_from_db()
    assert (tx.status, tx.failure_code, case.status) == ("rejected", "REJECTED", "rejected")
    assert balances(alice) == (Decimal("500"), Decimal("0"))
    assert balances(bob) == (Decimal("0"), Decimal("0"))
    assert audit("review.rejected")[-1].actor == officer
    with pytest.raises(InvalidState):
        review_approve(case=case, actor=officer, reason="changed my mind")


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_decision_needs_a_reason(flag_kind, reason):
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    _, tx = transfer(alice, bob, "100.13")
    for service in (review_approve, review_reject):
        with pytest.raises(ValidationFailed) as exc:
            service(case=tx.review_case, actor=StaffUserFactory(), reason=reason)
        assert "reason" in exc.value.details["fields"]
    tx.refresh_from_db()
    assert tx.status == "in_review" and tx.review_case.status == "open"


def test_approval_of_a_posting_the_ledger_now_refuses_fails_it_and_releases_the_hold(flag_kind):
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    _, tx = transfer(alice, bob, "100.13")
    wallet_suspend(wallet=bob, reason="closed account")
    case = review_approve(case=tx.review_case, actor=StaffUserFactory(), reason="ok")
    tx.refresh_from_db()
    assert case.status == "approved" and tx.status == "failed" and tx.failure_code == "WALLET_INACTIVE"
    assert balances(alice) == (Decimal("500"), Decimal("0"))
    assert audit("review.approved")[-1].data["posted"] is False


def test_a_case_needs_a_transaction_in_review(flag_kind):
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    decision, tx = transfer(alice, bob, "10.00")
    assert decision.allowed and tx.status == "completed" and not ReviewCase.objects.filter(transaction=tx).exists()
    with pytest.raises(InvalidState):
        review_case_open(transaction=tx, decision=RiskDecision(action="review", reason="manual"))


def test_unknown_and_inactive_rules_are_skipped(flag_kind):
    RiskRuleFactory(name="Ghost", kind="no_such_kind", params={})
    flag_kind.active = False
    flag_kind.save()
    alice = funded_wallet(amount="500")
    assert evaluate(alice, "withdrawal", "100.13").allowed


def test_the_strongest_action_wins_and_every_hit_is_kept(flag_kind):
    SanctionsEntryFactory(name="Ivan Drago", source="", list_id="")
    alice = funded_wallet(amount="500")
    decision = evaluate(alice, "withdrawal", "100.13", beneficiary_name="Ivan Drago")
    assert decision.rejected and decision.rule.kind == "sanctions"
    assert [r.kind for r, _ in decision.hits] == ["sanctions", "test_unlucky_cents"]


# --- built-in rules -------------------------------------------------------------------------------


def test_velocity_more_than_100_outgoing_movements_in_10_minutes():
    alice, bob = funded_wallet(amount="1000"), funded_wallet(amount="")
    old = ledger_post(type="transfer", operations=[Transfer(source=alice, destination=bob, amount=Decimal("0.01"))], customer=alice.customer).raise_for_error()
    backdate(old, dt.timedelta(minutes=11))  # outside the window
    deposit_in = ledger_post(type="deposit", operations=[Issue(wallet=alice, amount=Decimal("1"))], customer=alice.customer).raise_for_error()
    assert deposit_in.status == "completed"  # incoming: does not count
    for _ in range(98):
        ledger_post(type="transfer", operations=[Transfer(source=alice, destination=bob, amount=Decimal("0.01"))], customer=alice.customer).raise_for_error()
    ledger_post(type="transfer", operations=[Transfer(source=alice, destination=bob, amount=Decimal("0.01"))], customer=alice.customer, hold_for_review=True).raise_for_error()
    assert evaluate(alice, "transfer", "0.01").allowed  # 99 earlier: this is the 100th
    assert evaluate(bob, "deposit", "0.01").allowed  # incoming movements never trip it

    ledger_post(type="withdrawal", operations=[Redeem(wallet=alice, amount=Decimal("0.01"))], customer=alice.customer).raise_for_error()
    decision, tx = transfer(alice, bob, "0.01")  # the 101st
    assert decision.needs_review and decision.rule.kind == "velocity" and "101 outgoing movements" in decision.reason
    assert tx.status == "in_review"


def test_structuring_three_movements_just_under_the_single_limit():
    customer = CustomerFactory(kyc_level="none")  # single 1,000 per type: band 900..1000
    age(customer, 48)
    alice, bob = funded_wallet(customer, amount="4000"), funded_wallet(amount="")
    first = ledger_post(type="transfer", operations=[Transfer(source=alice, destination=bob, amount=Decimal("950"))], customer=customer).raise_for_error()
    backdate(first, dt.timedelta(hours=20))
    assert evaluate(alice, "transfer", "990").allowed  # only two so far
    second = ledger_post(type="withdrawal", operations=[Redeem(wallet=alice, amount=Decimal("930"))], customer=customer).raise_for_error()
    backdate(second, dt.timedelta(hours=2))
    assert evaluate(alice, "transfer", "899.99").allowed  # this one is not just under the limit
    assert evaluate(alice, "transfer", "990", direction="incoming").allowed  # other direction: nothing earlier

    decision, tx = transfer(alice, bob, "990")
    assert decision.needs_review and decision.rule.kind == "structuring" and decision.reason.startswith("3 outgoing USD movements")
    assert tx.status == "in_review"

    backdate(first, dt.timedelta(hours=25))  # outside 24 h: two left (the one in review counts)
    assert evaluate(alice, "transfer", "990").needs_review
    backdate(tx, dt.timedelta(hours=25))
    assert evaluate(alice, "transfer", "990").allowed


def test_structuring_never_fires_without_a_single_limit():
    customer = CustomerFactory(kyc_level="enhanced")
    alice, bob = funded_wallet(customer, amount="10000"), funded_wallet(amount="")
    for _ in range(3):
        ledger_post(type="transfer", operations=[Transfer(source=alice, destination=bob, amount=Decimal("950"))], customer=customer).raise_for_error()
    assert evaluate(alice, "transfer", "950").allowed


def test_new_account_first_large_outgoing_movement():
    customer = CustomerFactory(kyc_level="none")  # single 1,000: half is 500
    alice, bob = funded_wallet(customer, amount="2000"), funded_wallet(amount="")
    assert evaluate(alice, "transfer", "500").allowed  # not over half
    assert evaluate(alice, "deposit", "900").allowed  # incoming
    decision, tx = transfer(alice, bob, "500.01")
    assert decision.needs_review and decision.rule.kind == "new_account_large" and tx.status == "in_review"
    assert "500.01 > 500.00 USD" in decision.reason
    assert evaluate(alice, "transfer", "900").allowed  # not the first outgoing movement any more


def test_new_account_rule_ends_24_hours_after_sign_up():
    customer = CustomerFactory(kyc_level="none")
    alice = funded_wallet(customer, amount="2000")
    assert evaluate(alice, "withdrawal", "900").needs_review
    age(customer, 25)
    assert evaluate(alice, "withdrawal", "900").allowed


def test_amount_threshold_is_configurable():
    rule = RiskRule.objects.get(kind="amount_threshold")
    assert not rule.active  # seeded switched off
    alice = funded_wallet(CustomerFactory(kyc_level="verified"), amount="20000")
    age(alice.customer, 48)
    assert evaluate(alice, "withdrawal", "60000").allowed

    rule.active, rule.params = True, {"threshold": "5000", "currency": "USD", "movement_types": ["withdrawal"]}
    rule.save()
    assert evaluate(alice, "withdrawal", "5000").needs_review
    assert evaluate(alice, "withdrawal", "4999.99").allowed
    assert evaluate(alice, "transfer", "6000").allowed  # other type
    eur = funded_wallet(alice.customer, amount="", code="EUR")
    assert evaluate(eur, "withdrawal", "6000").allowed  # other currency

    rule.action = "reject"
    rule.save()
    with pytest.raises(TransactionRejected):
        withdraw(alice, "7000")
    assert balances(alice) == (Decimal("20000"), Decimal("0"))


# --- sanctions --------------------------------------------------------------------------------------


@pytest.fixture
def drago():
    return SanctionsEntryFactory(name="Ivan Petrovich Drago", aliases=["Ivan Drago", "I. P. Drago"], list_id="X-1")


@pytest.mark.parametrize("name", ["Ivan Petrovich Drago", "DRAGO, Ivan", "ivan drago", "Drago Ivan Petrovich", "Ivan Petrovitch Drago"])
def test_sanctions_names_match_whatever_the_order_case_or_punctuation(drago, name):
    found = sanctions_match(name, threshold=90)
    assert found is not None and found[0] == drago


@pytest.mark.parametrize("name", ["Ivan Dragomirov Smith", "Jane Doe", "Ivan", "", "   ", "---"])
def test_sanctions_does_not_match_other_names(drago, name):
    assert sanctions_match(name, threshold=90) is None


def test_a_sanctions_match_rejects_records_and_moves_nothing(drago):
    customer = CustomerFactory(kyc_level="verified")
    age(customer, 48)
    wallet = funded_wallet(customer, amount="1000")
    transactions_before = Transaction.objects.count()

    with pytest.raises(TransactionRejected) as exc:
        withdraw(wallet, "100.00", beneficiary_name="Drago, Ivan")
    assert balances(wallet) == (Decimal("1000"), Decimal("0"))
    assert Transaction.objects.count() == transactions_before
    event = audit("risk.rejected")[-1]
    assert event.target_type == "accounts.customer" and event.target_id == str(customer.pk)
    assert event.data["rule_kind"] == "sanctions" and event.data["beneficiary_name"] == "D***** I***"
    assert event.data["beneficiary_hash"] == beneficiary_name_hash("drago, IVAN")
    assert event.data["amount"] == "100.00" and event.data["wallet_id"] == wallet.pk and "X-1" in event.data["reason"]
    assert f"entry {drago.pk}" in event.data["reason"]

    response = api_exception_handler(exc.value, {})
    assert response.status_code == 422
    assert response.data == {"error": {"code": "TRANSACTION_REJECTED", "message": "This transaction was blocked by our compliance checks.", "details": {}}}

    assert withdraw(wallet, "100.00", beneficiary_name="Jane Doe")[1].status == "completed"
    assert withdraw(wallet, "100.00")[1].status == "completed"  # no beneficiary: nothing to screen
    drago.active = False
    drago.save()
    assert withdraw(wallet, "100.00", beneficiary_name="Ivan Drago")[1].status == "completed"


def test_a_rejection_audit_event_holds_the_beneficiary_masked_and_hashed_never_in_clear(drago):
    """The bug: `risk.rejected` kept the beneficiary's name as given in the append-only audit chain
    (and the sanctions reason quoted the list name it matched). The event keeps the masked name and
    the keyed hash a payout keeps (wallets.beneficiaries); the entry is named by id and list."""
    wallet = funded_wallet(amount="1000")
    with pytest.raises(TransactionRejected):
        withdraw(wallet, "100.00", beneficiary_name="Ivan  Petrovich DRAGO")
    event = audit("risk.rejected")[-1]
    assert event.data["beneficiary_name"] == "I*** P******** D****"
    assert event.data["beneficiary_hash"] == beneficiary_name_hash("ivan petrovich drago")
    text = json.dumps(event.data).lower()
    assert "drago" not in text and "ivan" not in text and "petrovich" not in text, event.data
    assert event.data["hits"][0]["kind"] == "sanctions" and "X-1" in event.data["hits"][0]["reason"]


def test_a_rejection_without_a_beneficiary_records_none(drago):
    wallet = funded_wallet(amount="1000")
    RiskRuleFactory(params={"threshold": "90"})
    with pytest.raises(TransactionRejected):
        withdraw(wallet, "95.00")
    event = audit("risk.rejected")[-1]
    assert event.data["beneficiary_name"] == "" and event.data["beneficiary_hash"] == ""


def test_the_money_path_answers_a_rejection_and_keeps_its_audit_record(drago):
    wallet = funded_wallet(amount="1000")
    with transaction.atomic():
        result = money_path(MoneyMovement(
            actor=None, movement_type="withdrawal", ledger_type="withdrawal", wallet=wallet, amount=Decimal("10"),
            operations=[Redeem(wallet=wallet, amount=Decimal("10"))], step_up=False, beneficiary_name="Ivan Drago",
        ))
    assert isinstance(result.error, TransactionRejected) and result.transaction is None
    assert AuditEvent.objects.filter(action="risk.rejected", target_id=str(wallet.customer_id)).exists()
    assert Wallet.objects.get(pk=wallet.pk).balance == Decimal("1000")


def test_import_sanctions_command(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("name,aliases,list_id\nIvan Drago,Ivan P. Drago;The Siberian Express,SDN-1\nViktor Zakhaev,,SDN-2\nNo Id Person,,\n", encoding="utf-8")
    call_command("import_sanctions", str(path), "--source", "OFAC SDN")
    entry = SanctionsEntry.objects.get(list_id="SDN-1")
    assert (entry.name, entry.aliases, entry.source) == ("Ivan Drago", ["Ivan P. Drago", "The Siberian Express"], "OFAC SDN")
    assert SanctionsEntry.objects.count() == 3
    assert sanctions_match("siberian express the", threshold=90)[0] == entry

    path.write_text("name,aliases,list_id\nIvan Drago Senior,,SDN-1\nNo Id Person,,\n", encoding="utf-8")
    call_command("import_sanctions", str(path), "--source", "OFAC SDN")  # upsert by (source, list_id)
    assert SanctionsEntry.objects.count() == 3
    entry.refresh_from_db()
    assert entry.name == "Ivan Drago Senior" and entry.aliases == []
    assert [e.data["created"] for e in audit("sanctions.import")] == [3, 0]

    path.write_text("name,aliases,list_id\n,,SDN-9\n", encoding="utf-8")
    with pytest.raises(CommandError, match="line 2"):
        call_command("import_sanctions", str(path))
    path.write_text("who,what\nx,y\n", encoding="utf-8")
    with pytest.raises(CommandError, match="header"):
        call_command("import_sanctions", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_sanctions", str(tmp_path / "missing.csv"))
    assert SanctionsEntry.objects.count() == 3


# --- admin -------------------------------------------------------------------------------------------


def admin_client(user=None) -> Client:
    client = Client()
    client.force_login(user or UserFactory(is_staff=True, is_superuser=True))
    return client


def held_case(flag_kind) -> ReviewCase:
    alice, bob = funded_wallet(amount="500"), funded_wallet(amount="")
    return transfer(alice, bob, "100.13")[1].review_case


def test_admin_review_actions_require_a_reason(flag_kind):
    case = held_case(flag_kind)
    officer = UserFactory(is_staff=True, is_superuser=True)
    client = admin_client(officer)
    url = reverse("admin:compliance_reviewcase_changelist")

    page = client.post(url, {"action": "approve_cases", "_selected_action": [case.pk]})
    assert page.status_code == 200 and b"A reason is required" in page.content and b"Reason" in page.content
    case.refresh_from_db()
    assert case.status == "open"

    blank = client.post(url, {"action": "approve_cases", "_selected_action": [case.pk], "apply": "1", "reason": "  "})
    assert blank.status_code == 200 and b"This field is required" in blank.content
    case.refresh_from_db()
    assert case.status == "open"

    done = client.post(url, {"action": "approve_cases", "_selected_action": [case.pk], "apply": "1", "reason": "Verified by phone"})
    assert done.status_code == 302
    case.refresh_from_db()
    assert (case.status, case.decided_by, case.decision_reason, case.transaction.status) == ("approved", officer, "Verified by phone", "completed")
    assert audit("review.approved")[-1].actor == officer


def test_admin_reject_action_and_queue_order(flag_kind):
    decided, open_old, open_new = held_case(flag_kind), held_case(flag_kind), held_case(flag_kind)
    client = admin_client()
    url = reverse("admin:compliance_reviewcase_changelist")
    response = client.post(url, {"action": "reject_cases", "_selected_action": [decided.pk], "apply": "1", "reason": "Fraud pattern"})
    assert response.status_code == 302
    decided.refresh_from_db()
    assert decided.status == "rejected" and decided.transaction.status == "rejected"

    listing = client.get(url)
    assert listing.status_code == 200
    assert [c.pk for c in listing.context["cl"].result_list] == [open_old.pk, open_new.pk, decided.pk]


def test_compliance_officers_decide_and_auditors_only_look(flag_kind):
    from django.contrib.auth.models import Group

    case = held_case(flag_kind)
    url = reverse("admin:compliance_reviewcase_changelist")
    auditor = UserFactory(is_staff=True)
    auditor.groups.add(Group.objects.get(name="auditor"))
    as_auditor = admin_client(auditor)
    assert as_auditor.get(url).status_code == 200
    as_auditor.post(url, {"action": "approve_cases", "_selected_action": [case.pk], "apply": "1", "reason": "x"})
    case.refresh_from_db()
    assert case.status == "open"

    officer = UserFactory(is_staff=True)
    officer.groups.add(Group.objects.get(name="compliance officer"))
    admin_client(officer).post(url, {"action": "reject_cases", "_selected_action": [case.pk], "apply": "1", "reason": "Mule account"})
    case.refresh_from_db()
    assert case.status == "rejected" and case.decided_by == officer


def test_admin_sanctions_import_and_rule_editing(flag_kind):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = admin_client()
    upload = SimpleUploadedFile("list.csv", b"name,aliases,list_id\nIvan Drago,Drago|I. Drago,U-1\n", content_type="text/csv")
    response = client.post(reverse("admin:compliance_sanctionsentry_import"), {"file": upload, "source": "UN"})
    assert response.status_code == 302
    assert SanctionsEntry.objects.get(list_id="U-1").aliases == ["Drago", "I. Drago"]
    bad = client.post(reverse("admin:compliance_sanctionsentry_import"), {"file": SimpleUploadedFile("x.csv", b"foo\n1\n"), "source": ""})
    assert bad.status_code == 200 and b"header" in bad.content

    rule_form = client.get(reverse("admin:compliance_riskrule_change", args=[flag_kind.pk]))
    assert b"test_unlucky_cents" in rule_form.content and b'name="params-params"' in rule_form.content  # a kind without a form: JSON
    chooser = client.get(reverse("admin:compliance_riskrule_add"))
    assert b"?kind=test_unlucky_cents" in chooser.content and b"?kind=velocity" in chooser.content
    velocity = RiskRule.objects.get(kind="velocity")
    response = client.post(
        reverse("admin:compliance_riskrule_change", args=[velocity.pk]),
        {"name": "Velocity", "kind": "velocity", "params-max_count": "5", "params-window_minutes": "10", "action": "review", "active": "on", "description": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    velocity.refresh_from_db()
    assert velocity.params == {"max_count": 5, "window_minutes": 10}
    assert AuditEvent.objects.filter(action="admin.change", target_type="compliance.riskrule", target_id=str(velocity.pk)).exists()
    for model in ("feerule", "limitrule", "sanctionsentry", "reviewcase", "riskrule"):
        assert client.get(reverse(f"admin:compliance_{model}_changelist")).status_code == 200
