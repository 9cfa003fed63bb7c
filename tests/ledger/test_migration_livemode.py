"""The livemode migrations (accounts 0010, ledger 0013, wallets 0006, payorders 0005) on a copy
with history: existing rows take the deployment's mode when the migration runs (core.livemode:
what a sandbox deployment stored is test mode for good; a live deployment's rows are live), and
pay orders stored before 0004 on a sandbox deployment become test mode."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from tests.migrations import latest_migrations as _latest, migrate_to as _migrate

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = [("accounts", "0009_apikey_livemode"), ("ledger", "0012_archived_months"), ("wallets", "0005_schedule_beneficiary_encrypted"),
          ("payorders", "0004_payorder_livemode")]
AFTER = [("accounts", "0010_customer_webhookendpoint_livemode"), ("ledger", "0013_livemode"), ("wallets", "0006_schedule_livemode"),
         ("payorders", "0005_sandbox_orders_test_mode")]


def _history(apps) -> dict:
    """Rows written with the models as they were before the migrations."""
    Organization, Customer, WebhookEndpoint = (apps.get_model("accounts", m) for m in ("Organization", "Customer", "WebhookEndpoint"))
    Asset, Wallet, Transaction = (apps.get_model("ledger", m) for m in ("Asset", "Wallet", "Transaction"))
    PayOrder = apps.get_model("payorders", "PayOrder")
    org = Organization.objects.create(name="Old", slug="old-modes")
    customer = Customer.objects.create(organization=org, external_id="old-1")
    usd, _ = Asset.objects.get_or_create(code="USD", organization=None, defaults={"name": "US Dollar", "exponent": 2, "kind": "fiat"})
    wallet = Wallet.objects.create(asset=usd, kind="customer", customer=customer)
    platform = Wallet.objects.create(asset=usd, kind="system", purpose="fee", shard=0, label="platform fee #0")
    tx = Transaction.objects.create(type="ledger", status="completed", organization=org, reference="old-ref")
    endpoint = WebhookEndpoint.objects.create(organization=org, url="https://example.com/hook", events=["*"], secret_encrypted="x")
    order = PayOrder.objects.create(organization=org, type="SALE", amount=Decimal("10"), currency="USD", settlement_currency="USD",
                                    expires_at=timezone.now(), livemode=True)
    return {"customer": customer.pk, "wallet": wallet.pk, "platform": platform.pk, "tx": tx.pk, "endpoint": endpoint.pk,
            "order": order.pk, "org": org.pk, "usd": usd.pk}


@pytest.mark.parametrize(("provider", "expected"), [("evm", True), ("sandbox", False)])
def test_existing_rows_take_the_deployments_mode(settings, provider, expected):
    try:
        old = _history(_migrate(BEFORE))
        settings.CHAIN_PROVIDER = provider
        apps = _migrate(AFTER)
        get = lambda app, model, key: apps.get_model(app, model).objects.get(pk=old[key])  # noqa: E731
        assert get("accounts", "Customer", "customer").livemode is expected
        assert get("accounts", "WebhookEndpoint", "endpoint").livemode is expected
        assert get("ledger", "Wallet", "wallet").livemode is expected
        assert get("ledger", "Wallet", "platform").livemode is expected
        assert get("ledger", "Transaction", "tx").livemode is expected
        assert get("payorders", "PayOrder", "order").livemode is expected  # a sandbox's old orders are test mode

        # the new constraints are per mode: the other mode may reuse an external id, a reference, a platform shard
        Customer, Wallet, Transaction = apps.get_model("accounts", "Customer"), apps.get_model("ledger", "Wallet"), apps.get_model("ledger", "Transaction")
        Customer.objects.create(organization_id=old["org"], external_id="old-1", livemode=not expected)
        Transaction.objects.create(type="ledger", status="completed", organization_id=old["org"], reference="old-ref", livemode=not expected)
        Wallet.objects.create(asset_id=old["usd"], kind="system", purpose="fee", shard=0, label="platform fee #0", livemode=not expected)
        assert Customer.objects.filter(external_id="old-1").count() == 2
    finally:
        settings.CHAIN_PROVIDER = "sandbox"
        _migrate(_latest())
