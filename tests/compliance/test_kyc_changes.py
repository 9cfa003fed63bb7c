"""KYC level changes (issue 14 item 8): only through `customer_kyc_set`, with a reason and an
optional evidence reference, kept as a history and audited with before/after; the customer
admin page changes the level through it and shows the user/organization links read-only."""

import pytest
from django.test import Client
from django.urls import reverse

from compliance.backoffice import customer_kyc_set
from compliance.models import AuditEvent, KycChange
from core.errors import NotFound, ValidationFailed
from tests.factories.accounts import CustomerFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_a_change_is_recorded_with_reason_evidence_and_before_after():
    customer = CustomerFactory(kyc_level="basic")
    officer = StaffUserFactory()
    change = customer_kyc_set(customer_id=customer.pk, level="verified", reason="Passport and utility bill checked",
                              evidence_reference="DOC-2026-0042", actor=officer)
    customer.refresh_from_db()
    assert customer.kyc_level == "verified"
    assert (change.from_level, change.to_level, change.reason, change.evidence_reference, change.actor) == (
        "basic", "verified", "Passport and utility bill checked", "DOC-2026-0042", officer)
    event = AuditEvent.objects.get(action="customer.kyc_changed", target_type="accounts.customer", target_id=str(customer.pk))
    assert event.actor == officer
    assert event.data["before"] == {"kyc_level": "basic"} and event.data["after"] == {"kyc_level": "verified"}
    assert event.data["evidence_reference"] == "DOC-2026-0042" and event.data["kyc_change_id"] == change.pk


@pytest.mark.parametrize("kwargs, field", [
    ({"level": "verified", "reason": ""}, "reason"),
    ({"level": "verified", "reason": "   "}, "reason"),
    ({"level": "platinum", "reason": "upsell"}, "level"),
    ({"level": "basic", "reason": "no change"}, "level"),
])
def test_refused_changes_change_nothing(kwargs, field):
    customer = CustomerFactory(kyc_level="basic")
    with pytest.raises(ValidationFailed) as exc:
        customer_kyc_set(customer_id=customer.pk, actor=StaffUserFactory(), **kwargs)
    assert field in exc.value.details["fields"]
    customer.refresh_from_db()
    assert customer.kyc_level == "basic" and not KycChange.objects.exists()
    assert not AuditEvent.objects.filter(action="customer.kyc_changed").exists()


def test_an_unknown_customer_is_not_found():
    with pytest.raises(NotFound):
        customer_kyc_set(customer_id=987654, level="basic", reason="x", actor=StaffUserFactory())


def admin() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_customer_page_changes_the_level_through_the_service_and_shows_history():
    customer = CustomerFactory(kyc_level="none", name="Dana Example")
    client = admin()
    url = reverse("admin:accounts_customer_kyc", args=[customer.pk])
    refused = client.post(url, {"level": "basic", "reason": "", "evidence_reference": ""})
    assert refused.status_code == 200 and b"This field is required" in refused.content
    customer.refresh_from_db()
    assert customer.kyc_level == "none"

    done = client.post(url, {"level": "basic", "reason": "ID card checked", "evidence_reference": "DOC-7"})
    assert done.status_code == 302
    customer.refresh_from_db()
    assert customer.kyc_level == "basic"
    page = client.get(reverse("admin:accounts_customer_change", args=[customer.pk])).content.decode()
    assert "ID card checked" in page and "DOC-7" in page and "KYC history" in page
    # The level, the user and the organization are not editable on the change form itself.
    assert 'name="kyc_level"' not in page and 'name="user"' not in page and 'name="organization"' not in page


def test_saving_the_customer_form_does_not_change_the_level():
    customer = CustomerFactory(kyc_level="none", name="Eve")
    client = admin()
    response = client.post(reverse("admin:accounts_customer_change", args=[customer.pk]), {
        "name": "Eve Renamed", "email": "", "external_id": "", "kyc_level": "enhanced", "risk_status": "normal", "metadata": "{}",
        "kyc_changes-TOTAL_FORMS": "0", "kyc_changes-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content[:3000]
    customer.refresh_from_db()
    assert customer.name == "Eve Renamed" and customer.kyc_level == "none"
