"""The compliance back office in a real browser (issue 14 items 7-11): Playwright driving Debian's
Chromium against the live server, logged in through the admin's login form. Every changed page
is asserted visible with a non-zero size (not merely in the DOM); screenshots go to
/tmp/backoffice-*.png for a human to look at.

The `seeded` fixture puts back the migrations' seed rows (assets with their issuance accounts,
fee, limit and risk rules) that a transactional test's flush removes, with the migrations' own
functions."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from compliance.models import KycChange, ReviewCase, RiskRule, SanctionsClearance, SanctionsEntry, ScreeningHit
from compliance.sanctions import sanctions_rescreen
from compliance.audit import audit_append
from tests.browser import needs_chromium, page_open
from tests.compliance.test_risk import funded_wallet, transfer
from tests.factories.accounts import DEFAULT_PASSWORD, CustomerFactory, OrganizationFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium, pytest.mark.postgres]
SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture(autouse=True)
def seeded(db):
    import importlib

    from django.apps import apps

    importlib.import_module("ledger.migrations.0003_seed_assets").seed(apps, None)
    importlib.import_module("compliance.migrations.0005_seed_defaults").seed(apps, None)


def shown(locator) -> None:
    """Visible with a non-zero box: what a person can see, not merely present in the DOM."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{locator} has no size: {box}"


def log_in(browser, live_server, user, **options):
    from playwright.sync_api import expect

    context, page, errors = page_open(browser, viewport={"width": 1400, "height": 900}, **options)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", user.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(f"{live_server.url}/admin/")
    return context, page, errors


def officer(email: str):
    return UserFactory(email=email, is_staff=True, is_superuser=True)


def test_review_queue_case_page_and_four_eyes(browser, live_server, settings, flag_kind):
    from playwright.sync_api import expect

    settings.REVIEW_FOUR_EYES_AMOUNT = "1000"
    settings.REVIEW_FOUR_EYES_AMOUNTS = {}
    bob = funded_wallet(CustomerFactory(name="Bob Receiver", kyc_level="verified"), amount="")
    small = transfer(funded_wallet(CustomerFactory(name="Alice Small", kyc_level="basic"), amount="500"), bob, "100.13")[1].review_case
    large = transfer(funded_wallet(CustomerFactory(name="Carl Large", kyc_level="verified"), amount="5000"), bob, "1500.13")[1].review_case
    ReviewCase.objects.filter(pk=small.pk).update(created_at=timezone.now() - dt.timedelta(hours=30))
    first, second = officer("first@coffer.test"), officer("second@coffer.test")

    context, page, errors = log_in(browser, live_server, first)
    tile = page.locator("#open-review-cases")
    shown(tile)
    expect(tile).to_contain_text("2 open review cases")
    expect(tile).to_contain_text("1 past the 24 h SLA")
    page.screenshot(path="/tmp/backoffice-home.png", full_page=True)

    tile.click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    late_row = rows.filter(has_text="Alice Small")
    shown(late_row.locator(".sla-late"))
    expect(late_row).to_contain_text("100.13 USD")
    expect(late_row).to_contain_text("Basic")
    expect(late_row).to_contain_text("Bob Receiver")
    expect(late_row).to_contain_text("Unlucky")
    shown(rows.filter(has_text="Carl Large").get_by_text("needed"))
    page.screenshot(path="/tmp/backoffice-review-queue.png", full_page=True)
    band = page.locator("#changelist-filter").get_by_role("link", name="1,000 to 10,000")
    shown(band)
    band.click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("1500.13 USD")

    page.goto(f"{live_server.url}/admin/compliance/reviewcase/{large.pk}/change/")
    approve = page.locator("#approve-button")
    shown(approve)
    shown(page.locator("#decision-reason"))
    shown(page.get_by_text("needs approvals by two different staff members"))
    approve.click()  # an empty reason: the browser keeps the form (required field)
    expect(page).to_have_url(f"{live_server.url}/admin/compliance/reviewcase/{large.pk}/change/")
    large.refresh_from_db()
    assert large.status == "open" and large.first_approved_by is None
    page.fill("#decision-reason", "Payslips checked")
    approve.click()
    shown(page.get_by_text("another staff member must approve it"))
    shown(page.get_by_text("First approval by first@coffer.test"))
    page.fill("#decision-reason", "Me again")
    page.locator("#approve-button").click()
    shown(page.get_by_text("needs a second approval by another staff member"))
    page.screenshot(path="/tmp/backoffice-case-first-approval.png", full_page=True)
    context.close()
    assert not errors, errors
    large.refresh_from_db()
    assert large.status == "open" and large.first_approved_by == first and large.transaction.status == "in_review"

    context, page, errors = log_in(browser, live_server, second)
    page.goto(f"{live_server.url}/admin/compliance/reviewcase/{large.pk}/change/")
    page.fill("#decision-reason", "Second look: fine")
    page.locator("#approve-button").click()
    shown(page.get_by_text(f"Case {large.pk} approved."))
    expect(page.locator("#approve-button")).to_have_count(0)  # decided: no buttons left
    page.goto(f"{live_server.url}/admin/compliance/reviewcase/{small.pk}/change/")
    page.fill("#decision-reason", "Mule pattern")
    page.locator("#reject-button").click()
    shown(page.get_by_text(f"Case {small.pk} rejected."))
    context.close()
    assert not errors, errors
    large.refresh_from_db()
    small.refresh_from_db()
    assert (large.status, large.decided_by, large.transaction.status) == ("approved", second, "completed")
    assert (small.status, small.transaction.status) == ("rejected", "rejected")


