"""The dashboard in a real browser: Playwright (sync API) driving Debian's Chromium against
pytest-django's live server. Log in through the form, create a pay order, find it in the list,
open its detail page; the overview fits a phone's width. A screenshot of the overview goes to
/tmp/dashboard.png for a human to look at.

Skipped with the reason when Chromium is missing (scripts/test-deps.sh installs it in CI).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from accounts.models import Membership
from payorders.models import PayOrder
from tests.browser import needs_chromium, page_open
from tests.factories.dashboard import PLATFORM, deposit, platform_asset, system_wallet
from tests.factories.accounts import DEFAULT_PASSWORD, MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]
SCREENSHOT = "/tmp/dashboard.png"


def test_log_in_create_a_pay_order_find_it_and_open_it(browser, live_server):
    from playwright.sync_api import expect

    for code in PLATFORM:  # a transactional test's flush removed the migration's seed rows
        platform_asset(code)
    organization = OrganizationFactory(name="Mugshop")
    owner = MembershipFactory(organization=organization, role=Membership.Role.OWNER).user
    settlement = system_wallet(organization, "USD", purpose="settlement")
    deposit(settlement, "1250.00", organization=organization, description="opening balance")
    deposit(system_wallet(organization, "EUR"), "310.45", organization=organization)

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/login/\?next=/dashboard/$"))
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("svg.chart rect.bar").first).to_be_attached()
    expect(page.get_by_text("1250.00").first).to_be_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Pay orders").click()
    page.get_by_role("link", name="New pay order").click()
    page.get_by_label("Amount").fill("42.50")
    page.get_by_label("Currency", exact=True).select_option("USD")
    page.get_by_label("Description").fill("Two blue mugs")
    page.get_by_role("button", name="Create pay order").click()

    expect(page.get_by_text("Pay order created")).to_be_visible()
    order = PayOrder.objects.get(organization=organization)
    assert order.amount == Decimal("42.50") and order.description == "Two blue mugs"
    expect(page.locator("#checkout-url")).to_have_value(re.compile(rf"/pay/{order.public_id}$"))

    page.get_by_role("link", name="Pay orders").first.click()
    row = page.locator("tbody tr", has_text="Two blue mugs")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("42.50 USD")
    expect(row).to_contain_text("Pending")
    row.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/pay-orders/{order.public_id}/")
    expect(page.locator(".timeline li")).to_have_count(1)
    expect(page.locator(".timeline")).to_contain_text("created")
    page.screenshot(path="/tmp/dashboard-payorder.png", full_page=True)
    context.close()
    assert not errors, errors


def test_the_overview_fits_a_phone(browser, live_server):
    from playwright.sync_api import expect

    for code in PLATFORM:
        platform_asset(code)
    organization = OrganizationFactory(name="Pocket")
    owner = MembershipFactory(organization=organization, role=Membership.Role.OWNER).user
    deposit(system_wallet(organization, "ETH", purpose="settlement"), "0.123456789012345678", organization=organization)

    context, page, errors = page_open(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(f"{live_server.url}/dashboard/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for path in ("/dashboard/", "/dashboard/transactions/", "/dashboard/pay-orders/"):
        page.goto(f"{live_server.url}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
    page.goto(f"{live_server.url}/dashboard/")
    page.screenshot(path="/tmp/dashboard-phone.png", full_page=True)
    context.close()
    assert not errors, errors
