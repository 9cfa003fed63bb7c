"""Writers of webhook endpoints, and redelivery (the engine itself: publish.py, deliver.py).

Invariants:
- The only writers of WebhookEndpoint rows; every change is audited in its transaction.
- An endpoint's URL is checked by the SSRF guard when it is created and when it is enabled again
  (and before every attempt, in deliver.py); its signing secret is returned once, by
  `webhook_endpoint_create`, and otherwise kept encrypted.
- Deleting an endpoint keeps its row and history and fails its pending deliveries.
- A redelivery keeps the delivery's id (the `webhook-id`), so a receiver can deduplicate.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.crypto import encrypt_secret
from accounts.models import Organization, WebhookDelivery, WebhookEndpoint
from accounts.orgs.services import actor_user, audit, principal_audit_data
from accounts.webhooks.publish import new_webhook_secret, normalize_event_patterns, webhook_delivery_queue
from accounts.webhooks.url_guard import webhook_url_check
from core.errors import InvalidState, NotFound


@transaction.atomic
def webhook_endpoint_create(*, organization: Organization, url: str, events: list[str], description: str = "", actor=None) -> tuple[WebhookEndpoint, str]:
    webhook_url_check(url)
    patterns = normalize_event_patterns(events)
    secret = new_webhook_secret()
    endpoint = WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        events=patterns,
        description=description,
        secret_encrypted=encrypt_secret(secret),
        created_by=actor_user(actor),
    )
    audit(
        actor=actor_user(actor),
        action="webhook_endpoint.created",
        target=endpoint,
        data={"url": url, "events": patterns, **principal_audit_data(actor)},
    )
    return endpoint, secret


def _endpoint_for_update(organization: Organization, endpoint_id: int) -> WebhookEndpoint:
    endpoint = (
        WebhookEndpoint.objects.select_for_update()
        .filter(organization=organization, pk=endpoint_id, deleted_at__isnull=True)
        .first()
    )
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


@transaction.atomic
def webhook_endpoint_disable(*, organization: Organization, endpoint_id: int, actor=None) -> WebhookEndpoint:
    endpoint = _endpoint_for_update(organization, endpoint_id)
    if endpoint.is_enabled:
        endpoint.is_enabled = False
        endpoint.disabled_at = timezone.now()
        endpoint.save(update_fields=["is_enabled", "disabled_at", "updated_at"])
        audit(actor=actor_user(actor), action="webhook_endpoint.disabled", target=endpoint, data=principal_audit_data(actor))
    return endpoint


@transaction.atomic
def webhook_endpoint_enable(*, organization: Organization, endpoint_id: int, actor=None) -> WebhookEndpoint:
    endpoint = _endpoint_for_update(organization, endpoint_id)
    if not endpoint.is_enabled:
        webhook_url_check(endpoint.url)
        endpoint.is_enabled = True
        endpoint.disabled_at = None
        endpoint.save(update_fields=["is_enabled", "disabled_at", "updated_at"])
        audit(actor=actor_user(actor), action="webhook_endpoint.enabled", target=endpoint, data=principal_audit_data(actor))
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, organization: Organization, endpoint_id: int, actor=None) -> None:
    """Hides the endpoint for good; its deliveries stay as history and pending ones stop."""
    endpoint = _endpoint_for_update(organization, endpoint_id)
    now = timezone.now()
    endpoint.is_enabled = False
    endpoint.deleted_at = now
    endpoint.disabled_at = endpoint.disabled_at or now
    endpoint.save(update_fields=["is_enabled", "deleted_at", "disabled_at", "updated_at"])
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error="endpoint deleted", updated_at=now
    )
    audit(actor=actor_user(actor), action="webhook_endpoint.deleted", target=endpoint, data=principal_audit_data(actor))


@transaction.atomic
def webhook_delivery_redeliver(*, organization: Organization, delivery_id, actor=None) -> WebhookDelivery:
    """Queue one more round of attempts for a delivered or failed event (same webhook-id, so the
    receiver can deduplicate)."""
    delivery = (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .filter(organization=organization, pk=delivery_id)
        .first()
    )
    if delivery is None:
        raise NotFound("No such webhook delivery.")
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None or not endpoint.is_enabled:
        raise InvalidState("The delivery's endpoint is disabled or deleted.")
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise InvalidState("This delivery is already pending.")
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.attempt_count = 0
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempt_count", "next_attempt_at", "updated_at"])
    audit(actor=actor_user(actor), action="webhook_delivery.redelivered", target=delivery, data={"event_id": delivery.event_id, **principal_audit_data(actor)})
    webhook_delivery_queue(delivery)
    return delivery
