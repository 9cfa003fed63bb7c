"""The webhook event types: the one declaration of what an endpoint may subscribe to and what
each event's `data` looks like.

Invariants:
- `WEBHOOK_EVENT_TYPES` is the only list of event types. Endpoint subscriptions are validated
  against it (`accounts.webhooks.publish.normalize_event_patterns`: a declared name, a
  `<namespace>.*` of a declared namespace, or `*`), the dashboard's form offers it,
  `GET /api/v1/webhook-event-types` lists it, and `webhook_publish` refuses an undeclared type.
- Each type carries a description, the JSON Schema (draft 2020-12) of its `data` and an example
  `data` that validates against that schema (tests check every example, and the events the code
  sends). The envelope is the same for all: {"id": "evt_...", "type", "created_at", "data"}.
- Schemas name what a receiver may rely on; objects may carry more properties
  (`additionalProperties` stays open so adding a field is not a breaking change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_AMOUNT = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "Decimal string in the asset's major units."}
_NULLABLE_AMOUNT = {"type": ["string", "null"], "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": True}


_TRANSACTION = _object(
    {
        "id": {"type": "integer"},
        "type": {"type": "string", "description": "deposit, withdrawal, transfer, exchange, settlement, refund, reversal, ledger, ..."},
        "status": {"type": "string", "enum": ["pending", "in_review", "completed", "failed", "rejected", "reversed", "voided"]},
        "amount": _NULLABLE_AMOUNT,
        "currency": _NULLABLE_STRING,
        "reference": {"type": "string"},
        "created_at": _TIME,
        "completed_at": _NULLABLE_TIME,
        "failure_code": _NULLABLE_STRING,
    },
    ["id", "type", "status"],
)
_TRANSACTION_EXAMPLE = {
    "id": 981, "type": "ledger", "status": "completed", "amount": "25.00", "currency": "USD", "reference": "order-77",
    "created_at": "2026-01-15T10:00:00Z", "completed_at": "2026-01-15T10:00:00Z", "failure_code": None,
}
_HOLD = _object(
    {
        "id": {"type": "integer"},
        "status": {"type": "string", "enum": ["held", "captured", "voided", "expired"]},
        "source_wallet_id": {"type": "integer"},
        "destination_wallet_id": {"type": "integer"},
        "amount": _AMOUNT,
        "captured_amount": _NULLABLE_AMOUNT,
        "currency": {"type": "string"},
        "reference": {"type": "string"},
        "description": {"type": "string"},
        "transaction_id": _NULLABLE_INT,
        "capture_transaction_id": _NULLABLE_INT,
        "expires_at": _NULLABLE_TIME,
        "closed_at": _NULLABLE_TIME,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
    ["id", "status", "source_wallet_id", "destination_wallet_id", "amount", "currency"],
)
_HOLD_EXAMPLE = {
    "id": 31, "status": "held", "source_wallet_id": 12, "destination_wallet_id": 14, "amount": "40.00", "captured_amount": None,
    "currency": "USD", "reference": "auth-31", "description": "Card authorization", "transaction_id": 990,
    "capture_transaction_id": None, "expires_at": "2026-01-16T10:00:00Z", "closed_at": None,
    "created_at": "2026-01-15T10:00:00Z", "updated_at": "2026-01-15T10:00:00Z",
}
_WALLET = _object(
    {
        "id": {"type": "integer"},
        "currency": {"type": "string"},
        "label": {"type": "string"},
        "system": {"type": "boolean"},
        "customer_external_id": _NULLABLE_STRING,
        "balance": _AMOUNT,
        "available_balance": _AMOUNT,
        "held_balance": _AMOUNT,
        "status": {"type": "string", "enum": ["active", "suspended", "closed"]},
        "owner_name": _NULLABLE_STRING,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
    ["id", "currency", "status"],
)
_WALLET_EXAMPLE = {
    "id": 12, "currency": "USD", "label": "", "system": False, "customer_external_id": "cus-42", "balance": "0.00",
    "available_balance": "0.00", "held_balance": "0.00", "status": "active", "owner_name": "Ada Lovelace",
    "created_at": "2026-01-15T10:00:00Z", "updated_at": "2026-01-15T10:00:00Z",
}
_CUSTOMER_PROPERTIES = {
    "external_id": {"type": "string", "description": "Your id of the customer."},
    "name": {"type": "string"},
    "email": {"type": "string"},
    "kyc_level": {"type": "string", "enum": ["none", "basic", "verified", "enhanced"]},
    "metadata": {"type": "object"},
    "livemode": {"type": "boolean", "description": "False for a test-mode customer (a test key's, or any on the sandbox)."},
    "created_at": _TIME,
    "updated_at": _TIME,
}
_CUSTOMER = _object(_CUSTOMER_PROPERTIES, ["external_id", "name", "email", "kyc_level", "metadata", "livemode", "created_at", "updated_at"])
_CUSTOMER_UPDATED = _object(
    {
        **_CUSTOMER_PROPERTIES,
        "changed_fields": {
            "type": "array", "items": {"type": "string", "enum": ["name", "email", "kyc_level", "metadata"]}, "minItems": 1,
            "uniqueItems": True, "description": "What this update changed.",
        },
    },
    ["external_id", "name", "email", "kyc_level", "metadata", "created_at", "updated_at", "changed_fields"],
)
_CUSTOMER_EXAMPLE = {
    "external_id": "cus-42", "name": "Ada Lovelace", "email": "ada@example.com", "kyc_level": "basic", "livemode": True,
    "metadata": {"plan": "gold"}, "created_at": "2026-01-15T10:00:00Z", "updated_at": "2026-01-15T10:00:00Z",
}
_PAYORDER = _object(
    {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "enum": ["SALE", "DEPOSIT"]},
        "status": {"type": "string"},
        "amount": _AMOUNT,
        "currency": {"type": "string"},
        "settlement_currency": {"type": "string"},
        "customer_external_id": _NULLABLE_STRING,
        "source_currency": _NULLABLE_STRING,
        "source_amount": _NULLABLE_AMOUNT,
        "amount_received": _NULLABLE_AMOUNT,
        "underpaid": {"type": "boolean"},
        "overpaid": {"type": "boolean"},
        "late_payment": {"type": "boolean"},
        "metadata": {"type": "object"},
        "failure_reason": _NULLABLE_STRING,
        "livemode": {"type": "boolean", "description": "False for a test-mode order (sandbox chain or a test API key)."},
    },
    ["id", "type", "status", "amount", "currency"],
)


def _payorder_example(status: str, **extra) -> dict[str, Any]:
    return {
        "id": "0b6c1d2e-3f4a-4b6c-8d8e-9f0a1b2c3d4e", "type": "SALE", "status": status, "amount": "120.00", "currency": "USD",
        "settlement_currency": "USD", "customer_external_id": None, "source_currency": "BTC", "source_amount": "0.00184615",
        "amount_received": "0.00000000", "underpaid": False, "overpaid": False, "late_payment": False, "metadata": {},
        "failure_reason": None, "livemode": True, **extra,
    }


@dataclass(frozen=True)
class WebhookEventType:
    name: str  # <namespace>.<name>
    description: str
    schema: dict[str, Any]  # JSON Schema of the event's `data`
    example: dict[str, Any]  # a `data` that validates against `schema`

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "description": self.description,
            "schema": {"$schema": SCHEMA_DIALECT, "title": f"{self.name} data", **self.schema},
            "example": self.example,
        }


def _payorder(status: str, description: str, *, name: str = "", **example) -> WebhookEventType:
    """A payorder.* event: named after the status the order reached (`payorders.services.history`)."""
    return WebhookEventType(name or f"payorder.{status.lower()}", description, _PAYORDER, _payorder_example(status, **example))


WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = (
    WebhookEventType(
        "transaction.completed",
        "A ledger transaction that involves your customers' or your own wallets was posted (your POST /transactions, "
        "a transfer into one of your customers' wallets, a captured hold).",
        _TRANSACTION, _TRANSACTION_EXAMPLE,
    ),
    WebhookEventType(
        "transaction.failed",
        "A transaction was refused (insufficient funds, an inactive wallet, ...) and recorded as failed; `failure_code` says why.",
        _TRANSACTION, {**_TRANSACTION_EXAMPLE, "status": "failed", "completed_at": None, "failure_code": "INSUFFICIENT_FUNDS"},
    ),
    WebhookEventType(
        "transaction.reversed",
        "A reversal of one of your transactions was posted; `data` is the reversal, with `reversal_of` (the original's id).",
        _object({**_TRANSACTION["properties"], "reversal_of": {"type": "integer"}, "original": {"type": "object"}}, ["id", "type", "status", "reversal_of"]),
        {**_TRANSACTION_EXAMPLE, "id": 1002, "type": "reversal", "reversal_of": 981, "original": {"id": 981, "status": "reversed"}},
    ),
    WebhookEventType("hold.created", "An authorization hold was placed: the amount is taken from the source wallet's available balance.", _HOLD, _HOLD_EXAMPLE),
    WebhookEventType(
        "hold.captured", "A hold was captured, in whole or in part (`captured_amount`); the rest is released.",
        _HOLD, {**_HOLD_EXAMPLE, "status": "captured", "captured_amount": "25.00", "capture_transaction_id": 995, "closed_at": "2026-01-15T11:00:00Z"},
    ),
    WebhookEventType("hold.voided", "A hold was voided: its amount is available again.", _HOLD, {**_HOLD_EXAMPLE, "status": "voided", "closed_at": "2026-01-15T11:00:00Z"}),
    WebhookEventType("hold.expired", "A hold reached `expires_at` uncaptured and was released.", _HOLD, {**_HOLD_EXAMPLE, "status": "expired", "closed_at": "2026-01-16T10:00:05Z"}),
    WebhookEventType(
        "schedule.occurrence_failed",
        "An occurrence of one of your recurring payments failed (insufficient funds, a limit, a review, a payout that "
        "failed later); `next_attempt_at` says when it is retried, null when it is not.",
        _object(
            {
                "id": {"type": "integer"}, "schedule_id": {"type": "integer"}, "scheduled_for": _TIME,
                "status": {"type": "string"}, "attempts": {"type": "integer", "minimum": 0}, "transaction_id": _NULLABLE_INT,
                "transaction_status": _NULLABLE_STRING, "failure_code": _NULLABLE_STRING, "failure_reason": _NULLABLE_STRING,
                "next_attempt_at": _NULLABLE_TIME, "idempotency_key": {"type": "string"}, "created_at": _TIME, "updated_at": _TIME,
                "schedule": _object(
                    {"id": {"type": "integer"}, "status": {"type": "string"}, "amount": _AMOUNT, "currency": {"type": "string"},
                     "rule": {"type": "string"}, "next_run_at": _NULLABLE_TIME},
                    ["id", "status", "amount", "currency", "rule"],
                ),
            },
            ["id", "schedule_id", "scheduled_for", "status", "attempts", "failure_code", "schedule"],
        ),
        {
            "id": 77, "schedule_id": 9, "scheduled_for": "2026-02-01T09:00:00Z", "status": "retrying", "attempts": 1,
            "transaction_id": None, "transaction_status": None, "failure_code": "INSUFFICIENT_FUNDS",
            "failure_reason": "Operation 0: wallet 12 has insufficient available funds.", "next_attempt_at": "2026-02-01T10:00:00Z",
            "idempotency_key": "schedule:9:2026-02-01T09:00:00Z", "created_at": "2026-02-01T09:00:01Z", "updated_at": "2026-02-01T09:00:01Z",
            "schedule": {"id": 9, "status": "active", "amount": "25.00", "currency": "USD", "rule": "FREQ=MONTHLY;BYMONTHDAY=1",
                         "next_run_at": "2026-03-01T09:00:00Z"},
        },
    ),
    WebhookEventType("wallet.created", "A wallet was opened for one of your customers, or as one of your system wallets.", _WALLET, _WALLET_EXAMPLE),
    WebhookEventType("wallet.suspended", "A wallet was suspended: it keeps its balance but takes part in no transaction.", _WALLET, {**_WALLET_EXAMPLE, "status": "suspended"}),
    WebhookEventType("wallet.activated", "A suspended wallet was activated again.", _WALLET, _WALLET_EXAMPLE),
    WebhookEventType("wallet.closed", "A wallet (with a zero balance) was closed; closing is final.", _WALLET, {**_WALLET_EXAMPLE, "status": "closed"}),
    WebhookEventType(
        "customer.created", "A customer was created by `PUT /customers/{external_id}`; `data` is the customer as the API shows it.",
        _CUSTOMER, _CUSTOMER_EXAMPLE,
    ),
    WebhookEventType(
        "customer.updated",
        "`PUT /customers/{external_id}` changed an existing customer; `changed_fields` names what changed (an upsert that "
        "changes nothing sends nothing).",
        _CUSTOMER_UPDATED, {**_CUSTOMER_EXAMPLE, "kyc_level": "verified", "updated_at": "2026-02-01T09:30:00Z", "changed_fields": ["kyc_level"]},
    ),
    _payorder("PENDING", "A pay order was created (`POST /pay-orders`); it is PENDING.", name="payorder.created"),
    _payorder("AWAITING_PAYMENT", "The payer chose a quote: a deposit address and exact amount were issued."),
    _payorder(
        "PENDING", "The payer went back to choose another coin before paying (the checkout page): the issued address is "
        "abandoned and the order is PENDING again.", name="payorder.pending",
    ),
    _payorder("AWAITING_CONFIRMATION", "A payment was seen on chain and waits for its confirmations.", amount_received="0.00184615"),
    _payorder("EXECUTING_ORDER", "The payment is confirmed and the order is being executed.", amount_received="0.00184615"),
    _payorder("COMPLETED", "The order completed; settlement into your wallet follows.", amount_received="0.00184615"),
    _payorder("FAILED", "The order failed; `failure_reason` says why.", failure_reason="The payment was not confirmed in time."),
    _payorder("EXPIRED", "The order's payment window passed unpaid."),
    _payorder("REFUNDED", "The order was refunded.", amount_received="0.00184615"),
    WebhookEventType(
        "payorder.deposit_addresses_constrained",
        "Deposit-address allocation for one of your extended public keys is held within its gap limit (addresses of "
        "unpaid orders are reused, or new orders are refused): raise the gap limit in your wallet and here.",
        _object(
            {
                "chain": {"type": "string"}, "xpub_key_id": {"type": "integer"}, "gap_limit": {"type": "integer", "minimum": 1},
                "unused_addresses": {"type": "integer", "minimum": 0}, "action": {"type": "string"}, "message": {"type": "string"},
            },
            ["chain", "xpub_key_id", "gap_limit", "unused_addresses", "action", "message"],
        ),
        {
            "chain": "bitcoin", "xpub_key_id": 3, "gap_limit": 20, "unused_addresses": 20, "action": "reuse",
            "message": "Deposit addresses of your bitcoin key are held within its gap limit of 20: unpaid orders' addresses are reused.",
        },
    ),
)
EVENTS_BY_NAME: dict[str, WebhookEventType] = {e.name: e for e in WEBHOOK_EVENT_TYPES}
EVENT_TYPES: tuple[str, ...] = tuple(EVENTS_BY_NAME)
EVENT_NAMESPACES: frozenset[str] = frozenset(e.namespace for e in WEBHOOK_EVENT_TYPES)


def webhook_event_types() -> list[dict[str, Any]]:
    """Every event type, in declaration order, as the API lists it."""
    return [e.as_dict() for e in WEBHOOK_EVENT_TYPES]
