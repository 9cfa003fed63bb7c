"""The actions the API has, from the dashboard: cancel a pending order, refund a completed or
overpaid one (reviewed, then confirmed once per form token through the API's idempotency layer),
with the API's role checks (a viewer gets the 403 page, another organization's order a 404)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from compliance.models import AuditEvent
from core.models import IdempotencyRecord
from payorders.models import PayOrder, Refund
from tests.factories.dashboard import complete_payorder, create_payorder, failed_delivery, logged_in

pytestmark = pytest.mark.django_db

PAYER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"


def _token(response) -> str:
    match = re.search(r'name="token" value="([0-9a-f]+)"', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def _review(client, order, **changes):
    data = {"kind": "full", "destination_address": PAYER, "reason": "returned the mugs", **changes}
    return client.post(f"/dashboard/pay-orders/{order.public_id}/refund/", data)


def _confirm(client, order, review, **changes):
    body = review.content.decode()
    fields = dict(re.findall(r'<input type="hidden" name="(kind|destination_address|reason|amount|token)" value="([^"]*)">', body))
    return client.post(f"/dashboard/pay-orders/{order.public_id}/refund/", {**fields, **changes})


# --- Cancel ------------------------------------------------------------------------------------------


def test_a_developer_cancels_a_pending_order_with_a_reason(alpha, developer_client, assets):
    order = create_payorder(alpha, description="Blue mug")
    detail = developer_client.get(f"/dashboard/pay-orders/{order.public_id}/").content.decode()
    assert f"/dashboard/pay-orders/{order.public_id}/cancel/" in detail
    page = developer_client.get(f"/dashboard/pay-orders/{order.public_id}/cancel/")
    assert page.status_code == 200 and b"Yes, cancel this order" in page.content
    response = developer_client.post(f"/dashboard/pay-orders/{order.public_id}/cancel/", {"reason": "customer left"})
    assert response.status_code == 302 and response["Location"] == f"/dashboard/pay-orders/{order.public_id}/"
    order.refresh_from_db()
    assert order.status == PayOrder.Status.FAILED and order.failure_reason == "cancelled: customer left"
    assert order.status_changes.filter(to_status="FAILED", actor=alpha.developer).exists()
    after = developer_client.get(response["Location"]).content.decode()
    assert "Pay order cancelled" in after and "/cancel/" not in after  # no second cancel offered
    # A second cancel is the service's 409, shown as a message; nothing changes.
    again = developer_client.post(f"/dashboard/pay-orders/{order.public_id}/cancel/", {"reason": "twice"})
    assert again.status_code == 302
    order.refresh_from_db()
    assert order.failure_reason == "cancelled: customer left"


def test_an_order_that_received_money_is_not_cancelled(alpha, owner_client, assets):
    order = complete_payorder(alpha)
    page = owner_client.get(f"/dashboard/pay-orders/{order.public_id}/cancel/")
    assert b"cannot be cancelled" in page.content and b"Yes, cancel" not in page.content
    owner_client.post(f"/dashboard/pay-orders/{order.public_id}/cancel/", {"reason": "x"})
    order.refresh_from_db()
    assert order.status == PayOrder.Status.COMPLETED


# --- Refund ------------------------------------------------------------------------------------------


def test_refund_is_reviewed_then_made_once_even_when_submitted_twice(alpha, developer_client, assets):
    order = complete_payorder(alpha, amount="40.00")
    detail = developer_client.get(f"/dashboard/pay-orders/{order.public_id}/").content.decode()
    assert f"/dashboard/pay-orders/{order.public_id}/refund/" in detail
    form = developer_client.get(f"/dashboard/pay-orders/{order.public_id}/refund/")
    shown = f"{order.amount_received.normalize():f}"
    assert form.status_code == 200 and shown in form.content.decode()

    review = _review(developer_client, order, destination_address=PAYER.lower())
    assert review.status_code == 200
    body = review.content.decode()
    assert "Check the refund" in body and PAYER in body  # the address in its checksummed form
    assert f"Refund {shown} ETH" in body
    assert not Refund.objects.exists()  # reviewing moves nothing

    first = _confirm(developer_client, order, review)
    second = _confirm(developer_client, order, review)  # the double submit: same token
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/dashboard/pay-orders/{order.public_id}/"
    assert second["Idempotency-Replayed"] == "true"
    [refund] = Refund.objects.filter(pay_order=order)
    assert refund.amount == order.amount_received and refund.destination_address == PAYER and refund.kind == "full"
    order.refresh_from_db()
    assert order.status == PayOrder.Status.REFUNDED
    assert AuditEvent.objects.filter(action="payorder.refund_create", actor=alpha.developer).count() == 1
    # The API's idempotency records, in the organization's scope and the API's endpoint name.
    [record] = IdempotencyRecord.objects.filter(endpoint="payorders.refund")
    assert record.scope == f"org:{alpha.organization.pk}" and record.key == _token(review)
    after = developer_client.get(first["Location"]).content.decode()
    assert "happened once" in after and "/refund/" not in after.split("<main", 1)[1].split("Refunds", 1)[0]


def test_refund_refuses_a_bad_address_and_a_stale_review(alpha, owner_client, assets):
    order = complete_payorder(alpha)
    bad = _review(owner_client, order, destination_address="0x123")
    assert bad.status_code == 400 and "invalid address" in bad.content.decode()
    review = _review(owner_client, order)
    stale = _confirm(owner_client, order, review, amount="0.000000000000000001")  # not what is left to refund
    assert stale.status_code == 409 and "has changed since you reviewed it" in stale.content.decode()
    assert 'name="token"' not in stale.content.decode()  # a new attempt gets a new token
    assert not Refund.objects.exists()


def test_a_tampered_or_reused_token_is_a_4xx_never_a_500(alpha, owner_client, assets):
    order = complete_payorder(alpha)
    review = _review(owner_client, order)
    malformed = _confirm(owner_client, order, review, token="é" * 3)
    assert malformed.status_code == 400 and "idempotency key" in malformed.content.decode()
    # The same token with another address: the API's 422 IDEMPOTENCY_KEY_REUSED, nothing refunded twice.
    assert _confirm(owner_client, order, review).status_code == 302
    reused = _confirm(owner_client, order, review, destination_address="0x52908400098527886E0F7030069857D2E4169EE7")
    assert reused.status_code == 422
    assert Refund.objects.filter(pay_order=order).count() == 1


def test_an_overpaid_order_refunds_only_its_excess(alpha, owner_client, assets):
    from payorders.chains.sandbox import sandbox_mine, sandbox_send
    from payorders.services.payments import payorder_refresh_confirmations, payorder_scan

    order = complete_payorder(alpha)
    sandbox_send(to_address=order.deposit_address.address, amount=Decimal("0.001"), currency="ETH")
    sandbox_mine(blocks=3)
    payorder_scan(order_id=order.pk)
    payorder_refresh_confirmations(order_id=order.pk)
    order.refresh_from_db()
    assert order.refund_due == Decimal("0.001")
    form = owner_client.get(f"/dashboard/pay-orders/{order.public_id}/refund/").content.decode()
    assert "Only the overpaid excess: 0.001 ETH" in form
    review = _review(owner_client, order, kind="excess")
    assert "Refund 0.001 ETH" in review.content.decode()
    assert _confirm(owner_client, order, review).status_code == 302
    [refund] = Refund.objects.all()
    assert refund.kind == "excess" and refund.amount == Decimal("0.001")
    order.refresh_from_db()
    assert order.status == PayOrder.Status.COMPLETED and order.refund_due == 0


# --- Roles: the API's, exactly ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "developer", "viewer"])
def test_dashboard_actions_allow_exactly_the_roles_the_api_allows(alpha, assets, role):
    user = getattr(alpha, role)
    api = APIClient()
    api.force_authenticate(user)
    header = {"HTTP_X_ORGANIZATION": alpha.organization.slug}
    dashboard = logged_in(user)

    api_order, dash_order = create_payorder(alpha), create_payorder(alpha)
    api_cancel = api.post(f"/api/v1/pay-orders/{api_order.public_id}/cancel", {"reason": "r"}, format="json", **header)
    dash_cancel = dashboard.post(f"/dashboard/pay-orders/{dash_order.public_id}/cancel/", {"reason": "r"})
    api_allowed = api_cancel.status_code == 200
    assert api_allowed == (role != "viewer") and api_cancel.status_code in (200, 403)
    assert dash_cancel.status_code == (302 if api_allowed else 403)
    dash_order.refresh_from_db()
    assert (dash_order.status == PayOrder.Status.FAILED) == api_allowed

    # Refund: a pending order has nothing to refund, so an allowed role gets past the role check
    # to the state check (API 409, dashboard back to the order), a refused one is stopped before.
    pending = create_payorder(alpha)
    api_refund = api.post(f"/api/v1/pay-orders/{pending.public_id}/refund", {"destination_address": PAYER}, format="json",
                          HTTP_IDEMPOTENCY_KEY=f"k-{role}", **header)
    dash_refund = dashboard.post(f"/dashboard/pay-orders/{pending.public_id}/refund/", {"kind": "full", "destination_address": PAYER})
    assert api_refund.status_code == (409 if api_allowed else 403)
    assert dash_refund.status_code == (302 if api_allowed else 403)

    # Redeliver a webhook.
    api_delivery, dash_delivery = failed_delivery(alpha, url="http://127.0.0.1:9/a"), failed_delivery(alpha, url="http://127.0.0.1:9/b")
    api_redeliver = api.post(f"/api/v1/webhook-deliveries/{api_delivery.pk}/redeliver", **header)
    dash_redeliver = dashboard.post(f"/dashboard/webhooks/deliveries/{dash_delivery.pk}/redeliver/")
    assert api_redeliver.status_code == (202 if api_allowed else 403)
    assert dash_redeliver.status_code == (302 if api_allowed else 403)
    dash_delivery.refresh_from_db()
    assert (dash_delivery.status == "pending") == api_allowed
    if not api_allowed:
        assert b"Viewers can look" in dash_refund.content
        assert dashboard.get(f"/dashboard/pay-orders/{pending.public_id}/refund/").status_code == 403
        assert dashboard.get(f"/dashboard/pay-orders/{pending.public_id}/cancel/").status_code == 403
        assert b"/cancel/" not in dashboard.get(f"/dashboard/pay-orders/{pending.public_id}/").content


def test_a_viewer_cannot_refund_and_nothing_moves(alpha, viewer_client, assets):
    order = complete_payorder(alpha)
    response = viewer_client.post(f"/dashboard/pay-orders/{order.public_id}/refund/",
                                  {"kind": "full", "destination_address": PAYER, "amount": f"{order.amount_received:f}", "token": "abc"})
    assert response.status_code == 403
    assert not Refund.objects.exists() and not IdempotencyRecord.objects.exists()


def test_another_organizations_order_is_a_404_for_every_action(alpha, beta, owner_client, assets):
    theirs = complete_payorder(beta, account=9)
    pending = create_payorder(beta)
    for url in (f"/dashboard/pay-orders/{theirs.public_id}/refund/", f"/dashboard/pay-orders/{pending.public_id}/cancel/"):
        assert owner_client.get(url).status_code == 404
    assert owner_client.post(f"/dashboard/pay-orders/{pending.public_id}/cancel/", {"reason": "x"}).status_code == 404
    assert owner_client.post(f"/dashboard/pay-orders/{theirs.public_id}/refund/",
                             {"kind": "full", "destination_address": PAYER, "amount": f"{theirs.amount_received:f}", "token": "t"}).status_code == 404
    pending.refresh_from_db()
    assert pending.status == PayOrder.Status.PENDING and not Refund.objects.exists()
