"""The signed-webhook engine every app publishes to. Its public entry is `webhook_publish`
(called inside the transaction of the change it announces); delivery is an outbox topic."""

from accounts.webhooks.publish import EVENT_TYPES, WEBHOOK_TOPIC, webhook_publish

__all__ = ["EVENT_TYPES", "WEBHOOK_TOPIC", "webhook_publish"]
