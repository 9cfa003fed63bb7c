"""Every entry point that moves money runs the one pipeline (issue 10 item 1): limits, risk,
usage and the audit event apply to organization transactions as to customer movements, as the
organization chose; sanctions screening of refund destinations always applies."""

import uuid
from decimal import Decimal

import pytest

from compliance.models import AuditEvent, ReviewCase
from ledger.models import Transaction, UsageCounter, Wallet
from ledger.posting import Issue, ledger_post
from ledger.services import wallet_open
from ledger.usage import usage_check
from tests.factories.compliance import RiskRuleFactory
from tests.factories.accounts import OrgCustomerFactory
from tests.factories.orgs import key_client, make_org_key
from tests.factories.wallets import asset, client_for, open_wallet, person

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org_key("Acme")


def _customer_wallet(org, funded: str = "0") -> Wallet:
    wallet = wallet_open(asset=asset("USD"), customer=OrgCustomerFactory(organization=org.organization, kyc_level="none"))
    if Decimal(funded):
        ledger_post(type="adjustment", operations=[Issue(wallet=wallet, amount=Decimal(funded))]).raise_for_error()
    return wallet


def _transfer(org, source, destination, amount, reference=None):
    body = {"reference": reference or uuid.uuid4().hex, "operations": [
        {"type": "transfer", "source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": amount}]}
    return key_client(org).post("/api/v1/transactions", body, format="json")


def _usage(wallet, movement_type, direction) -> Decimal:
    row = UsageCounter.objects.filter(customer_id=wallet.customer_id, movement_type=movement_type, direction=direction).first()
    return row.amount if row else Decimal(0)


def test_organization_transactions_are_limited_by_their_customers_kyc_level(org):
    a, b = _customer_wallet(org, "3000"), _customer_wallet(org)
    refused = _transfer(org, a, b, "1500")  # KYC none: single transfer limit 1,000
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "LIMIT_EXCEEDED"
    assert refused.json()["error"]["details"]["limit_type"] == "single"
    assert not Transaction.objects.filter(type="ledger").exists()
    ok = _transfer(org, a, b, "600")
    assert ok.status_code == 201, ok.content
    again = _transfer(org, a, b, "600")
    assert again.status_code == 201
    daily = _transfer(org, a, b, "900")  # daily 2,000: 1,200 used
    assert daily.status_code == 422 and daily.json()["error"]["details"]["limit_type"] == "daily"
    assert _usage(a, "transfer", "outgoing") == Decimal("1200") and _usage(b, "transfer", "incoming") == Decimal("1200")
    assert usage_check() == []


def test_an_organization_can_turn_its_customers_limits_off(org):
    org.organization.limits_enabled = False
    org.organization.save()
    a, b = _customer_wallet(org, "3000"), _customer_wallet(org)
    response = _transfer(org, a, b, "2500")
    assert response.status_code == 201, response.content
    assert _usage(a, "transfer", "outgoing") == Decimal("2500")  # counted all the same
    assert usage_check() == []


def test_risk_rules_hold_an_organization_transaction_for_review_unless_turned_off(org):
    RiskRuleFactory(name="big", action="review", params={"threshold": "100"})
    a, b = _customer_wallet(org, "1000"), _customer_wallet(org)
    held = _transfer(org, a, b, "200")
    assert held.status_code == 201 and held.json()["status"] == "in_review", held.content
    tx = Transaction.objects.get(pk=held.json()["id"])
    assert ReviewCase.objects.filter(transaction=tx).exists()
    assert Wallet.objects.get(pk=a.pk).held == Decimal("200")
    org.organization.risk_rules_enabled = False
    org.organization.save()
    passed = _transfer(org, a, b, "200")
    assert passed.status_code == 201 and passed.json()["status"] == "completed"


def test_an_organization_transaction_is_audited_with_its_principal(org):
    a, b = _customer_wallet(org, "100"), _customer_wallet(org)
    response = _transfer(org, a, b, "10", reference="audited")
    tx = Transaction.objects.get(pk=response.json()["id"])
    assert tx.organization_id == org.organization.pk and tx.customer_id is None  # the organization's, by its reference
    event = AuditEvent.objects.get(action="transaction.completed", target_id=str(response.json()["id"]))
    assert event.data["reference"] == "audited" and event.data["operations"] == 1 and event.data["risk"] == "allow"


def test_a_users_transfer_counts_for_the_sender_and_the_recipient():
    jane, john = person(), person()
    source, destination = open_wallet(jane, "USD", funded="100.00"), open_wallet(john, "USD")
    response = client_for(jane).post(
        "/api/v1/transfers", {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": "30.00", "currency": "USD"},
        format="json", headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.content
    assert _usage(source, "transfer", "outgoing") == Decimal("30") and _usage(destination, "transfer", "incoming") == Decimal("30")
    assert AuditEvent.objects.filter(action="transfer.completed", target_id=str(response.json()["id"])).exists()
    assert usage_check() == []


def test_compliance_staff_switch_an_organizations_controls_in_the_admin_and_it_is_audited(org, admin_client):
    url = f"/admin/accounts/organization/{org.organization.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b"limits_enabled" in page.content
    form = {"name": org.organization.name, "slug": org.organization.slug, "settlement_currency": org.organization.settlement_currency,
            "limits_enabled": "", "risk_rules_enabled": "on",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0", "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"}
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    org.organization.refresh_from_db()
    assert org.organization.limits_enabled is False and org.organization.risk_rules_enabled is True
    assert AuditEvent.objects.filter(action="admin.change", target_type="accounts.organization", target_id=str(org.organization.pk)).exists()