def test_kyc_change_with_reason_evidence_and_history(browser, live_server):
    from playwright.sync_api import expect

    customer = CustomerFactory(name="Dana Example", kyc_level="basic")
    context, page, errors = log_in(browser, live_server, officer("kyc@coffer.test"))
    page.goto(f"{live_server.url}/admin/accounts/customer/{customer.pk}/change/")
    shown(page.locator("#kyc-change"))
    expect(page.locator("select[name=kyc_level]")).to_have_count(0)  # the level is not a field of the change form
    page.select_option("#kyc-level", "verified")
    page.locator("#kyc-change-button").click()  # no reason: the browser keeps the form
    customer.refresh_from_db()
    assert customer.kyc_level == "basic"
    page.fill("#kyc-reason", "Passport and utility bill checked")
    page.fill("#kyc-evidence_reference", "DOC-2026-0042")
    page.locator("#kyc-change-button").click()
    shown(page.get_by_text("KYC level changed from basic to verified."))
    history = page.locator("#kyc_changes-group")
    shown(history)
    row = history.locator("tbody tr", has_text="Passport and utility bill checked")
    shown(row)
    expect(row).to_contain_text("DOC-2026-0042")
    expect(row).to_contain_text("kyc@coffer.test")
    page.screenshot(path="/tmp/backoffice-customer-kyc.png", full_page=True)
    context.close()
    assert not errors, errors
    customer.refresh_from_db()
    assert customer.kyc_level == "verified" and KycChange.objects.get(customer=customer).evidence_reference == "DOC-2026-0042"


def test_risk_rule_form_per_kind_and_its_preview(browser, live_server):
    from playwright.sync_api import expect

    RiskRule.objects.filter(kind__in=["velocity", "structuring", "new_account_large", "sanctions"]).update(active=False)
    alice, bob = funded_wallet(amount="9000"), funded_wallet(amount="")
    transfer(alice, bob, "4000.00")
    transfer(alice, bob, "20.00")
    context, page, errors = log_in(browser, live_server, officer("rules@coffer.test"))
    page.goto(f"{live_server.url}/admin/compliance/riskrule/add/")
    choice = page.get_by_role("link", name="Amount threshold")
    shown(choice)
    choice.click()
    threshold = page.locator("#id_params-threshold")
    shown(threshold)
    shown(page.get_by_text("In the moving asset's major units"))
    shown(page.locator("#id_params-movement_types"))
    page.fill("#id_name", "Large transfers")
    threshold.fill("1000")
    page.locator("#id_params-movement_types input[value=transfer]").check()
    page.locator("#rule-preview-button").click()
    result = page.locator("#rule-preview-result .preview-summary")
    shown(result)
    expect(result).to_have_text("Would have flagged 1 of 3 movements in the last 7 days.")
    shown(page.locator("#rule-preview-result li", has_text="4000.00 USD"))
    page.screenshot(path="/tmp/backoffice-risk-rule.png", full_page=True)
    threshold.fill("-3")
    page.locator("#rule-preview-button").click()
    expect(page.locator("#rule-preview-result")).to_contain_text("Cannot test: threshold")
    threshold.fill("1000")
    page.locator("input[name=_save]").click()
    row = page.locator("#result_list tbody tr", has_text="Large transfers")
    shown(row)
    expect(row).to_contain_text("threshold=1000")
    context.close()
    assert not errors, errors
    assert RiskRule.objects.get(name="Large transfers").params == {"threshold": "1000", "movement_types": ["transfer"]}


def test_sanctions_banner_import_hits_and_whitelist(browser, live_server):
    from playwright.sync_api import expect

    SanctionsEntry.objects.all().delete()
    RiskRule.objects.filter(kind="sanctions").update(active=True)
    CustomerFactory(name="Ivan Drago")
    context, page, errors = log_in(browser, live_server, officer("sanctions@coffer.test"))
    banner = page.locator("#sanctions-empty-warning")
    shown(banner)
    expect(banner).to_contain_text("sanctions list is empty")
    page.screenshot(path="/tmp/backoffice-home-sanctions-warning.png", full_page=True)
    banner.get_by_role("link", name="Import a list").click()
    shown(page.locator("#id_format"))
    page.set_input_files("#id_file", str(SAMPLES / "opensanctions_targets.simple.csv"))
    page.select_option("#id_format", "opensanctions")
    page.locator("input[type=submit][value=Import]").click()
    shown(page.get_by_text("OpenSanctions list imported (opensanctions): 3 created"))
    page.screenshot(path="/tmp/backoffice-sanctions-imported.png", full_page=True)
    sanctions_rescreen()  # the task the import enqueued, run here

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#sanctions-empty-warning")).to_have_count(0)
    hits_tile = page.locator("#open-screening-hits")
    shown(hits_tile)
    expect(hits_tile).to_contain_text("1 sanctions hit to review")
    hits_tile.click()
    row = page.locator("#result_list tbody tr", has_text="Ivan Drago")
    shown(row)
    checkbox = row.locator("input.action-select")
    shown(checkbox)
    checkbox.check()
    page.select_option("select[name=action]", "clear_hits")
    page.locator("button[name=index]").first.click()
    page.fill("#id_reason", "Different person: born 1992")
    page.locator("input[type=submit][value=Confirm]").click()
    shown(page.get_by_text("cleared as false positives"))
    page.goto(f"{live_server.url}/admin/compliance/sanctionsclearance/")
    cleared = page.locator("#result_list tbody tr", has_text="Ivan Drago")
    shown(cleared)
    expect(cleared).to_contain_text("Different person: born 1992")
    page.screenshot(path="/tmp/backoffice-whitelist.png", full_page=True)
    context.close()
    assert not errors, errors
    assert ScreeningHit.objects.get().status == "cleared" and SanctionsClearance.objects.count() == 1


