"""Test mode is visible on every page a person sees (issue 14 item 1): the dashboard's header and
the back office's header carry a "Test mode" badge while the sandbox chain is on (the test
settings' default), and none on a live deployment; the dashboard makes test keys (sk_test_...).
Playwright driving Debian's Chromium; every badge is asserted visible with a non-zero size.
(The checkout page's badge: tests/payorders/checkout/test_page.py.)"""

from __future__ import annotations

import re

import pytest

from accounts.models import ApiKey, Membership
from tests.browser import needs_chromium, page_open
from tests.factories.accounts import (
    DEFAULT_PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


def shown(locator) -> None:
    """Visible with a non-zero box: what a person can see, not merely present in the DOM."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{locator} has no size: {box}"


def dashboard_login(browser, live_server, user):
    from playwright.sync_api import expect

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/dashboard/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    return context, page, errors


def test_dashboard_shows_test_mode_and_makes_test_keys(browser, live_server, settings, tmp_path):
    from playwright.sync_api import expect

    organization = OrganizationFactory(name="Mugshop")
    owner = MembershipFactory(organization=organization, role=Membership.Role.OWNER).user
    context, page, errors = dashboard_login(browser, live_server, owner)
    shown(page.locator(".topbar #test-mode-badge"))
    expect(page.locator("#test-mode-badge")).to_have_text("Test mode")

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="API keys").click()
    shown(page.locator("#test-mode-badge"))
    page.get_by_label("Name").fill("staging shop")
    checkbox = page.get_by_label("Test key")
    shown(checkbox)
    checkbox.check()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#secret")).to_have_value(re.compile(r"^sk_test_"))
    key = ApiKey.objects.get(organization=organization, name="staging shop")
    assert key.livemode is False
    page.goto(f"{live_server.url}/dashboard/api-keys/")
    row = page.locator("tbody tr", has_text="staging shop")
    shown(row.locator(".test-tag"))
    page.screenshot(path=tmp_path / "dashboard-test-mode.png", full_page=True)

    # a live deployment: no badge
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    page.goto(f"{live_server.url}/dashboard/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#test-mode-badge")).to_have_count(0)
    context.close()
    assert not errors, errors


def test_back_office_header_shows_test_mode(browser, live_server, settings, tmp_path):
    from playwright.sync_api import expect

    staff = UserFactory(email="officer@coffer.test", is_staff=True, is_superuser=True)
    context, page, errors = page_open(browser, viewport={"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", staff.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(f"{live_server.url}/admin/")
    badge = page.locator("#header #test-mode-badge")
    shown(badge)
    expect(badge).to_have_text("Test mode")
    page.screenshot(path=tmp_path / "admin-test-mode.png")
    page.goto(f"{live_server.url}/admin/payorders/payorder/")
    shown(page.locator("#header #test-mode-badge"))

    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#test-mode-badge")).to_have_count(0)
    context.close()
    assert not errors, errors
