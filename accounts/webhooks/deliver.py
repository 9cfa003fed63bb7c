"""Delivering webhooks: the `webhook.deliver` outbox handler (Standard Webhooks signing).

Invariants:
- One attempt per outbox message, made with no database transaction open; the outbox's lease
  keeps two workers from sending the same attempt. Retries follow WEBHOOK_RETRY_SCHEDULE_SECONDS
  (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, ... about a day; registered with the outbox, which dispatches
  each retry when it is due), then the delivery is `failed`. REQUEST_TIMEOUT stays well inside
  the lease.
- 410 Gone is final: the delivery fails at once (no retry) and the endpoint is disabled, with
  its other pending deliveries, and its organization told (services.webhook_endpoint_disable_gone).
- Every attempt is recorded (WebhookAttempt) with the delivery's new state in one short
  transaction that locks the delivery. 2xx -> delivered; anything else raises, so the outbox
  retries. Every attempt of a delivery carries its `webhook-id`.
- Every read and write of the delivery names its month (the outbox message's
  `delivery_created_at`, or the time its id carries): on PostgreSQL one partition, not one probe
  per month (accounts.models.webhooks). A message of before the partitioning has no
  `delivery_created_at` and its delivery a UUIDv4 id: that one is looked up in every partition.
- The target is checked by the SSRF guard before each attempt and the connection goes to the
  address that was checked, with the original Host header and TLS server name; no redirects,
  no proxies from the environment.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.crypto import decrypt_secret
from accounts.models import WebhookAttempt, WebhookDelivery
from accounts.webhooks.services import webhook_endpoint_disable_gone
from accounts.webhooks.url_guard import WebhookUrlRefused, webhook_url_check
from core.models import OutboxMessage
from core.outbox import outbox_retry_at

logger = logging.getLogger("coffer.webhooks")

REQUEST_TIMEOUT = 10.0  # well inside the outbox lease (OUTBOX_LEASE_SECONDS, 60): a live attempt is never claimed twice
RESPONSE_EXCERPT_BYTES = 1024
GONE = 410


def webhook_retry_schedule() -> list[float]:
    """Seconds before each retry (the outbox's schedule of the webhook topic)."""
    return list(settings.WEBHOOK_RETRY_SCHEDULE_SECONDS)


class WebhookAttemptFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached): the outbox retries."""


def _pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL rewritten to connect to `address`, with the Host header and TLS SNI of the
    original host, so the connection goes exactly where the check said it may."""
    parts = urlsplit(url)
    host_literal = f"[{address}]" if ":" in address else address
    netloc = host_literal + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.hostname if not parts.port else f"{parts.hostname}:{parts.port}"
    if ":" in (parts.hostname or "") and not host_header.startswith("["):
        host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions


def sign_webhook(*, secret: str, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    at = at.astimezone(dt_timezone.utc)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=body),
    }


def _attempt(delivery: WebhookDelivery) -> WebhookAttempt:
    endpoint = delivery.endpoint
    attempt = WebhookAttempt(delivery=delivery, delivery_created_at=delivery.created_at, url=endpoint.url, attempted_at=timezone.now())
    started = time.monotonic()
    try:
        addresses = webhook_url_check(endpoint.url)
        body = json.dumps(delivery.payload, separators=(",", ":"))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Coffer-Webhooks/1.0",
            **sign_webhook(secret=decrypt_secret(endpoint.secret_encrypted), webhook_id=delivery.webhook_id, body=body, at=timezone.now()),
        }
        pinned_url, host, extensions = _pinned_request(endpoint.url, addresses[0])
        with httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.post(pinned_url, content=body.encode(), headers={**headers, **host}, extensions=extensions)
        attempt.status_code = response.status_code
        attempt.response_excerpt = response.content[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
        attempt.succeeded = 200 <= response.status_code < 300
        if not attempt.succeeded:
            attempt.error = f"HTTP {response.status_code}"
    except WebhookUrlRefused as exc:
        attempt.error = f"refused: {exc.message}"[:500]
    except httpx.HTTPError as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:500]
    except Exception as exc:  # a bad secret, an encoding error: log it on the attempt, keep going
        logger.exception("webhook attempt for delivery %s failed unexpectedly", delivery.pk)
        attempt.error = f"{type(exc).__name__}: {exc}"[:500]
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    return attempt


def _record(delivery: WebhookDelivery, attempt: WebhookAttempt, *, retry_at: datetime | None) -> WebhookDelivery:
    """The attempt and the delivery's new state, in one short transaction locking the delivery.
    `retry_at` is when the outbox tries again (None: it gives up, the delivery fails)."""
    now = timezone.now()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().of_id(delivery.pk, delivery.created_at).get()
        attempt.save()
        locked.attempt_count += 1
        locked.last_attempt_at = attempt.attempted_at
        locked.last_status_code = attempt.status_code
        locked.last_error = attempt.error
        if locked.status != WebhookDelivery.Status.PENDING:
            pass  # failed meanwhile (endpoint deleted): the attempt is history, the status stays
        elif attempt.succeeded:
            locked.status = WebhookDelivery.Status.DELIVERED
            locked.delivered_at = now
            locked.next_attempt_at = None
        elif retry_at is None:
            locked.status = WebhookDelivery.Status.FAILED
            locked.next_attempt_at = None
        else:
            locked.next_attempt_at = retry_at
        locked.save()  # UPDATE ... WHERE id AND created_at (WebhookDelivery._do_update): one partition
    return locked


def _abandon(delivery: WebhookDelivery, reason: str) -> WebhookDelivery:
    in_partition = WebhookDelivery.objects.of_id(delivery.pk, delivery.created_at)
    in_partition.filter(status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error=reason, updated_at=timezone.now()
    )
    delivery.refresh_from_db(from_queryset=in_partition)
    return delivery


def _message_delivery(message: OutboxMessage) -> WebhookDelivery | None:
    created_at = message.payload.get("delivery_created_at")
    return (
        WebhookDelivery.objects.select_related("endpoint")
        .of_id(message.payload["delivery_id"], datetime.fromisoformat(created_at) if created_at else None)
        .first()
    )


def webhook_deliver(message: OutboxMessage) -> WebhookDelivery | None:
    """The `webhook.deliver` outbox handler: one attempt for the message's delivery if it is
    still pending, made with no database transaction open. A failed attempt raises
    WebhookAttemptFailed after it is recorded, so the outbox retries it (or gives up: the
    delivery is then `failed`); a 410 Gone fails it for good and disables the endpoint. Nothing
    to do (delivered, failed, gone) -> None."""
    delivery = _message_delivery(message)
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return None
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None or not endpoint.is_enabled:
        return _abandon(delivery, "endpoint disabled" if endpoint.deleted_at is None else "endpoint deleted")
    attempt = _attempt(delivery)
    gone = attempt.status_code == GONE
    delivery = _record(delivery, attempt, retry_at=None if attempt.succeeded or gone else outbox_retry_at(message))
    logger.info(
        "webhook %s %s -> endpoint %s: attempt %s %s in %s ms",
        delivery.webhook_id, delivery.event_type, endpoint.pk, delivery.attempt_count,
        attempt.status_code or attempt.error, attempt.duration_ms,
    )
    if gone:
        if webhook_endpoint_disable_gone(endpoint_id=endpoint.pk, delivery_id=delivery.pk, status_code=GONE) is not None:
            logger.warning("webhook endpoint %s answered 410 Gone: disabled, its pending deliveries cancelled", endpoint.pk)
        return delivery
    if not attempt.succeeded:
        raise WebhookAttemptFailed(f"delivery {delivery.pk}: {attempt.error}")
    return delivery
