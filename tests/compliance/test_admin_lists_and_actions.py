"""Lists that show what matters and admin actions on record (issue 14 item 11): every admin
action appends an `admin.action` audit event with its actor; the audit list names API-key and
system actors and filters by them; ledger transactions show amount and currency; platform
shard wallets are hidden unless asked for; payout status is a leading column; quotes are named
by their content. PostgreSQL."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compliance.admin import audit_actor_display
from compliance.models import AuditEvent
from compliance.audit import audit_append, audit_record
from core.models import OutboxMessage
from ledger.models import Asset, Wallet
from ledger.services import wallet_open
from tests.compliance.test_risk import funded_wallet, transfer
from tests.factories.accounts import CustomerFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def staff():
    return UserFactory(is_staff=True, is_superuser=True, email="officer@coffer.test")


@pytest.fixture
def client(staff):
    client = Client()
    client.force_login(staff)
    return client


def test_a_wallet_action_is_audited_with_its_actor_and_objects(client, staff):
    wallet = wallet_open(asset=Asset.objects.get(code="USD", organization__isnull=True), customer=CustomerFactory())
    response = client.post(reverse("admin:ledger_wallet_changelist"), {"action": "suspend_wallets", "_selected_action": [wallet.pk]})
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.status == "suspended"
    event = AuditEvent.objects.get(action="admin.action")
    assert event.actor == staff and event.target_type == "ledger.wallet" and event.target_id == str(wallet.pk)
    assert event.data == {"action": "suspend_wallets", "object_ids": [str(wallet.pk)], "count": 1}


def test_the_outbox_retry_action_is_audited(client, staff):
    message = OutboxMessage.objects.create(topic="test.topic", payload={}, status=OutboxMessage.Status.DEAD, dead_at=timezone.now(), next_attempt_at=timezone.now())
    assert client.post(reverse("admin:core_outboxmessage_changelist"), {"action": "retry_now", "_selected_action": [message.pk]}).status_code == 302
    event = AuditEvent.objects.get(action="admin.action")
    assert (event.actor, event.target_type, event.data["action"]) == (staff, "core.outboxmessage", "retry_now")


def test_an_intermediate_page_is_not_an_action_until_submitted(client, staff, flag_kind):
    case = transfer(funded_wallet(amount="500"), funded_wallet(amount=""), "100.13")[1].review_case
    url = reverse("admin:compliance_reviewcase_changelist")
    page = client.post(url, {"action": "reject_cases", "_selected_action": [case.pk]})
    assert page.status_code == 200 and not AuditEvent.objects.filter(action="admin.action").exists()
    client.post(url, {"action": "reject_cases", "_selected_action": [case.pk], "apply": "1", "reason": "Mule account"})
    event = AuditEvent.objects.get(action="admin.action")
    assert event.actor == staff and event.data["action"] == "reject_cases" and event.data["object_ids"] == [str(case.pk)]
    assert AuditEvent.objects.filter(action="review.rejected", actor=staff).count() == 1


def test_the_audit_list_names_and_filters_user_api_key_and_system_actors(client, staff):
    by_user = audit_record(actor=staff, action="test.by_user")
    by_key = audit_append(action="test.by_key", data={"api_key_id": "key_abc123", "organization_id": 1})
    by_system = audit_append(action="test.by_system")
    assert audit_actor_display(by_user) == "officer@coffer.test"
    assert audit_actor_display(by_key) == "API key key_abc123"
    assert audit_actor_display(by_system) == "system"

    url = reverse("admin:compliance_auditevent_changelist")

    def actions(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return {e.action for e in response.context["cl"].result_list} & {"test.by_user", "test.by_key", "test.by_system"}

    assert actions() == {"test.by_user", "test.by_key", "test.by_system"}
    assert actions(actor_kind="staff") == {"test.by_user"}
    assert actions(actor_kind="api_key") == {"test.by_key"}
    assert actions(actor_kind="system") == {"test.by_system"}
    page = client.get(url).content.decode()
    assert "API key key_abc123" in page and ">system<" in page


def test_ledger_transactions_show_amount_and_currency(client, flag_kind):
    alice, bob = funded_wallet(amount="500"), funded_wallet(CustomerFactory(name="Bob Receiver"), amount="")
    transfer(alice, bob, "42.50")
    page = client.get(reverse("admin:ledger_transaction_changelist")).content.decode()
    assert "42.50 USD" in page and "500.00 USD" in page and "Bob Receiver" in page


def test_platform_shard_wallets_are_hidden_unless_asked_for(client):
    from ledger.posting import PlatformAccount, Transfer, ledger_post

    wallet = funded_wallet(amount="100")
    ledger_post(type="fee", operations=[Transfer(source=wallet, destination=PlatformAccount("fee"), amount=Decimal("1"))]).raise_for_error()
    shards = Wallet.objects.filter(customer__isnull=True, organization__isnull=True, shard__gt=0)
    assert shards.exists()
    url = reverse("admin:ledger_wallet_changelist")

    def listed(**params):
        return {w.pk for w in client.get(url, params).context["cl"].result_list}

    default = listed()
    assert wallet.pk in default and not default & set(shards.values_list("pk", flat=True))
    shown = client.get(url, {"shards": "shown"}).context["cl"]
    assert shown.result_count > client.get(url).context["cl"].result_count
    only = client.get(url, {"shards": "only"}).context["cl"]
    assert only.result_count == shards.count()


def test_payout_status_leads_and_quotes_are_named_by_content():
    from payorders.models import PayOrderQuote
    from wallets.admin import PayoutAdmin

    assert PayoutAdmin.list_display[:3] == ["id", "status", "amount"]
    quote = PayOrderQuote(pay_order_id=7, source_currency="ETH", chain="ethereum", amount=Decimal("0.031328330000000000"),
                          rate=Decimal("1"), fee=Decimal("0"), settlement_amount=Decimal("1"), expires_at=timezone.now())
    assert str(quote) == "0.03132833 ETH on ethereum for order 7"
