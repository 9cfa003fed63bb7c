"""Risk rules as forms (issue 14 item 9): each kind's fields validate and become the params
`compliance.risk` reads; the admin saves through them; the preview counts how many movements of
the last 7 days a rule, saved or not, would have flagged."""

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from compliance.models import RiskRule
from compliance.rule_forms import AmountThresholdForm, SanctionsForm, StructuringForm, VelocityForm, risk_rule_preview
from tests.compliance.test_risk import backdate, funded_wallet, transfer
from tests.factories.accounts import CustomerFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_velocity_form_turns_fields_into_params():
    form = VelocityForm({"max_count": "20", "window_minutes": "5"})
    assert form.is_valid() and form.to_params() == {"max_count": 20, "window_minutes": 5}


@pytest.mark.parametrize("form_class, data, field", [
    (VelocityForm, {"max_count": "0", "window_minutes": "10"}, "max_count"),
    (VelocityForm, {"max_count": "x", "window_minutes": "10"}, "max_count"),
    (StructuringForm, {"min_count": "3", "window_hours": "24", "band_percent": "90"}, "band_percent"),
    (AmountThresholdForm, {"threshold": "0"}, "threshold"),
    (AmountThresholdForm, {"threshold": "100", "currency": "XYZ"}, "currency"),
    (AmountThresholdForm, {"threshold": "100", "movement_types": ["teleport"]}, "movement_types"),
    (SanctionsForm, {"threshold": "30"}, "threshold"),
])
def test_invalid_settings_are_refused_with_the_field_named(form_class, data, field):
    form = form_class(data)
    assert not form.is_valid() and field in form.errors


def test_amount_threshold_params_keep_decimals_as_strings():
    form = AmountThresholdForm({"threshold": "2500.50", "currency": "usd", "movement_types": ["withdrawal", "transfer"], "direction": "outgoing"})
    assert form.is_valid(), form.errors
    assert form.to_params() == {"threshold": "2500.50", "currency": "USD", "movement_types": ["withdrawal", "transfer"], "direction": "outgoing"}


def admin() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_admin_adds_a_rule_from_its_kind_form_and_refuses_bad_settings():
    client = admin()
    url = reverse("admin:compliance_riskrule_add") + "?kind=amount_threshold"
    assert b'name="params-threshold"' in client.get(url).content
    bad = client.post(url, {"name": "Big", "kind": "amount_threshold", "params-threshold": "-5", "action": "review", "active": "on"})
    assert bad.status_code == 200 and b"Correct the rule" in bad.content and not RiskRule.objects.filter(name="Big").exists()
    good = client.post(url, {"name": "Big", "kind": "amount_threshold", "params-threshold": "2500", "params-currency": "USD",
                             "params-movement_types": ["withdrawal"], "action": "review", "active": "on"})
    assert good.status_code == 302, good.content[:3000]
    rule = RiskRule.objects.get(name="Big")
    assert rule.kind == "amount_threshold" and rule.params == {"threshold": "2500", "currency": "USD", "movement_types": ["withdrawal"]}


def test_the_active_column_saves_without_touching_params():
    rule = RiskRule.objects.get(kind="velocity")
    params = dict(rule.params)
    client = admin()
    rules = list(RiskRule.objects.order_by("id"))
    data = {"form-TOTAL_FORMS": str(len(rules)), "form-INITIAL_FORMS": str(len(rules)), "_save": "Save"}
    for i, r in enumerate(rules):
        data[f"form-{i}-id"] = str(r.pk)
        if r.active and r.pk != rule.pk:
            data[f"form-{i}-active"] = "on"
    assert client.post(reverse("admin:compliance_riskrule_changelist"), data).status_code == 302
    rule.refresh_from_db()
    assert rule.active is False and rule.params == params


def test_preview_counts_the_movements_a_rule_would_have_flagged():
    alice = funded_wallet(CustomerFactory(kyc_level="verified"), amount="50000")
    bob = funded_wallet(amount="")
    RiskRule.objects.filter(kind__in=["velocity", "structuring", "new_account_large", "sanctions"]).update(active=False)
    for amount in ("100.00", "3000.00", "7000.00"):
        transfer(alice, bob, amount)
    _, old = transfer(alice, bob, "9000.00")
    backdate(old, dt.timedelta(days=8))  # outside the 7 days

    rule = RiskRule(name="preview", kind="amount_threshold", params={"threshold": "2500"}, action="review")
    preview = risk_rule_preview(rule=rule)
    # The opening deposit and three transfers are in the window (the 9000.00 one is not); the
    # rule has no direction or type, so the 50000.00 deposit counts like the two large transfers.
    assert (preview.scanned, preview.flagged) == (4, 3)
    assert {e["amount"] for e in preview.examples} == {"50000.00 USD", "3000.00 USD", "7000.00 USD"}
    outgoing = risk_rule_preview(rule=RiskRule(kind="amount_threshold", params={"threshold": "2500", "direction": "outgoing"}))
    assert outgoing.flagged == 2
    assert RiskRule.objects.filter(name="preview").count() == 0  # nothing saved

    none = risk_rule_preview(rule=RiskRule(kind="amount_threshold", params={"threshold": "100000"}))
    assert none.flagged == 0


def test_the_preview_endpoint_answers_counts_or_field_errors():
    alice = funded_wallet(amount="9000")
    bob = funded_wallet(amount="")
    RiskRule.objects.filter(kind__in=["velocity", "structuring", "new_account_large", "sanctions"]).update(active=False)
    transfer(alice, bob, "4000.00")
    client = admin()
    url = reverse("admin:compliance_riskrule_preview")
    ok = client.post(url, {"kind": "amount_threshold", "params-threshold": "1000", "name": "x", "action": "review"})
    assert ok.status_code == 200 and ok.json()["valid"] is True and (ok.json()["scanned"], ok.json()["flagged"]) == (2, 2)  # the 9000 deposit and the 4000 transfer
    only_transfers = client.post(url, {"kind": "amount_threshold", "params-threshold": "1000", "params-movement_types": ["transfer"]})
    assert only_transfers.json()["flagged"] == 1 and only_transfers.json()["examples"][0]["amount"] == "4000.00 USD"
    bad = client.post(url, {"kind": "amount_threshold", "params-threshold": "nope"})
    assert bad.status_code == 200 and bad.json()["valid"] is False and "threshold" in bad.json()["errors"]
    unknown = client.post(url, {"kind": "no_such_kind"})
    assert unknown.json() == {"valid": False, "errors": {"kind": ["Unknown rule kind 'no_such_kind'."]}}
    assert client.get(url).status_code == 403
