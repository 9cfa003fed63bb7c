"""The whole pay-order flow on the sandbox chain through the HTTP API, webhooks and ledger."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import WebhookDelivery
from compliance.audit import audit_verify
from core.models import OutboxMessage
from core.outbox import outbox_dispatch, outbox_sweep
from ledger.checks import ledger_check
from ledger.models import Asset, Wallet
from ledger.selectors import platform_account_balance
from payorders import tasks
from payorders.models import PayOrder
from payorders.services.settlement import payorder_settle
from tests.factories.orgs import receiver  # noqa: F401 - fixture
from tests.payorders.support import API, history, merchant, mine, order_row, reseed, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def reseeded(transactional_db):
    reseed()  # the flush of a transactional test removed the migration seeds


@pytest.mark.django_db(transaction=True)  # the outbox dispatcher runs outside any transaction
def test_sale_paid_on_sandbox_confirms_settles_and_notifies(reseeded, merchant, receiver):  # noqa: F811
    receiver.secret = merchant.subscribe(receiver.url)
    order = merchant.create(customer_external_id=None, description="Order #1001", metadata={"cart": "1001"}, redirect_url="https://shop.example.com/thanks")
    assert order["status"] == "PENDING"
    assert order["checkout_url"].endswith(f"/pay/{order['id']}")
    assert order["amount"] == "100.00" and order["settlement_currency"] == "USD"

    quotes = merchant.post(order["id"], "quote").json()["quotes"]
    assert [q["source_currency"] for q in quotes] == ["BTC", "ETH", "USDC"]
    eth = next(q for q in quotes if q["source_currency"] == "ETH")
    # 100 USD at the sandbox bid for ETH (3200 * (1 - 0.25%)), rounded UP to 8 decimals
    assert Decimal(eth["amount"]) * Decimal(eth["rate"]) >= Decimal("100")
    assert Decimal(eth["amount"]) == (Decimal("100") / Decimal("3192")).quantize(Decimal("1e-8"), rounding="ROUND_CEILING")
    assert eth["chain"] == "ethereum" and Decimal(eth["fee"]) > 0

    details = merchant.post(order["id"], "payment-details", {"quote_id": eth["quote_id"]}).json()
    assert details["amount"] == eth["amount"] and details["source_currency"] == "ETH"
    assert details["deposit_address"].startswith("0x") and details["payment_uri"].startswith(f"ethereum:{details['deposit_address']}@")
    again = merchant.post(order["id"], "payment-details", {"quote_id": eth["quote_id"]})
    assert again.status_code == 200 and again.json()["deposit_address"] == details["deposit_address"]
    assert order_row(order["id"]).status == PayOrder.Status.AWAITING_PAYMENT

    tx_hash = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    processed = merchant.post(order["id"], "process", {"tx_hash": tx_hash})
    assert processed.status_code == 200, processed.json()
    assert processed.json()["status"] == "AWAITING_CONFIRMATION"
    assert processed.json()["payments"][0]["tx_hash"] == tx_hash
    assert merchant.post(order["id"], "process", {"tx_hash": tx_hash}).status_code == 200  # retry: same answer

    mine(merchant.client, 1)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == PayOrder.Status.AWAITING_CONFIRMATION  # 1 of 3
    mine(merchant.client, 2)
    tasks.poll_confirmations()
    row = order_row(order["id"])
    assert row.status == PayOrder.Status.COMPLETED and row.completed_at is not None
    assert row.payments.get().status == "confirmed"

    # the completing transaction kicked the settlement through the outbox
    kick = OutboxMessage.objects.get(topic="payorder.settle", payload__order_id=row.pk)
    assert outbox_dispatch(message_id=kick.pk) == "dispatched"
    assert outbox_dispatch(message_id=kick.pk) == "skipped"
    payorder_settle(order_id=row.pk)  # again: nothing more
    row = order_row(order["id"])
    usd = Asset.objects.get(code="USD", organization__isnull=True)
    wallet = Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset=usd)
    assert wallet.balance == Decimal("99.00")
    assert platform_account_balance(usd, "fee") == Decimal("1.00")
    assert row.settlement_transaction.reference == f"payorder:{row.public_id}:settlement"
    assert row.settlement_transaction.entries.count() == 4

    detail = merchant.get(order["id"]).json()
    assert detail["settlement"] == {
        "transaction_id": row.settlement_transaction_id, "currency": "USD", "gross": "100.00", "fee": "1.00", "net": "99.00",
        "settled_at": detail["settlement"]["settled_at"],
    }
    assert [(h["from_status"], h["to_status"]) for h in detail["status_history"]] == [
        ("", "PENDING"), ("PENDING", "AWAITING_PAYMENT"), ("AWAITING_PAYMENT", "AWAITING_CONFIRMATION"), ("AWAITING_CONFIRMATION", "COMPLETED"),
    ]
    assert all(h["cause"] and h["at"] for h in detail["status_history"])

    events = list(WebhookDelivery.objects.filter(organization=merchant.organization).order_by("created_at").values_list("event_type", flat=True))
    assert events == ["payorder.created", "payorder.awaiting_payment", "payorder.awaiting_confirmation", "payorder.completed"]
    outbox_sweep(now=timezone.now() + timedelta(seconds=16), time_budget=20)
    verified = [r.payload["type"] for r in receiver.received if r.verified]
    assert "payorder.completed" in verified
    completed = next(r.payload for r in receiver.received if r.payload and r.payload["type"] == "payorder.completed")
    assert completed["data"]["id"] == order["id"] and completed["data"]["status"] == "COMPLETED"

    assert ledger_check() == []
    assert audit_verify()["valid"]
    from compliance.models import AuditEvent

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"payorder.create", "payorder.await_payment", "payorder.await_confirmation", "payorder.complete", "payorder.settle"} <= actions


def test_created_with_the_compatibility_signature(merchant):
    from rest_framework.test import APIClient

    from tests.factories.orgs import compat_header

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=compat_header(merchant.key.key_id, merchant.key.secret))
    response = client.post(API, {"type": "DEPOSIT", "amount": 25, "currency": "EUR", "settlement_currency": "USD"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["type"] == "DEPOSIT" and response.json()["amount"] == "25.00"
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION=compat_header(merchant.key.key_id, merchant.key.secret, timestamp=int(timezone.now().timestamp()) - 900))
    assert stale.post(API, {"type": "SALE", "amount": "1", "currency": "USD"}, format="json").status_code == 401
    assert PayOrder.objects.count() == 1
