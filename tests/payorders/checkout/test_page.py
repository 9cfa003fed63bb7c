"""The hosted checkout page in a real browser: Playwright (sync API) driving Debian's Chromium at
a phone's size (390x844) against pytest-django's live server.

Paying: open /pay/<id>, choose ETH, see the address and the QR code, read the exact amount off
the page, send it on the sandbox chain, let the watcher and the confirmation task (called
directly; a worker is not the point here) move the order on, and watch the same page - never
reloaded - go to confirming and completed, then follow the merchant's redirect URL.
Expiry: the countdown runs out and the page says the request has expired.

Skipped with the reason when Chromium is missing (scripts/test-deps.sh installs it in CI).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone

from payorders import tasks
from payorders.chains.sandbox import sandbox_mine, sandbox_send
from payorders.models import PayOrder
from payorders.services.lifecycle import payorder_create
from tests.browser import needs_chromium, page_open
from tests.payorders.support import new_merchant

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]
PHONE = {"width": 390, "height": 844}  # the page polls every 2 s; each wait allows tests.browser.WAIT_MS (10 s)


def reseed() -> None:
    """A transactional test's flush empties every table, migration seeds included: put back the
    platform assets and default fee rules (both seeders are idempotent)."""
    import_module("ledger.migrations.0003_seed_assets").seed(apps, None)
    import_module("compliance.migrations.0005_seed_defaults").seed(apps, None)


@pytest.fixture
def phone(browser, live_server):
    """A fresh phone-sized browser context and page; fails the test on any script error."""
    context, page, errors = page_open(
        browser, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
        # console errors of the checkout page itself (not of the merchant's page it redirects to)
        console_from=lambda page: "/pay/" in page.url,
    )
    page.errors = errors
    yield page
    context.close()
    assert not page.errors, page.errors


@pytest.fixture
def shop(seed):
    reseed()
    return new_merchant(seed, "Mugshop")


def test_pay_with_eth_on_the_sandbox_and_watch_the_page_complete(phone, live_server, shop, tmp_path):
    from playwright.sync_api import expect

    redirect = f"{live_server.url}/health"
    order = payorder_create(
        organization=shop.organization, type="SALE", amount="42.50", currency="USD", description="Two blue mugs", redirect_url=redirect
    )
    page = phone
    page.goto(f"{live_server.url}/pay/{order.public_id}")
    expect(page.locator("#merchant-name")).to_have_text("Mugshop")
    expect(page.locator("#order-amount")).to_have_text("42.50")
    expect(page.locator("#order-currency")).to_have_text("USD")
    expect(page.locator("#order-description")).to_have_text("Two blue mugs")
    expect(page.locator("#status-title")).to_have_text("Choose how to pay")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^(29:[0-5]\d|30:00)$"))
    expect(page.locator('[data-amount-for="ETH"]')).to_have_text(re.compile(r"^0\.\d{1,18} ETH$"))  # the quotes arrived
    page.screenshot(path=tmp_path / "choose.png", full_page=True)
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

    page.locator('button[data-currency="ETH"]').click()
    expect(page.locator("#pay")).to_be_visible()
    expect(page.locator("#choose")).to_be_hidden()
    expect(page.locator("#qr svg")).to_be_visible()
    expect(page.locator("#status-title")).to_have_text("Waiting for your payment")
    address = page.locator("#pay-address").inner_text().strip()
    amount = page.locator("#pay-amount").inner_text().strip()
    order.refresh_from_db()
    assert order.status == PayOrder.Status.AWAITING_PAYMENT
    assert address == order.deposit_address.address and re.fullmatch(r"0x[0-9a-fA-F]{40}", address)
    assert Decimal(amount) == order.source_amount
    assert page.locator("#wallet-link").get_attribute("href").startswith(f"ethereum:{address}@")
    qr_box = page.locator("#qr svg").bounding_box()
    assert qr_box["width"] >= 150 and qr_box["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing overflows a phone

    # the copy button puts the exact amount on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.locator('button[data-copy="pay-amount"]').click()
    expect(page.locator('button[data-copy="pay-amount"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == amount
    page.screenshot(path=tmp_path / "awaiting.png", full_page=True)

    # pay exactly what the page says, on the sandbox chain; the watcher sees it once mined
    sandbox_send(to_address=address, amount=amount, currency="ETH")
    sandbox_mine(blocks=1)
    tasks.watch_addresses()
    tasks.poll_confirmations()  # the page may have seen it broadcast first (0 confirmations): bring it up to date
    expect(page.locator("#status-title")).to_have_text("Payment received")
    expect(page.locator("#status-detail")).to_have_text("Confirming on the Ethereum network: 1 of 3 confirmations.")
    expect(page.locator("#confirmations")).to_be_visible()
    expect(page.locator("#pay")).to_be_hidden()
    page.screenshot(path=tmp_path / "confirming.png", full_page=True)

    sandbox_mine(blocks=2)
    tasks.poll_confirmations()
    expect(page.locator("#status-title")).to_have_text("Payment complete")
    expect(page.locator("#redirect-row")).to_be_visible()
    expect(page.locator("#countdown-row")).to_be_hidden()
    assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
    shot = tmp_path / "completed.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 1000
    order.refresh_from_db()
    assert order.status == PayOrder.Status.COMPLETED

    expect(page.locator("#receipt")).to_be_visible()  # the receipt first
    page.wait_for_url(redirect, timeout=25_000)  # after a short delay, back to the merchant


def test_countdown_running_out_shows_expired(phone, live_server, shop, tmp_path):
    from playwright.sync_api import expect

    page = phone
    page.goto(f"{live_server.url}/pay/00000000-0000-4000-8000-000000000000")
    expect(page.locator("#checkout-message h1")).to_have_text("Payment request not found")
    page.errors.clear()  # the browser logs the 404 it was sent here to see

    order = payorder_create(organization=shop.organization, type="SALE", amount="10", currency="EUR")
    # the clock: a window that closes in a few seconds (the API's minimum is a minute)
    PayOrder.objects.filter(pk=order.pk).update(expires_at=timezone.now() + timedelta(seconds=8))
    page.goto(f"{live_server.url}/pay/{order.public_id}")
    page.locator('button[data-currency="BTC"]').click()
    expect(page.locator("#pay-address")).to_have_text(re.compile(r"^tb1q"))
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^0:0[0-8]$"))

    expect(page.locator("#status-title")).to_have_text("This payment request has expired")
    expect(page.locator("#pay")).to_be_hidden()
    expect(page.locator("#countdown-row")).to_be_hidden()
    shot = tmp_path / "expired.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 1000
    order.refresh_from_db()
    assert order.status == PayOrder.Status.AWAITING_PAYMENT  # the page knows; the expiry task closes it later


def shown(locator) -> None:
    """Visible with a non-zero box: what a person can see, not merely present in the DOM."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{locator} has no size: {box}"


