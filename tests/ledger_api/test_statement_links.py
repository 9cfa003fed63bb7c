"""The merchant dashboard and the Django admin link to the same statements as the API
(`ledger.statements`): the overview's wallet rows and the admin's wallet page."""

from __future__ import annotations

import csv
import io
import re

import pytest
from pypdf import PdfReader

from tests.factories.dashboard import PLATFORM, deposit, logged_in, make_org, platform_asset, system_wallet
from tests.browser import needs_chromium, page_open
from tests.factories.accounts import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.postgres]


def _pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def merchant(db):
    for code in PLATFORM:
        platform_asset(code)
    org = make_org("Mugshop")
    wallet = system_wallet(org.organization, "USD", purpose="settlement")
    deposit(wallet, "1250.00", organization=org.organization, description="opening balance", reference="ob-1")
    return org, wallet


@pytest.mark.django_db
def test_overview_links_each_wallet_to_its_statement(merchant):
    org, wallet = merchant
    client = logged_in(org.viewer)
    page = client.get("/dashboard/").content.decode()
    assert f'href="/dashboard/wallets/{wallet.pk}/statement/?format=pdf"' in page
    assert f'href="/dashboard/wallets/{wallet.pk}/statement/?format=csv"' in page

    pdf = client.get(f"/dashboard/wallets/{wallet.pk}/statement/", {"format": "pdf"})
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = _pdf_text(pdf.content)
    assert "opening balance" in text and "ob-1" in text
    assert "Opening 0.00 + in 1250.00 - out 0.00 = closing 1250.00 USD: balanced." in text

    rows = list(csv.DictReader(io.StringIO(b"".join(client.get(f"/dashboard/wallets/{wallet.pk}/statement/", {"format": "csv"}).streaming_content).decode())))
    assert [r["row_type"] for r in rows] == ["opening", "entry", "total_in", "total_out", "closing", "check"]


@pytest.mark.django_db
def test_dashboard_statement_of_another_organizations_wallet_is_404(merchant):
    org, wallet = merchant
    other = make_org("Teashop", with_team=False)
    r = logged_in(other.owner).get(f"/dashboard/wallets/{wallet.pk}/statement/")
    assert r.status_code == 404
    r = logged_in(org.owner).get(f"/dashboard/wallets/{wallet.pk}/statement/", {"from": "2026-06-02", "to": "2026-06-01"})
    assert r.status_code == 400 and b"'from' must not be after 'to'" in r.content
    assert logged_in(org.owner).get(f"/dashboard/wallets/{wallet.pk}/statement/", {"format": "json"}).status_code == 400


@pytest.mark.django_db
def test_admin_wallet_page_links_to_the_statement(merchant, client):
    _, wallet = merchant
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get(f"/admin/ledger/wallet/{wallet.pk}/change/").content.decode()
    url = f"/admin/ledger/wallet/{wallet.pk}/statement/"
    assert f'href="{url}?format=pdf"' in page and f'href="{url}?format=csv"' in page

    text = _pdf_text(client.get(url, {"format": "pdf"}).content)
    assert "Opening 0.00 + in 1250.00 - out 0.00 = closing 1250.00 USD: balanced." in text
    rows = list(csv.DictReader(io.StringIO(b"".join(client.get(url, {"format": "csv", "from": "2020-01-01", "to": "2020-01-02"}).streaming_content).decode())))
    assert [r["row_type"] for r in rows] == ["opening", "total_in", "total_out", "closing", "check"]
    assert client.get(url, {"from": "nope"}).status_code == 400
    assert client.get("/admin/ledger/wallet/999999/statement/").status_code == 404


@pytest.mark.django_db
def test_admin_statement_needs_staff_with_view_permission(merchant, client):
    _, wallet = merchant
    url = f"/admin/ledger/wallet/{wallet.pk}/statement/"
    assert client.get(url).status_code == 302  # to the admin login
    client.force_login(UserFactory(is_staff=True))  # staff without ledger permissions
    assert client.get(url).status_code == 403


@needs_chromium
@pytest.mark.django_db(transaction=True)
def test_dashboard_statement_link_in_a_browser(browser, live_server):
    from playwright.sync_api import expect

    for code in PLATFORM:  # a transactional test's flush removed the migration's seed rows
        platform_asset(code)
    org = make_org("Mugshop", with_team=False)
    wallet = system_wallet(org.organization, "USD", purpose="settlement")
    deposit(wallet, "1250.00", organization=org.organization, description="opening balance")

    context, page, errors = page_open(browser, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(f"{live_server.url}/dashboard/login/")
    page.get_by_label("Email").fill(org.owner.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    link = page.get_by_role("link", name=f"PDF statement of wallet {wallet.pk}")
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", re.compile(rf"/dashboard/wallets/{wallet.pk}/statement/\?format=pdf$"))
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"statement-wallet-{wallet.pk}-") and download.suggested_filename.endswith(".pdf")
    with open(download.path(), "rb") as fh:
        text = _pdf_text(fh.read())
    assert "Opening 0.00 + in 1250.00 - out 0.00 = closing 1250.00 USD: balanced." in text
    expect(page.get_by_role("link", name=f"CSV statement of wallet {wallet.pk}")).to_be_visible()
    context.close()
    assert not errors, errors
