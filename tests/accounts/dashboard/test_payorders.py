"""Pay orders in the dashboard: the create form (through payorder_create), the list with its
filters and pages, and the detail page with its status timeline."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from payorders.models import PayOrder
from payorders.services.lifecycle import payorder_cancel
from tests.factories.dashboard import create_payorder

pytestmark = pytest.mark.django_db

FORM = {"type": "SALE", "amount": "1234.50", "currency": "USD", "settlement_currency": "", "description": "Blue mug",
        "customer_external_id": "", "redirect_url": "", "expires_in_minutes": "45"}


def test_create_form_makes_an_order_and_shows_its_checkout_url(alpha, developer_client, assets):
    page = developer_client.get("/dashboard/pay-orders/new/")
    assert page.status_code == 200 and b'name="amount"' in page.content
    response = developer_client.post("/dashboard/pay-orders/new/", FORM)
    assert response.status_code == 302
    order = PayOrder.objects.get(organization=alpha.organization)
    assert response["Location"] == f"/dashboard/pay-orders/{order.public_id}/"
    assert order.amount == Decimal("1234.50") and order.currency == "USD" and order.settlement_currency == "USD"
    assert order.status == PayOrder.Status.PENDING and order.description == "Blue mug"
    assert dt.timedelta(minutes=44) < order.expires_at - timezone.now() <= dt.timedelta(minutes=45)
    assert AuditEvent.objects.filter(action="payorder.create", actor=alpha.developer).exists()
    detail = developer_client.get(response["Location"])
    body = detail.content.decode()
    assert f"/pay/{order.public_id}" in body
    assert "1234.50 USD" in body
    assert "Pay order created" in body  # the message after the redirect
    assert re.search(r'class="timeline".*PENDING.*created', body, re.S)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"amount": "10.001"}, "amount", "decimal"),
        ({"amount": "0"}, "amount", ""),
        ({"amount": "-5"}, "amount", ""),
        ({"amount": "1e3"}, "amount", ""),
        ({"amount": "abc"}, "amount", ""),
        ({"currency": "XYZ"}, "currency", "valid choice"),
        ({"customer_external_id": "nobody"}, "customer_external_id", "No customer"),
        ({"expires_in_minutes": "0"}, "expires_in_minutes", ""),
        ({"redirect_url": "not a url"}, "redirect_url", "valid URL"),
    ],
)
def test_create_form_refuses_bad_input_and_creates_nothing(alpha, owner_client, assets, changes, field, message):
    response = owner_client.post("/dashboard/pay-orders/new/", {**FORM, **changes})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert not PayOrder.objects.exists()


def test_list_filters_and_pages(alpha, beta, owner_client, assets):
    for i in range(27):
        create_payorder(alpha, amount=f"{i + 1}.00", description=f"sale {i}")
    deposit = create_payorder(alpha, type="DEPOSIT", amount="0.5", currency="ETH", description="top-up")
    cancelled = create_payorder(alpha, description="to cancel")
    payorder_cancel(organization=alpha.organization, public_id=cancelled.public_id, actor=alpha.owner, reason="customer left")
    create_payorder(beta, description="other org")

    first = owner_client.get("/dashboard/pay-orders/")
    assert first.status_code == 200
    assert len(first.context["rows"]) == 25
    assert first.context["page"].paginator.count == 29
    assert b"other org" not in first.content
    second = owner_client.get("/dashboard/pay-orders/?page=2")
    assert len(second.context["rows"]) == 4

    by_type = owner_client.get("/dashboard/pay-orders/?type=DEPOSIT")
    assert [r["order"].pk for r in by_type.context["rows"]] == [deposit.pk]
    body = by_type.content.decode()
    assert "0.50 ETH" in body and "0.500000000000000000" not in body  # exact, without 16 trailing zeros

    by_status = owner_client.get("/dashboard/pay-orders/?status=FAILED")
    assert [r["order"].pk for r in by_status.context["rows"]] == [cancelled.pk]

    today = timezone.now().date()
    assert owner_client.get(f"/dashboard/pay-orders/?date_from={today}&date_to={today}").context["page"].paginator.count == 29
    assert owner_client.get(f"/dashboard/pay-orders/?date_to={today - dt.timedelta(days=1)}").context["page"].paginator.count == 0
    assert owner_client.get(f"/dashboard/pay-orders/?date_from={today + dt.timedelta(days=1)}").context["page"].paginator.count == 0

    # Filters survive paging (the pagination links keep the query).
    paged = owner_client.get("/dashboard/pay-orders/?type=SALE")
    assert "type=SALE&amp;page=2" in paged.content.decode()


def test_list_refuses_malformed_filters(alpha, owner_client, assets):
    create_payorder(alpha)
    for query in ("status=NOPE", "date_from=2026-02-30", "date_from=2026-05-02&date_to=2026-05-01"):
        response = owner_client.get(f"/dashboard/pay-orders/?{query}")
        assert response.status_code == 200
        assert response.context["form"].errors, query
        assert response.context["rows"] == []


def test_detail_shows_the_timeline_in_order(alpha, owner_client, assets):
    order = create_payorder(alpha, amount="99.99")
    payorder_cancel(organization=alpha.organization, public_id=order.public_id, actor=alpha.owner, reason="duplicate")
    response = owner_client.get(f"/dashboard/pay-orders/{order.public_id}/")
    assert response.status_code == 200
    timeline = response.context["timeline"]
    assert [(c.from_status, c.to_status) for c in timeline] == [("", "PENDING"), ("PENDING", "FAILED")]
    body = response.content.decode()
    assert "99.99 USD" in body
    timeline_html = body[body.index('class="timeline"'):]
    assert timeline_html.index("created") < timeline_html.index("duplicate")
    assert alpha.owner.email in timeline_html


def test_the_price_currency_defaults_to_the_organizations_settlement_currency(alpha, owner_client, assets):
    page = owner_client.get("/dashboard/pay-orders/new/")
    form = page.context["form"]
    assert form["currency"].value() == "USD" and form["settlement_currency"].value() == "USD"
    assert re.search(r'<option value="USD" selected>USD</option>', page.content.decode())
    alpha.organization.settlement_currency = "EUR"
    alpha.organization.save()
    assert owner_client.get("/dashboard/pay-orders/new/").context["form"]["currency"].value() == "EUR"


def test_a_large_crypto_price_is_confirmed_first(alpha, owner_client, assets, settings):
    settings.DASHBOARD_CRYPTO_PRICE_CONFIRM_ABOVE = Decimal("100")
    typo = {**FORM, "amount": "42.50", "currency": "BTC"}
    asked = owner_client.post("/dashboard/pay-orders/new/", typo)
    assert asked.status_code == 200 and not PayOrder.objects.exists()
    body = asked.content.decode()
    assert "Price this order in BTC?" in body
    assert "2762500.00 USD" in body  # 42.50 BTC at the sandbox's 65000 USD
    # Confirming a different amount than the one asked about asks again.
    assert "Price this order" in owner_client.post("/dashboard/pay-orders/new/", {**typo, "amount": "43", "confirm_price": "42.50 BTC"}).content.decode()
    assert not PayOrder.objects.exists()
    created = owner_client.post("/dashboard/pay-orders/new/", {**typo, "confirm_price": "42.50 BTC"})
    assert created.status_code == 302
    assert PayOrder.objects.get().amount == Decimal("42.50")
    # Below the threshold (0.001 BTC = 65 USD), and any fiat price, are created at once.
    assert owner_client.post("/dashboard/pay-orders/new/", {**FORM, "amount": "0.001", "currency": "BTC"}).status_code == 302
    assert owner_client.post("/dashboard/pay-orders/new/", {**FORM, "amount": "99999.00", "currency": "EUR"}).status_code == 302
    assert PayOrder.objects.count() == 3
