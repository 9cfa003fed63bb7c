"""The dashboard as someone who works in it all day sees it, in Debian's Chromium (Playwright):
net figures, cancel and refund, safe defaults for new orders, and the layout fixes. Every
assertion about a page is about what is visible (a bounding box, not only a DOM node).
Screenshots go to /tmp/dashboard-work-*.png for a human to look at.

Skipped with the reason when Chromium is missing (scripts/test-deps.sh installs it in CI).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from payorders.models import PayOrder, Refund
from tests.factories.dashboard import PLATFORM, complete_payorder, create_payorder, failed_delivery, make_org, platform_asset
from tests.browser import needs_chromium, page_open
from tests.factories.accounts import DEFAULT_PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]
PAYER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"
PHONE = {"viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def _login(page, live_server, user):
    page.goto(f"{live_server.url}/dashboard/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard/")


def _box(locator) -> dict:
    """The element's box on screen; fails when it is not rendered or has no area."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, box
    return box


def _inside(inner: dict, outer: dict, slack: float = 0.5) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def _no_sideways_scroll(page) -> None:
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


@pytest.fixture
def shop(db):
    from compliance.models import FeeRule

    for code in PLATFORM:  # a transactional test's flush removed the migration's seed rows
        platform_asset(code)
    FeeRule.objects.get_or_create(movement_type="settlement", destination_type="", currency="", defaults={"percent": Decimal("1")})
    return make_org("Mug Shop")


def test_net_figures_on_the_overview_the_list_and_the_order(browser, live_server, shop):
    from playwright.sync_api import expect

    order = complete_payorder(shop, amount="40.00")
    net = order.settlement_amount - order.settlement_fee
    assert order.settlement_fee > 0  # gross, fee and net are three different figures
    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.owner)

    kpis = page.get_by_test_id("kpis")
    for label in ("Volume", "Fees", "Net", "Payouts", "Open orders"):
        _box(kpis.get_by_text(label, exact=True))
    expect(page.get_by_test_id("kpi-net")).to_have_text(f"{net:.2f} USD")
    _box(page.get_by_test_id("kpi-net"))
    # A bar's value on click (a phone taps): the readout under the chart shows the net of the day.
    bar = page.locator("svg.chart rect.bar[tabindex]").first
    _box(bar)
    bar.click()
    readout = page.locator(".chart-readout").first
    expect(readout).to_have_text(re.compile(rf"\d{{4}}-\d\d-\d\d: {net:.2f} USD"))
    _box(readout)
    page.screenshot(path="/tmp/dashboard-work-overview.png", full_page=True)

    page.goto(f"{live_server.url}/dashboard/pay-orders/")
    cell = page.locator("tbody tr").first.locator('td[data-label="Net to you"]')
    expect(cell).to_contain_text(f"{net:.2f} USD")
    _box(cell)

    page.goto(f"{live_server.url}/dashboard/pay-orders/{order.public_id}/")
    panel = page.get_by_test_id("order-net")
    for text in (f"{order.settlement_amount:.2f} USD", f"{order.settlement_fee:.2f} USD", f"{net:.2f} USD"):
        _box(panel.get_by_text(text, exact=True))
    # Amounts at the asset's exponent without trailing zeros: no 18-decimal ETH anywhere on the page.
    assert not re.search(r"\d\.\d*0{6,}\b", page.locator("main").inner_text())
    expect(page.locator(".timeline")).to_contain_text(f"paid {order.amount_received.normalize():f} of")
    page.screenshot(path="/tmp/dashboard-work-order.png", full_page=True)
    context.close()
    assert not errors, errors


def test_refund_a_completed_order_reviewed_and_confirmed(browser, live_server, shop):
    from playwright.sync_api import expect

    order = complete_payorder(shop, amount="40.00")
    received = f"{order.amount_received.normalize():f}"
    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.developer)
    page.goto(f"{live_server.url}/dashboard/pay-orders/{order.public_id}/")
    _box(page.get_by_role("link", name="Refund…")).get("width")
    page.get_by_role("link", name="Refund…").click()
    _box(page.get_by_label(re.compile(f"Everything received: {received} ETH")))
    page.get_by_label("Refund address").fill(PAYER.lower())
    page.get_by_label("Reason").fill("mugs came back")
    page.get_by_role("button", name="Review the refund").click()

    review = page.get_by_test_id("refund-review")
    expect(page.get_by_test_id("refund-amount")).to_have_text(f"{received} ETH")
    expect(page.get_by_test_id("refund-address")).to_have_text(PAYER)  # checksummed: what will really be used
    _box(page.get_by_test_id("refund-amount"))
    confirm = review.get_by_role("button", name=f"Refund {received} ETH")
    _box(confirm)
    page.screenshot(path="/tmp/dashboard-work-refund-review.png", full_page=True)
    confirm.dblclick()  # a double submit
    expect(page).to_have_url(f"{live_server.url}/dashboard/pay-orders/{order.public_id}/")
    expect(page.locator(".status").first).to_have_text("Refunded")
    _box(page.get_by_role("heading", name="Refunds"))
    assert Refund.objects.filter(pay_order=order).count() == 1
    expect(page.get_by_role("link", name="Refund…")).to_have_count(0)
    context.close()
    assert not errors, errors