def test_test_mode_rates_switching_coin_broadcast_payment_and_receipt(phone, live_server, shop, settings, tmp_path):
    """Issue 14 items 1-2 on a phone: the Test mode badge, a Sepolia payment link, the rate, going
    back to pick another coin, "Payment detected" as soon as the payment is broadcast (no task
    runs: the page's own poll looks at the pending transactions), then the receipt with the
    transaction linked to the explorer from settings, and back to the merchant."""
    from playwright.sync_api import expect

    settings.CHECKOUT_PENDING_SCAN_SECONDS = 1
    settings.CHAIN_EXPLORER_TEST_TX_URLS = {"bitcoin": "https://explorer.example/testnet/tx/{tx_hash}"}
    redirect = f"{live_server.url}/health"
    order = payorder_create(organization=shop.organization, type="SALE", amount="42.50", currency="USD", redirect_url=redirect)
    page = phone
    page.goto(f"{live_server.url}/pay/{order.public_id}")
    shown(page.locator("#test-mode-badge"))
    expect(page.locator("#test-mode-badge")).to_contain_text("Test mode")
    shown(page.locator('[data-rate-for="ETH"]'))
    expect(page.locator('[data-rate-for="ETH"]')).to_have_text(re.compile(r"^1 ETH = \d+\.\d{2} USD$"))

    page.locator('button[data-currency="ETH"]').click()
    shown(page.locator("#pay-rate-row"))
    expect(page.locator("#pay-price")).to_have_text("42.50 USD")
    expect(page.locator("#pay-rate")).to_have_text(re.compile(r"^1 ETH = \d+\.\d{2} USD$"))
    assert "@11155111?value=" in page.locator("#wallet-link").get_attribute("href")
    shown(page.locator("#test-mode-badge"))
    page.screenshot(path=tmp_path / "test-mode-awaiting.png", full_page=True)

    # back to the choice, and BTC instead: a testnet address
    shown(page.locator("#switch-currency"))
    page.locator("#switch-currency").click()
    shown(page.locator("#choose"))
    expect(page.locator("#pay")).to_be_hidden()
    expect(page.locator("#status-title")).to_have_text("Choose how to pay")
    expect(page.locator('[data-amount-for="BTC"]')).to_have_text(re.compile(r"^0\.\d+ BTC$"))
    page.locator('button[data-currency="BTC"]').click()
    shown(page.locator("#pay"))
    expect(page.locator("#pay-currency")).to_have_text("BTC")
    address = page.locator("#pay-address").inner_text().strip()
    amount = page.locator("#pay-amount").inner_text().strip()
    assert address.startswith("tb1q")
    assert page.locator("#wallet-link").get_attribute("href").startswith(f"bitcoin:{address}?amount=")
    order.refresh_from_db()
    assert order.source_currency == "BTC" and order.deposit_address.address == address

    # broadcast, not mined: the page notices by itself
    tx_hash = sandbox_send(to_address=address, amount=amount, currency="BTC")
    expect(page.locator("#status-title")).to_have_text("Payment detected, waiting for confirmations")
    expect(page.locator("#switch-form")).to_be_hidden()
    shown(page.locator("#receipt"))
    expect(page.locator("#receipt-payments")).to_contain_text(tx_hash)
    page.screenshot(path=tmp_path / "detected.png", full_page=True)

    sandbox_mine(blocks=2)  # the sandbox's threshold: 3 (CHAIN_CONFIRMATIONS["sandbox"])
    tasks.poll_confirmations()
    sandbox_mine(blocks=1)
    tasks.poll_confirmations()
    expect(page.locator("#status-title")).to_have_text("Payment complete")
    link = page.locator("#receipt-payments a.receipt-tx")
    shown(link)
    assert link.get_attribute("href") == f"https://explorer.example/testnet/tx/{tx_hash}"
    expect(page.locator("#receipt-paid")).to_have_text(f"{amount} BTC")
    shown(page.locator("#receipt-payments time"))
    shown(page.locator("#redirect-row"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=tmp_path / "receipt.png", full_page=True)
    page.wait_for_url(redirect, timeout=25_000)
