"""The signed-webhook engine every app publishes to. Its public entry is `webhook_publish`
(called inside the transaction of the change it announces); delivery is an outbox topic. The
event types it knows are declared once, in `accounts.webhooks.events`."""

from accounts.webhooks.events import EVENT_TYPES, WEBHOOK_EVENT_TYPES
from accounts.webhooks.publish import WEBHOOK_TOPIC, webhook_publish

__all__ = ["EVENT_TYPES", "WEBHOOK_EVENT_TYPES", "WEBHOOK_TOPIC", "webhook_publish"]
