"""Publishing webhook events: every app announces its changes here.

Invariants:
- `webhook_publish` writes one WebhookDelivery row per enabled endpoint subscribed to the event,
  and one `webhook.deliver` outbox message per delivery, inside the CALLER'S transaction: they
  commit or roll back with the change they announce. It opens no transaction and calls nothing
  outside the database.
- A delivery's id is a UUIDv7 carrying its `created_at` (accounts.models.webhooks): the
  PostgreSQL partition it lives in, named by the id alone.
- The event body is plain JSON (Decimals as strings, datetimes ISO 8601) with a fresh `evt_` id
  shared by every endpoint's delivery.
- Event names are `<namespace>.<name>`, declared once in `accounts.webhooks.events` (with their
  description and payload schema); endpoints subscribe by a declared name, `<namespace>.*` of a
  declared namespace, or `*`; publishing an undeclared type is a programming error.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from accounts.models import Organization, WebhookDelivery, WebhookEndpoint
from accounts.webhooks.events import EVENT_NAMESPACES, EVENT_TYPES, EVENTS_BY_NAME
from core.db import model_columns, model_from_row, query
from core.errors import ValidationFailed
from core.livemode import deployment_livemode
from core.models import OutboxMessage
from core.outbox import outbox_emit

WEBHOOK_TOPIC = "webhook.deliver"
SECRET_PREFIX = "whsec_"

_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")
_EVENT_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*\.\*|[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*)$")


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def normalize_event_patterns(events: list[str]) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ValidationFailed("Name at least one event, or \"*\" for all.", details={"events": ["Must be a non-empty list."]})
    out: list[str] = []
    for event in events:
        if not isinstance(event, str) or not _EVENT_PATTERN.match(event) or len(event) > 100:
            raise ValidationFailed(f"Not an event name: {event!r}.", details={"events": [f"Not an event name: {event!r}."]})
        known = event == "*" or (event.endswith(".*") and event[:-2] in EVENT_NAMESPACES) or event in EVENTS_BY_NAME
        if not known:
            raise ValidationFailed(
                f"Unknown event type: {event!r} (GET /api/v1/webhook-event-types lists them).",
                details={"events": [f"Unknown event type: {event!r}."], "known": list(EVENT_TYPES)},
            )
        if event not in out:
            out.append(event)
    return ["*"] if "*" in out else out


_ENDPOINTS_SQL: list[str] = []


def _live_endpoints(organization_id: int) -> list[WebhookEndpoint]:
    """The organization's enabled, undeleted endpoints: a written-out statement, since every money
    movement of an organization's customers asks (the ORM compiling it was ~10% of its CPU)."""
    if not _ENDPOINTS_SQL:
        table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
        _ENDPOINTS_SQL.append(
            f"SELECT {model_columns(WebhookEndpoint, 'e')} FROM {table} e"
            " WHERE e.organization_id = %s AND e.is_enabled AND e.deleted_at IS NULL ORDER BY e.id"
        )
    return [model_from_row(WebhookEndpoint, row, 0)[0] for row in query(_ENDPOINTS_SQL[0], [organization_id])]


def webhook_publish(*, organization: Organization, event_type: str, payload: dict[str, Any], livemode: bool | None = None) -> list[WebhookDelivery]:
    """Announce `event_type` to the organization's subscribed endpoints of the event's mode
    (core.livemode: a test-mode event goes to test-mode endpoints only, a live one to live ones;
    with the sandbox on, everything is test mode and every endpoint gets it). The event's mode is
    `livemode`, else its payload's own `livemode`. Call it inside the transaction that makes the
    change: the deliveries commit or roll back with it."""
    if not _EVENT_NAME.match(event_type) or event_type not in EVENTS_BY_NAME:
        raise ValueError(f"not a declared event type: {event_type!r} (accounts.webhooks.events)")
    live_event = deployment_livemode() and (payload.get("livemode", True) is not False if livemode is None else bool(livemode))
    endpoints = [
        e for e in _live_endpoints(organization.pk)
        if e.subscribes_to(event_type) and (not deployment_livemode() or bool(e.livemode) == live_event)
    ]
    if not endpoints:  # most movements of most organizations: one indexed read, nothing to write
        return []
    now = timezone.now()
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        # false on the sandbox and for a test-mode object
        "livemode": live_event,
        "data": payload,
    }
    event = json.loads(json.dumps(event, cls=DjangoJSONEncoder))  # Decimals -> strings, dates -> ISO
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
    caller's transaction (publishing, or a redelivery). It carries the delivery's `created_at`,
    so the handler reads and locks the delivery in its month's partition only."""
    payload = {"delivery_id": str(delivery.pk), "delivery_created_at": delivery.created_at.isoformat()}
    return outbox_emit(topic=WEBHOOK_TOPIC, payload=payload, organization=delivery.organization_id)