def test_cancel_a_pending_order(browser, live_server, shop):
    from playwright.sync_api import expect

    order = create_payorder(shop, description="Left in the cart")
    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.owner)
    page.goto(f"{live_server.url}/dashboard/pay-orders/{order.public_id}/")
    page.get_by_role("link", name="Cancel order…").click()
    page.get_by_label("Reason").fill("customer left")
    button = page.get_by_role("button", name="Yes, cancel this order")
    _box(button)
    button.click()
    expect(page.get_by_text("Pay order cancelled")).to_be_visible()
    _box(page.get_by_text("cancelled: customer left").first)
    order.refresh_from_db()
    assert order.status == PayOrder.Status.FAILED
    context.close()
    assert not errors, errors


def test_new_order_defaults_to_the_settlement_currency_and_confirms_a_large_crypto_price(browser, live_server, shop):
    from playwright.sync_api import expect

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.owner)
    page.goto(f"{live_server.url}/dashboard/pay-orders/new/")
    currency = page.get_by_label("Currency", exact=True)
    expect(currency).to_have_value("USD")  # not BTC, the first in the alphabet
    _box(currency)
    page.get_by_label("Amount").fill("42.50")
    currency.select_option("BTC")
    page.get_by_role("button", name="Create pay order").click()
    dialog = page.get_by_test_id("confirm-crypto-price")
    expect(dialog).to_contain_text("42.50 BTC")
    _box(dialog)
    assert not PayOrder.objects.exists()
    page.screenshot(path="/tmp/dashboard-work-confirm-price.png", full_page=True)
    dialog.get_by_role("button", name="Yes, create it in BTC").click()
    expect(page.get_by_text("Pay order created")).to_be_visible()
    assert PayOrder.objects.get().currency == "BTC"
    context.close()
    assert not errors, errors


def test_webhook_checkboxes_and_row_buttons_are_drawn_where_they_belong(browser, live_server, shop):
    failed_delivery(shop)
    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.owner)
    for viewport in ({"width": 1280, "height": 900}, {"width": 375, "height": 812}):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server.url}/dashboard/webhooks/new/")
        card = _box(page.locator("section.panel.form-panel"))
        for event in ("payorder.awaiting_confirmation", "payorder.deposit_addresses_constrained"):
            box = _box(page.get_by_label(event, exact=True))
            assert box["width"] >= 10, (event, viewport, box)  # a real checkbox, not 0 px
            label = _box(page.locator("label", has=page.get_by_label(event, exact=True)))
            assert _inside(label, card), (event, viewport, label, card)
        page.get_by_label("payorder.awaiting_confirmation", exact=True).check()
        assert page.get_by_label("payorder.awaiting_confirmation", exact=True).is_checked()
        page.screenshot(path=f"/tmp/dashboard-work-webhook-form-{viewport['width']}.png", full_page=True)

        for path in ("/dashboard/webhooks/", "/dashboard/webhooks/deliveries/"):
            page.goto(f"{live_server.url}{path}")
            row = page.locator("tbody tr").first
            row_box = _box(row)
            button = _box(row.locator("td.actions .button").first)
            assert _inside(button, row_box), (path, viewport, button, row_box)  # inside the row's borders
            assert page.evaluate("getComputedStyle(document.querySelector('tbody td.actions')).display") == (
                "table-cell" if viewport["width"] > 720 else "block")
    context.close()
    assert not errors, errors


def test_a_phone_never_scrolls_sideways_and_reads_chart_values_by_tapping(browser, live_server, shop):
    from playwright.sync_api import expect

    order = complete_payorder(shop, amount="40.00")
    context, page, errors = page_open(browser, **PHONE)
    _login(page, live_server, shop.owner)
    nav = page.get_by_role("navigation", name="Dashboard")
    nav_box = _box(nav)
    for link in ("Overview", "Pay orders", "Transactions", "Webhooks", "API keys", "Organizations"):
        box = _box(nav.get_by_role("link", name=link))
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (link, box)  # every tab on screen: it wraps
        assert _inside(box, nav_box)
    for path in ("", "pay-orders/", f"pay-orders/{order.public_id}/", f"pay-orders/{order.public_id}/refund/", "pay-orders/new/",
                 "transactions/", "webhooks/", "webhooks/new/", "webhooks/deliveries/", "api-keys/", "organizations/"):
        page.goto(f"{live_server.url}/dashboard/{path}")
        _box(page.locator("h1").first)
        _no_sideways_scroll(page)
    page.goto(f"{live_server.url}/dashboard/")
    bar = page.locator("svg.chart rect.bar[tabindex]").first
    bar.tap()
    expect(page.locator(".chart-readout").first).to_contain_text(f"{order.settlement_amount - order.settlement_fee:.2f} USD")
    page.locator(".chart-values summary").first.tap()
    _box(page.locator(".chart-values li").first)
    page.screenshot(path="/tmp/dashboard-work-phone.png", full_page=True)
    context.close()
    assert not errors, errors


def test_an_owner_makes_a_new_api_key_and_sees_its_secret_once(browser, live_server, shop):
    from playwright.sync_api import expect

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900})
    _login(page, live_server, shop.owner)
    page.goto(f"{live_server.url}/dashboard/api-keys/")
    page.get_by_label("Name").fill("shop backend")
    scope = page.locator('input[name="scopes"]').first
    assert _box(scope)["width"] >= 10
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret")
    expect(secret).to_have_value(re.compile(r".{20,}"))
    _box(secret)
    context.close()
    assert not errors, errors
