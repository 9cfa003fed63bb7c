"""Writers of webhook endpoints, and redelivery (the engine itself: publish.py, deliver.py).

Invariants:
- The only writers of WebhookEndpoint rows; every change is audited in its transaction.
- An endpoint's URL is checked by the SSRF guard when it is created and when it is enabled again
  (and before every attempt, in deliver.py); its signing secret is returned once, by
  `webhook_endpoint_create`, and otherwise kept encrypted.
- Deleting an endpoint keeps its row and history and fails its pending deliveries.
- A redelivery keeps the delivery's id (the `webhook-id`), so a receiver can deduplicate; one
  past retention (WEBHOOK_DELIVERY_RETENTION_DAYS) is refused, its month being on its way out.
- Disabling (by the organization, or by the engine when the receiver answers 410 Gone) records
  when and why on the endpoint and fails its pending deliveries at once (they are not sent when
  it is enabled again; redeliver them). A 410 also e-mails the organization's owners, through
  the outbox (topic `accounts.webhook.endpoint_disabled`). Enabling clears when and why.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.crypto import encrypt_secret
from accounts.models import Membership, Organization, WebhookDelivery, WebhookEndpoint
from accounts.orgs.services import actor_user, audit, principal_audit_data
from accounts.webhooks.publish import new_webhook_secret, normalize_event_patterns, webhook_delivery_queue
from accounts.webhooks.retention import retention_cutoff
from accounts.webhooks.url_guard import webhook_url_check
from core.livemode import principal_livemode
from core.errors import InvalidState, NotFound
from core.models import OutboxMessage
from core.outbox import outbox_emit

ENDPOINT_DISABLED_TOPIC = "accounts.webhook.endpoint_disabled"


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
        livemode=principal_livemode(actor),  # a test key's endpoint gets the test-mode events (core.livemode)
    )
    audit(
        actor=actor_user(actor),
        action="webhook_endpoint.created",
        target=endpoint,
        data={"url": url, "events": patterns, "livemode": endpoint.livemode, **principal_audit_data(actor)},
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


def _fail_pending_deliveries(endpoint: WebhookEndpoint, reason: str, now: datetime) -> int:
    return WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error=reason, updated_at=now
    )


def _disable(endpoint: WebhookEndpoint, *, reason: str, detail: str, now: datetime) -> int:
    endpoint.is_enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = reason
    endpoint.disabled_detail = detail[:500]
    endpoint.save(update_fields=["is_enabled", "disabled_at", "disabled_reason", "disabled_detail", "updated_at"])
    return _fail_pending_deliveries(endpoint, "endpoint disabled", now)


@transaction.atomic
def webhook_endpoint_disable(*, organization: Organization, endpoint_id: int, actor=None) -> WebhookEndpoint:
    endpoint = _endpoint_for_update(organization, endpoint_id)
    if endpoint.is_enabled:
        cancelled = _disable(endpoint, reason=WebhookEndpoint.DisabledReason.ORGANIZATION, detail="Disabled by the organization.", now=timezone.now())
        audit(actor=actor_user(actor), action="webhook_endpoint.disabled", target=endpoint,
              data={"reason": endpoint.disabled_reason, "cancelled_deliveries": cancelled, **principal_audit_data(actor)})
    return endpoint


@transaction.atomic
def webhook_endpoint_disable_gone(*, endpoint_id: int, delivery_id, status_code: int = 410) -> WebhookEndpoint | None:
    """The engine's answer to a receiver that says 410 Gone: disable the endpoint (why and when),
    fail its pending deliveries, audit, and e-mail the organization's owners (outbox). Nothing if
    the endpoint is already disabled or deleted. Called by accounts.webhooks.deliver after the
    attempt is recorded."""
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id, deleted_at__isnull=True).first()
    if endpoint is None or not endpoint.is_enabled:
        return None
    now = timezone.now()
    detail = (f"The endpoint answered {status_code} Gone to delivery {delivery_id} at "
              f"{now.isoformat(timespec='seconds').replace('+00:00', 'Z')}: Coffer stopped sending to it.")
    cancelled = _disable(endpoint, reason=WebhookEndpoint.DisabledReason.GONE, detail=detail, now=now)
    audit(actor=None, action="webhook_endpoint.disabled", target=endpoint,
          data={"reason": endpoint.disabled_reason, "status_code": status_code, "delivery_id": str(delivery_id), "cancelled_deliveries": cancelled})
    outbox_emit(topic=ENDPOINT_DISABLED_TOPIC, payload={"endpoint_id": endpoint.pk, "disabled_at": now.isoformat()},
                organization=endpoint.organization_id, key=f"webhook-endpoint-disabled-{endpoint.pk}-{now.isoformat()}")
    return endpoint


def webhook_endpoint_disabled_notify(message: OutboxMessage) -> None:
    """Outbox handler: e-mail the owners of the endpoint's organization that Coffer disabled it,
    unless it was enabled again (or disabled again later, which has its own message) meanwhile."""
    endpoint = WebhookEndpoint.objects.select_related("organization").filter(pk=message.payload.get("endpoint_id")).first()
    if endpoint is None or endpoint.is_enabled or endpoint.deleted_at is not None or endpoint.disabled_at is None:
        return
    if endpoint.disabled_at.isoformat() != message.payload.get("disabled_at"):
        return
    owners = list(
        Membership.objects.filter(organization=endpoint.organization, role=Membership.Role.OWNER, user__is_active=True)
        .order_by("user_id").values_list("user__email", flat=True)
    )
    if not owners:
        return
    send_mail(
        subject=f"Coffer disabled your webhook endpoint {endpoint.url}",
        message=(
            f"{endpoint.disabled_detail}\n\n"
            f"Organization: {endpoint.organization.name}\nEndpoint: {endpoint.url} (id {endpoint.pk})\n\n"
            "A 410 Gone answer means the receiver is gone for good, so Coffer stopped sending events to it and "
            "cancelled its pending deliveries. When the receiver is back, enable the endpoint again in the "
            f"dashboard (Webhooks) or with POST /api/v1/webhook-endpoints/{endpoint.pk}/enable; cancelled deliveries "
            "can be sent again with POST /api/v1/webhook-deliveries/{delivery id}/redeliver."
        ),
        from_email=None,
        recipient_list=owners,
    )


@transaction.atomic
def webhook_endpoint_enable(*, organization: Organization, endpoint_id: int, actor=None) -> WebhookEndpoint:
    endpoint = _endpoint_for_update(organization, endpoint_id)
    if not endpoint.is_enabled:
        webhook_url_check(endpoint.url)
        previous_reason = endpoint.disabled_reason
        endpoint.is_enabled = True
        endpoint.disabled_at = None
        endpoint.disabled_reason = ""
        endpoint.disabled_detail = ""
        endpoint.save(update_fields=["is_enabled", "disabled_at", "disabled_reason", "disabled_detail", "updated_at"])
        audit(actor=actor_user(actor), action="webhook_endpoint.enabled", target=endpoint,
              data={"previous_reason": previous_reason, **principal_audit_data(actor)})
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
    _fail_pending_deliveries(endpoint, "endpoint deleted", now)
    audit(actor=actor_user(actor), action="webhook_endpoint.deleted", target=endpoint, data=principal_audit_data(actor))


@transaction.atomic
def webhook_delivery_redeliver(*, organization: Organization, delivery_id, created_at: datetime | None = None, actor=None) -> WebhookDelivery:
    """Queue one more round of attempts for a delivered or failed event (same webhook-id, so the
    receiver can deduplicate). `created_at` (when the caller has the row) or the time the id
    carries names the delivery's partition. A delivery past WEBHOOK_DELIVERY_RETENTION_DAYS is
    refused: its month is about to be dropped (accounts.webhooks.retention), and a pending
    delivery would hold it back."""
    delivery = (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .filter(organization=organization)
        .of_id(delivery_id, created_at)
        .first()
    )
    if delivery is None:
        raise NotFound("No such webhook delivery.")
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None or not endpoint.is_enabled:
        raise InvalidState("The delivery's endpoint is disabled or deleted.")
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise InvalidState("This delivery is already pending.")
    if delivery.created_at < retention_cutoff():
        raise InvalidState(f"This delivery is older than the {settings.WEBHOOK_DELIVERY_RETENTION_DAYS} days deliveries are kept.")
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.attempt_count = 0
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempt_count", "next_attempt_at", "updated_at"])
    audit(actor=actor_user(actor), action="webhook_delivery.redelivered", target=delivery, data={"event_id": delivery.event_id, **principal_audit_data(actor)})
    webhook_delivery_queue(delivery)
    return delivery
