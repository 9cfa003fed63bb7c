"""Review decisions in the back office (issue 14 item 7): four-eyes approval above the configured
amount, the case page's approve/reject view with a required reason, the queue's columns and
filters, and the amount/currency/counterparty read of a held transaction. PostgreSQL."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from compliance.backoffice import four_eyes_amount, review_needs_second_approval, transaction_summaries
from compliance.models import AuditEvent, ReviewCase
from compliance.review import SecondApproverRequired
from wallets.review import review_approve, review_reject
from core.errors import ValidationFailed
from tests.compliance.test_risk import balances, funded_wallet, transfer, withdraw
from tests.factories.accounts import CustomerFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def four_eyes_at_1000(settings):
    settings.REVIEW_FOUR_EYES_AMOUNT = "1000"
    settings.REVIEW_FOUR_EYES_AMOUNTS = {}


def held(amount: str, *, source=None, destination=None):
    source = source or funded_wallet(amount="5000")
    destination = destination or funded_wallet(CustomerFactory(kyc_level="verified", name="Bob Receiver"), amount="")
    _, tx = transfer(source, destination, amount)
    assert tx.status == "in_review"
    return tx.review_case, source, destination


def test_above_the_amount_two_different_officers_must_approve(flag_kind, four_eyes_at_1000):
    case, alice, bob = held("1500.13")
    first, second = StaffUserFactory(), StaffUserFactory()
    assert review_needs_second_approval(case)

    after_first = review_approve(case=case, actor=first, reason="Documents checked")
    assert after_first.status == "open" and after_first.first_approved_by == first and after_first.first_approval_reason == "Documents checked"
    after_first.transaction.refresh_from_db()
    assert after_first.transaction.status == "in_review"
    assert balances(alice) == (Decimal("5000"), Decimal("1500.13"))  # nothing moved on one approval
    assert AuditEvent.objects.filter(action="review.first_approval", actor=first, target_id=str(case.pk)).exists()

    with pytest.raises(SecondApproverRequired):
        review_approve(case=case, actor=first, reason="Approving again myself")
    case.refresh_from_db()
    assert case.status == "open" and case.transaction.status == "in_review"

    decided = review_approve(case=case, actor=second, reason="Second look: fine")
    assert decided.status == "approved" and decided.decided_by == second and decided.first_approved_by == first
    assert decided.transaction.status == "completed"
    assert balances(alice) == (Decimal("3499.87"), Decimal("0"))
    assert balances(bob) == (Decimal("1500.13"), Decimal("0"))
    event = AuditEvent.objects.get(action="review.approved", target_id=str(case.pk))
    assert event.actor == second and event.data["four_eyes"] is True and event.data["first_approved_by"] == first.pk


def test_below_the_amount_one_approval_posts(flag_kind, four_eyes_at_1000):
    case, alice, _ = held("999.13")
    assert not review_needs_second_approval(case)
    decided = review_approve(case=case, actor=StaffUserFactory(), reason="Small amount, known customer")
    assert decided.status == "approved" and decided.transaction.status == "completed" and decided.first_approved_by is None


def test_one_officer_may_reject_a_four_eyes_case_even_after_approving_it(flag_kind, four_eyes_at_1000):
    case, alice, _ = held("2000.13")
    officer = StaffUserFactory()
    review_approve(case=case, actor=officer, reason="Looks fine")
    rejected = review_reject(case=case, actor=officer, reason="Second thoughts: mule pattern")
    assert rejected.status == "rejected" and rejected.transaction.status == "rejected"
    assert balances(alice) == (Decimal("5000"), Decimal("0"))


def test_a_system_approval_of_a_four_eyes_case_is_refused(flag_kind, four_eyes_at_1000):
    case, _, _ = held("1000.13")
    with pytest.raises(SecondApproverRequired):
        review_approve(case=case, actor=None, reason="automatic")
    case.refresh_from_db()
    assert case.status == "open" and case.first_approved_by is None


def test_per_currency_amounts_and_switching_off(settings):
    settings.REVIEW_FOUR_EYES_AMOUNT = "10000"
    settings.REVIEW_FOUR_EYES_AMOUNTS = {"BTC": "0.5"}
    assert four_eyes_amount("USD") == Decimal("10000") and four_eyes_amount("BTC") == Decimal("0.5")
    settings.REVIEW_FOUR_EYES_AMOUNT = None
    assert four_eyes_amount("USD") is None and four_eyes_amount("BTC") == Decimal("0.5")


@pytest.mark.parametrize("reason", ["", "   "])
def test_the_case_page_refuses_a_decision_without_reason(flag_kind, reason):
    case, alice, _ = held("100.13")
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.post(reverse("admin:compliance_reviewcase_decide", args=[case.pk]), {"decision": "reject", "reason": reason})
    assert page.status_code == 200 and b"A reason is required" in page.content
    case.refresh_from_db()
    assert case.status == "open" and balances(alice) == (Decimal("5000"), Decimal("100.13"))


def test_the_case_page_decides_through_the_services(flag_kind, four_eyes_at_1000):
    case, _, bob = held("1200.13")
    first, second = UserFactory(is_staff=True, is_superuser=True), UserFactory(is_staff=True, is_superuser=True)
    url = reverse("admin:compliance_reviewcase_decide", args=[case.pk])
    as_first, as_second = Client(), Client()
    as_first.force_login(first)
    as_second.force_login(second)
    assert as_first.post(url, {"decision": "approve", "reason": "KYC documents fine"}).status_code == 302
    again = as_first.post(url, {"decision": "approve", "reason": "me again"}, follow=True)
    assert b"second approval by another staff member" in again.content
    case.refresh_from_db()
    assert case.status == "open"
    assert as_second.post(url, {"decision": "approve", "reason": "Agreed"}).status_code == 302
    case.refresh_from_db()
    assert case.status == "approved" and case.transaction.status == "completed" and balances(bob)[0] == Decimal("1200.13")
    assert as_second.post(url, {"decision": "frobnicate", "reason": "x"}).status_code == 400


def test_an_auditor_cannot_decide_on_the_case_page(flag_kind):
    from django.contrib.auth.models import Group

    case, _, _ = held("100.13")
    auditor = UserFactory(is_staff=True)
    auditor.groups.add(Group.objects.get(name="auditor"))
    client = Client()
    client.force_login(auditor)
    assert client.post(reverse("admin:compliance_reviewcase_decide", args=[case.pk]), {"decision": "approve", "reason": "x"}).status_code == 403
    page = client.get(reverse("admin:compliance_reviewcase_change", args=[case.pk]))
    assert page.status_code == 200 and b"approve-button" not in page.content
    case.refresh_from_db()
    assert case.status == "open"


def test_summaries_name_amount_currency_and_counterparty(flag_kind):
    case, alice, bob = held("100.13")
    summary = transaction_summaries([case.transaction])[case.transaction_id]
    assert (summary.amount, summary.currency, summary.counterparty) == (Decimal("100.13"), "USD", "Bob Receiver")
    assert summary.amount_display == "100.13 USD"
    _, payout_tx = withdraw(funded_wallet(amount="500"), "50.00", beneficiary_name="Carol Payee")
    assert transaction_summaries([payout_tx])[payout_tx.pk].counterparty == "outside (withdrawal)"  # no payout row: the money path alone


def test_queue_filters_by_rule_age_and_amount_band(flag_kind):
    import datetime as dt

    from django.utils import timezone

    small, _, _ = held("100.13")
    large, _, _ = held("2500.13")
    ReviewCase.objects.filter(pk=small.pk).update(created_at=timezone.now() - dt.timedelta(hours=30))
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:compliance_reviewcase_changelist")

    def ids(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return [c.pk for c in response.context["cl"].result_list]

    assert ids() == [small.pk, large.pk]
    assert ids(amount="0-1000") == [small.pk]
    assert ids(amount="1000-10000") == [large.pk]
    assert ids(amount="100000-") == []
    assert ids(age="gt24h") == [small.pk]
    assert ids(age="lt1h") == [large.pk]
    assert ids(age="sla") == [small.pk]
    assert ids(rule=str(flag_kind.pk)) == [small.pk, large.pk]
    page = client.get(url).content.decode()
    assert "100.13 USD" in page and "2500.13 USD" in page and "Bob Receiver" in page and "sla-late" in page and "sla-ok" in page


def test_the_admin_home_counts_open_cases(flag_kind):
    held("100.13")
    held("200.13")
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200 and page.context["open_review_cases"] == 2


def test_a_reject_without_reason_is_refused_by_the_service(flag_kind):
    case, _, _ = held("100.13")
    with pytest.raises(ValidationFailed):
        review_reject(case=case, actor=StaffUserFactory(), reason="")


def test_the_queue_reads_a_constant_number_of_queries_whatever_the_rows(flag_kind, four_eyes_at_1000):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:compliance_reviewcase_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    held("100.13")
    held("1500.13")
    two = queries()
    for amount in ("200.13", "2500.13", "300.13", "3500.13"):
        held(amount)
    assert queries() == two
