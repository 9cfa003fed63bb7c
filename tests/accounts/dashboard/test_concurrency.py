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
