"""Fixtures for the merchant dashboard: two organizations (Alpha with an owner, a developer and a
viewer; Beta with its own owner), logged-in Django test clients per role, and helpers that make
data through the real services (pay orders, ledger postings, webhook deliveries)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import transaction
from django.test import Client

from accounts.models import Membership, Organization, User
from ledger.models import Asset, Wallet
from tests.factories.accounts import MembershipFactory, OrganizationFactory
from tests.factories.ledger import SEEDED, SystemWalletFactory, platform_asset
from tests.factories.ledger import deposit as ledger_deposit
from tests.factories.payorders import PayOrderFactory

PLATFORM = {code: SEEDED[code] for code in ("USD", "EUR", "ETH", "BTC", "USDC")}


@dataclass
class Org:
    organization: Organization
    owner: User
    developer: User | None = None
    viewer: User | None = None


def make_org(name: str, *, with_team: bool = True) -> Org:
    organization = OrganizationFactory(name=name)
    owner = MembershipFactory(organization=organization, role=Membership.Role.OWNER).user
    org = Org(organization=organization, owner=owner)
    if with_team:
        org.developer = MembershipFactory(organization=organization, role=Membership.Role.DEVELOPER).user
        org.viewer = MembershipFactory(organization=organization, role=Membership.Role.VIEWER).user
    return org


def logged_in(user: User, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


def system_wallet(organization: Organization, code: str, *, purpose: str = "", label: str = "") -> Wallet:
    for c in PLATFORM:
        platform_asset(c)
    return SystemWalletFactory(asset=platform_asset(code), organization=organization, purpose=purpose, label=label)


def deposit(wallet: Wallet, amount: str, *, organization: Organization, description: str = "", reference: str = ""):
    """An issue into `wallet` posted by the organization through the ledger service."""
    with transaction.atomic():
        return ledger_deposit(wallet, amount, organization=organization, description=description, reference=reference)


def create_payorder(org: Org, **overrides):
    for c in PLATFORM:
        platform_asset(c)
    return PayOrderFactory(organization=org.organization, actor=org.owner, **overrides)


@pytest.fixture
def alpha(db) -> Org:
    return make_org("Alpha Shop")


@pytest.fixture
def beta(db) -> Org:
    return make_org("Beta Store", with_team=False)


@pytest.fixture
def owner_client(alpha) -> Client:
    return logged_in(alpha.owner)


@pytest.fixture
def developer_client(alpha) -> Client:
    return logged_in(alpha.developer)


@pytest.fixture
def viewer_client(alpha) -> Client:
    return logged_in(alpha.viewer)


@pytest.fixture
def assets(db) -> dict[str, Asset]:
    return {code: platform_asset(code) for code in PLATFORM}



def publish(organization: Organization, event_type: str = "payorder.created", payload: dict | None = None):
    from accounts.webhooks import webhook_publish

    with transaction.atomic():
        return webhook_publish(organization=organization, event_type=event_type, payload=payload or {"id": "evt"})


def failed_delivery(org: Org, url: str = "http://127.0.0.1:9/coffer-hook"):
    """A delivery that really failed: its endpoint was disabled (which cancels its pending
    deliveries; the engine then has nothing to send), then the endpoint was enabled again, so a
    redeliver is allowed."""
    from accounts.webhooks.services import webhook_endpoint_create, webhook_endpoint_disable, webhook_endpoint_enable
    from accounts.webhooks import WEBHOOK_TOPIC
    from accounts.webhooks.deliver import webhook_deliver
    from core.models import OutboxMessage

    # Subscribed to one event only, so other tests' events do not reach it.
    endpoint, _ = webhook_endpoint_create(organization=org.organization, url=url, events=["wallet.closed"], actor=org.owner)
    [delivery] = [d for d in publish(org.organization, "wallet.closed", {"id": "w"}) if d.endpoint_id == endpoint.pk]
    webhook_endpoint_disable(organization=org.organization, endpoint_id=endpoint.pk, actor=org.owner)
    message = OutboxMessage.objects.filter(topic=WEBHOOK_TOPIC, payload__delivery_id=str(delivery.pk)).latest("id")
    assert webhook_deliver(message) is None  # the outbox handler: the delivery was cancelled, nothing to send
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error == "endpoint disabled"
    webhook_endpoint_enable(organization=org.organization, endpoint_id=endpoint.pk, actor=org.owner)
    return delivery


def complete_payorder(org: Org, *, amount: str = "40.00", currency: str = "USD", account: int = 7):
    """A pay order driven through the real flow on the sandbox chain: quote in ETH, payment
    details (an address from the organization's xpub), payment sent and mined, watcher, three
    confirmations -> COMPLETED, then settled into the organization's settlement wallet."""
    from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

    from payorders.chains.sandbox import sandbox_mine, sandbox_send
    from payorders.models import XpubKey
    from payorders.services.addresses import xpub_key_register
    from payorders.services.payments import payorder_refresh_confirmations, payorder_scan
    from payorders.services.quotes import payorder_quote, payorder_select_quote
    from payorders.services.settlement import payorder_settle

    if not XpubKey.objects.filter(organization=org.organization, chain="ethereum", is_active=True).exists():
        seed = Bip39SeedGenerator(" ".join(["abandon"] * 11 + ["about"])).Generate()
        xpub = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account).PublicKey().ToExtended()
        xpub_key_register(organization=org.organization, chain="ethereum", xpub=xpub)
    order = create_payorder(org, amount=amount, currency=currency)
    [quote] = payorder_quote(organization=org.organization, public_id=order.public_id, source_currencies=["ETH"])
    order = payorder_select_quote(organization=org.organization, public_id=order.public_id, quote_id=quote.public_id)
    sandbox_send(to_address=order.deposit_address.address, amount=order.source_amount, currency="ETH")
    sandbox_mine(blocks=3)
    payorder_scan(order_id=order.pk)
    payorder_refresh_confirmations(order_id=order.pk)
    payorder_settle(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == "COMPLETED" and order.settled_at is not None
    return order
