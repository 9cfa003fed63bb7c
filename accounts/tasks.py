"""Outbox handlers of accounts: webhook delivery is the `webhook.deliver` topic of the one outbox
(`core.outbox`; dispatched after commit and swept by `core.tasks`). Imported by
`AccountsConfig.ready`, so every process that dispatches has the handler."""

from accounts.webhooks import WEBHOOK_TOPIC, webhook_deliver
from core.outbox import register_handler

register_handler(WEBHOOK_TOPIC, webhook_deliver)
