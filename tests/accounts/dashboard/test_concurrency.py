"""Double submits from the dashboard, for real: threads on PostgreSQL posting the same form at
once. The services' row locks decide; the dashboard must turn the loser into a message, not a 500."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey, Membership, WebhookDelivery
from accounts.orgs.services import api_key_create
from compliance.models import AuditEvent
from tests.concurrency import run_in_threads
from tests.factories.dashboard import Org, failed_delivery, logged_in
from tests.factories.accounts import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
THREADS = 8


def _race(client_for, url: str) -> list[int]:
    """The status codes of THREADS clients posting to `url` at once (an exception instead of a
    status where a request raised)."""
    clients = [client_for() for _ in range(THREADS)]
    return run_in_threads(THREADS, lambda i: clients[i].post(url, follow=True).status_code, timeout=60)


def _org() -> Org:
    organization = OrganizationFactory(name="Racer")
    owner = MembershipFactory(organization=organization, role=Membership.Role.OWNER).user
    return Org(organization=organization, owner=owner)


def test_eight_simultaneous_revokes_revoke_once(db):
    org = _org()
    api_key, _ = api_key_create(organization=org.organization, name="raced", actor=org.owner)
    statuses = _race(lambda: logged_in(org.owner), f"/dashboard/api-keys/{api_key.key_id}/revoke/")
    assert statuses == [200] * THREADS  # each lands on the list, with a message
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoked", data__key_id=api_key.key_id).count() == 1
    assert ApiKey.objects.filter(organization=org.organization).count() == 1


def test_eight_simultaneous_redelivers_queue_once(db):
    org = _org()
    delivery = failed_delivery(org)
    statuses = _race(lambda: logged_in(org.owner), f"/dashboard/webhooks/deliveries/{delivery.pk}/redeliver/")
    assert statuses == [200] * THREADS
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.attempt_count == 0
    assert AuditEvent.objects.filter(action="webhook_delivery.redelivered").count() == 1
    from core.models import OutboxMessage

    assert OutboxMessage.objects.filter(topic="webhook.deliver", payload__delivery_id=str(delivery.pk)).count() == 2  # published + one redeliver


def test_eight_simultaneous_refund_confirmations_refund_once(db):
    import re

    from payorders.models import Refund
    from tests.factories.dashboard import complete_payorder

    org = _org()
    order = complete_payorder(org)
    url = f"/dashboard/pay-orders/{order.public_id}/refund/"
    review = logged_in(org.owner).post(url, {"kind": "full", "destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"})
    fields = dict(re.findall(r'<input type="hidden" name="(kind|destination_address|reason|amount|token)" value="([^"]*)">', review.content.decode()))
    assert fields.get("token")
    clients = [logged_in(org.owner) for _ in range(THREADS)]
    statuses = run_in_threads(THREADS, lambda i: clients[i].post(url, fields, follow=True).status_code, timeout=60)
    assert statuses == [200] * THREADS  # each lands on the order, with a message: none is a 500
    assert Refund.objects.filter(pay_order=order).count() == 1
    assert AuditEvent.objects.filter(action="payorder.refund_create").count() == 1
