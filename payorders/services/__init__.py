"""Pay-order services: the only writers of pay orders, their quotes, payments, history, refunds
and deposit addresses. Import from the module that owns a service:

  lifecycle   create, cancel, expire            quotes      quotes, payment details
  payments    process, watcher, confirmations   settlement  settling a COMPLETED order
  refunds     refunds and their transactions    addresses   xpub keys, deposit addresses
  history     actor, transitions, flags, webhooks and audit (used by the others)

Life of an order (SPEC 7): PENDING --payment-details--> AWAITING_PAYMENT --paid in full-->
AWAITING_CONFIRMATION --confirmations--> COMPLETED --settle--> (ledger) --refund--> REFUNDED;
PENDING/AWAITING_PAYMENT --cancel--> FAILED or --expire--> EXPIRED. Every service opens its own
`transaction.atomic` (not durable: the idempotency layer may run one inside its block) and
locks in the order of `payorders.locks`. Money moves only through `wallets.pipeline.money_path`.
"""