def test_lists_show_what_matters(browser, live_server, flag_kind):
    from playwright.sync_api import expect

    from ledger.models import Wallet
    from payorders.models import PayOrder, PayOrderQuote
    from tests.compliance.test_sanctions_lists import _beneficiary

    RiskRule.objects.filter(kind="sanctions").update(active=False)
    alice, bob = funded_wallet(amount="500"), funded_wallet(CustomerFactory(name="Bob Receiver"), amount="")
    transfer(alice, bob, "42.50")
    _beneficiary("Grace Payee")
    audit_append(action="ledger.transaction_created", data={"api_key_id": "key_4f9c2a7d", "organization_id": 1})
    audit_append(action="outbox.dispatched")
    organization = OrganizationFactory(name="Mugshop")
    order = PayOrder.objects.create(organization=organization, type=PayOrder.Type.values[0], amount=Decimal("42.50"), currency="USD",
                                    settlement_currency="USD", expires_at=timezone.now() + dt.timedelta(hours=1))
    PayOrderQuote.objects.create(pay_order=order, source_currency="ETH", chain="ethereum", amount=Decimal("0.0125"), rate=Decimal("3400"),
                                 fee=Decimal("0"), settlement_amount=Decimal("42.50"), expires_at=timezone.now() + dt.timedelta(minutes=15))
    shards = Wallet.objects.filter(customer__isnull=True, organization__isnull=True, shard__gt=0).count()
    assert shards > 0

    context, page, errors = log_in(browser, live_server, officer("lists@coffer.test"))
    page.goto(f"{live_server.url}/admin/ledger/transaction/")
    row = page.locator("#result_list tbody tr", has_text="42.50 USD")
    shown(row.locator("td.field-amount_display"))
    expect(row).to_contain_text("Bob Receiver")
    page.screenshot(path="/tmp/backoffice-transactions.png", full_page=True)

    page.goto(f"{live_server.url}/admin/ledger/wallet/")
    hidden_count = page.locator("#result_list tbody tr").count()
    link = page.locator("#changelist-filter").get_by_role("link", name="Only shards")
    shown(link)
    link.click()
    expect(page.locator("#result_list tbody tr")).to_have_count(min(shards, 100))
    page.locator("#changelist-filter").get_by_role("link", name="Shown").click()
    expect(page).to_have_url(re.compile(r"shards=shown"))
    shown(page.locator("#result_list tbody tr").first)
    assert page.locator("#result_list tbody tr").count() > hidden_count

    page.goto(f"{live_server.url}/admin/wallets/payout/")
    # the beneficiary is shown masked (wallets.beneficiaries): "Grace Payee" -> "G**** P****"
    status = page.locator("#result_list tbody tr", has_text="G**** P****").locator("td.field-status")
    shown(status)
    box = status.bounding_box()
    assert box["x"] + box["width"] <= 1400, "the payout status is off screen"
    page.screenshot(path="/tmp/backoffice-payouts.png")

    page.goto(f"{live_server.url}/admin/payorders/payorderquote/")
    quote = page.get_by_role("link", name=f"0.0125 ETH on ethereum for order {order.pk}")
    shown(quote)
    expect(page.get_by_text("PayOrderQuote object")).to_have_count(0)

    page.goto(f"{live_server.url}/admin/compliance/auditevent/")
    api_keys = page.locator("#changelist-filter").get_by_role("link", name="API keys")
    shown(api_keys)
    api_keys.click()
    key_row = page.locator("#result_list tbody tr", has_text="API key key_4f9c2a7d")
    shown(key_row)
    expect(page.locator("#result_list tbody tr", has_text="outbox.dispatched")).to_have_count(0)
    page.locator("#changelist-filter").get_by_role("link", name="System").click()
    shown(page.locator("#result_list tbody tr", has_text="outbox.dispatched").get_by_text("system", exact=True))
    page.screenshot(path="/tmp/backoffice-audit-actors.png", full_page=True)
    context.close()
    assert not errors, errors
