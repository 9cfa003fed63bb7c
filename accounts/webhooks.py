"""The signed-webhook delivery engine (Standard Webhooks), shared by every event source.

Invariants:
- `webhook_publish` writes one WebhookDelivery row per matching enabled endpoint, and one
  `webhook.deliver` outbox message per delivery, inside the caller's database transaction: both
  commit or roll back with the change they announce. Delivery is a topic of the one outbox
  (`core.outbox`): its lease makes sure two workers never send the same attempt at once, no
  database transaction is open during the HTTP call, a worker that dies mid-attempt leaves the
  message to be re-claimed when the lease runs out, and retries follow the outbox's one backoff
  policy (then dead, and the delivery `failed`).
- The delivery row is what the API and dashboard show: its status, attempt count and next
  attempt time mirror the outbox. Every attempt is logged (WebhookAttempt). 2xx -> delivered;
  anything else -> the handler raises, the outbox retries. Every attempt of one delivery carries
  the same `webhook-id` (its `id`), so a receiver deduplicates a resend after a crash.
- The target host is resolved and every address checked before each attempt (not only when the
  endpoint was created: DNS rebinding), and the connection goes to the address that was checked,
  with the original Host header and TLS server name.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import secrets
import socket
import time
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.crypto import decrypt_secret
from accounts.models import Organization, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.errors import ValidationFailed
from core.models import OutboxMessage
from core.outbox import outbox_emit, outbox_retry_at

logger = logging.getLogger("coffer.webhooks")

WEBHOOK_TOPIC = "webhook.deliver"
REQUEST_TIMEOUT = 10.0  # well inside the outbox lease (OUTBOX_LEASE_SECONDS, 60): a live attempt is never claimed twice
RESPONSE_EXCERPT_BYTES = 1024
SECRET_PREFIX = "whsec_"

EVENT_TYPES = (
    "transaction.completed",
    "transaction.failed",
    "wallet.created",
    "wallet.suspended",
    "wallet.activated",
    "wallet.closed",
    "customer.created",
    "customer.updated",
    "payorder.created",
    "payorder.awaiting_payment",
    "payorder.awaiting_confirmation",
    "payorder.executing_order",
    "payorder.completed",
    "payorder.failed",
    "payorder.expired",
    "payorder.refunded",
)
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
_EVENT_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*\.\*|[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*)$")


class WebhookUrlRefused(ValidationFailed):
    """The URL is malformed, not https where required, or points at a non-public address."""


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def normalize_event_patterns(events: list[str]) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ValidationFailed("Name at least one event, or \"*\" for all.", details={"events": ["Must be a non-empty list."]})
    out: list[str] = []
    for event in events:
        if not isinstance(event, str) or not _EVENT_PATTERN.match(event) or len(event) > 100:
            raise ValidationFailed(f"Not an event name: {event!r}.", details={"events": [f"Not an event name: {event!r}."]})
        if event not in out:
            out.append(event)
    return ["*"] if "*" in out else out


# --- URL checks ---------------------------------------------------------------------------------


# Not globally reachable although this Python's `is_global` says so: IETF protocol assignments
# (192.0.0.0/24 except the anycast 192.0.0.9 and 192.0.0.10, as newer Pythons have it).
_IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
_IETF_GLOBAL = {ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")}


def _address_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _address_is_public(mapped)
        if ip.is_site_local:  # fec0::/10, deprecated but still routed inside some networks
            return False
    elif ip in _IETF_PROTOCOL and ip not in _IETF_GLOBAL:
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _refuse(message: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(message, details={"url": [message]})


def webhook_url_check(url: str) -> list[str]:
    """Validate a webhook URL and resolve its host; returns the addresses it may be sent to.
    Raises WebhookUrlRefused (400) for a malformed URL, plain http where https is required, a
    host that does not resolve, or (unless WEBHOOK_ALLOW_PRIVATE_URLS) any non-public address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("Not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("The URL must be an absolute http(s) URL.")
    if parts.scheme != "https" and settings.WEBHOOK_REQUIRE_HTTPS:
        raise _refuse("The URL must use https.")
    if parts.username is not None or parts.password is not None:
        raise _refuse("The URL must not carry credentials.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise _refuse(f"The host {parts.hostname!r} does not resolve.") from None
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refuse(f"The host {parts.hostname!r} does not resolve.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        for address in addresses:
            if not _address_is_public(ipaddress.ip_address(address)):
                raise _refuse("The URL resolves to a private, loopback, link-local or reserved address.")
    return addresses


# --- Publishing ---------------------------------------------------------------------------------


def webhook_publish(*, organization: Organization, event_type: str, payload: dict[str, Any]) -> list[WebhookDelivery]:
    """Announce `event_type` to the organization's subscribed endpoints. Call it inside the
    transaction that makes the change: the deliveries commit or roll back with it."""
    if not _EVENT_NAME.match(event_type):
        raise ValueError(f"not an event type: {event_type!r}")
    now = timezone.now()
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": payload,
    }
    event = json.loads(json.dumps(event, cls=DjangoJSONEncoder))  # Decimals -> strings, dates -> ISO
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(organization=organization, is_enabled=True, deleted_at__isnull=True)
        if e.subscribes_to(event_type)
    ]
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                organization=organization,
                endpoint=endpoint,
                event_id=event["id"],
                event_type=event_type,
                payload=event,
                next_attempt_at=now,
            )
            for endpoint in endpoints
        ]
    )
    for delivery in deliveries:
        webhook_delivery_queue(delivery)
    return deliveries


def webhook_delivery_queue(delivery: WebhookDelivery) -> OutboxMessage:
    """Queue a round of attempts for a pending delivery: one outbox message, written in the
    caller's transaction (publishing, or a redelivery)."""
    return outbox_emit(topic=WEBHOOK_TOPIC, payload={"delivery_id": str(delivery.pk)}, organization=delivery.organization_id)


# --- Delivering (the `webhook.deliver` outbox handler) ---------------------------------------------


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
    attempt = WebhookAttempt(delivery=delivery, url=endpoint.url, attempted_at=timezone.now())
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
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
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
        locked.save()
    return locked


def _abandon(delivery: WebhookDelivery, reason: str) -> WebhookDelivery:
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error=reason, updated_at=timezone.now()
    )
    delivery.refresh_from_db()
    return delivery


def webhook_deliver(message: OutboxMessage) -> WebhookDelivery | None:
    """The `webhook.deliver` outbox handler: one attempt for the message's delivery if it is
    still pending, made with no database transaction open. A failed attempt raises
    WebhookAttemptFailed after it is recorded, so the outbox retries it (or gives up: the
    delivery is then `failed`). Nothing to do (delivered, failed, gone) -> None."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=message.payload["delivery_id"]).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return None
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None or not endpoint.is_enabled:
        return _abandon(delivery, "endpoint disabled" if endpoint.deleted_at is None else "endpoint deleted")
    attempt = _attempt(delivery)
    delivery = _record(delivery, attempt, retry_at=None if attempt.succeeded else outbox_retry_at(message))
    logger.info(
        "webhook %s %s -> endpoint %s: attempt %s %s in %s ms",
        delivery.webhook_id, delivery.event_type, endpoint.pk, delivery.attempt_count,
        attempt.status_code or attempt.error, attempt.duration_ms,
    )
    if not attempt.succeeded:
        raise WebhookAttemptFailed(f"delivery {delivery.pk}: {attempt.error}")
    return delivery
