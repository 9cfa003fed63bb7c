"""An order's history: who acts, transitions, flags, their webhooks and audit events.

Invariants:
- Every status change goes through `payorder_transition` (the django-fsm-2 transition changes the
  state only; this saves the order, writes a PayOrderStatusChange with time, cause and actor,
  publishes `payorder.<status>` and records the audit event, all in the caller's transaction).
- A flag (underpaid, overpaid, late, excess refunded) is a PayOrderStatusChange with
  from == to and an audit event; it never changes the state.
- Callers hold the order's row lock (`payorders.locks.payorders_for_update`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from accounts.orgs.authentication import OrganizationPrincipal
from accounts.models import User
from accounts.webhooks import webhook_publish
from compliance.audit import audit_record
from core.money import format_amount
from payorders.errors import PayOrderInvalidState
from payorders.models import PayOrder, PayOrderStatusChange
from payorders.selectors import currency_exponent, payorder_livemode


@dataclass(frozen=True)
class Actor:
    """Who acts: a User, an organization's API key, a label such as "payer" or
    "system:expire_orders", or nobody."""

    who: Any = None

    @property
    def user(self) -> User | None:
        return self.who if isinstance(self.who, User) else None

    @property
    def label(self) -> str:
        if isinstance(self.who, User):
            return f"user:{self.who.pk}"
        if isinstance(self.who, OrganizationPrincipal):
            return f"api_key:{self.who.api_key.key_id}"
        if isinstance(self.who, str):
            return self.who
        return "system"

    def audit(self, action: str, target, data: dict) -> None:
        audit_record(actor=self.user, action=action, target=target, data={**data, "actor": self.label})


def json_safe(value):
    """Decimals (the API parses JSON numbers to Decimal), datetimes and UUIDs as strings."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def event_payload(order: PayOrder) -> dict:
    """The `data` of a payorder.* webhook."""
    source_exponent = currency_exponent(order.source_currency) if order.source_currency else 2
    return {
        "id": str(order.public_id),
        "type": order.type,
        "status": order.status,
        "amount": format_amount(order.amount, currency_exponent(order.currency)),
        "currency": order.currency,
        "settlement_currency": order.settlement_currency,
        "customer_external_id": order.customer.external_id if order.customer_id else None,
        "source_currency": order.source_currency or None,
        "source_amount": format_amount(order.source_amount, source_exponent) if order.source_amount else None,
        "amount_received": format_amount(order.amount_received, source_exponent) if order.source_currency else None,
        "underpaid": order.underpaid,
        "overpaid": order.overpaid,
        "late_payment": order.late_payment,
        "metadata": order.metadata,
        "failure_reason": order.failure_reason or None,
        "livemode": payorder_livemode(order),
    }


_VERBS = {
    "await_payment": "await payment",
    "await_confirmation": "await confirmation",
    "choose_again": "go back to choosing a currency",
    "execute": "be executed",
    "complete": "complete",
    "fail": "fail",
    "cancel": "be cancelled",
    "expire": "expire",
    "refund": "be refunded",
}


def status_change_record(actor: Actor, order: PayOrder, *, from_status: str, to_status: str, cause: str, data: dict | None = None) -> None:
    PayOrderStatusChange.objects.create(
        pay_order=order,
        from_status=from_status,
        to_status=to_status,
        cause=cause[:300],
        actor=actor.user,
        actor_label=actor.label[:100],
        data=json_safe(data or {}),
        at=timezone.now(),
    )


def payorder_transition(actor: Actor, order: PayOrder, name: str, *, cause: str, data: dict | None = None) -> None:
    """Apply transition `name` to the LOCKED order; 409 INVALID_STATE when it is not allowed."""
    before = order.status
    try:
        getattr(order, name)()
    except TransitionNotAllowed:
        raise PayOrderInvalidState(
            f"A {before} pay order cannot {_VERBS.get(name, name)}.",
            details={"id": str(order.public_id), "status": before, "action": name},
        ) from None
    if order.status == PayOrder.Status.COMPLETED:
        order.completed_at = timezone.now()
    order.save()
    status_change_record(actor, order, from_status=before, to_status=order.status, cause=cause, data=data)
    webhook_publish(organization=order.organization, event_type=f"payorder.{order.status.lower()}", payload=event_payload(order))
    actor.audit(f"payorder.{name}", order, {"from": before, "to": order.status, "cause": cause, **(data or {})})


def payorder_flag(actor: Actor, order: PayOrder, *, cause: str, data: dict | None = None) -> None:
    """A history entry that is not a transition (from == to): underpaid, overpaid, late."""
    status_change_record(actor, order, from_status=order.status, to_status=order.status, cause=cause, data=data)
    actor.audit("payorder.flag", order, {"status": order.status, "cause": cause, **(data or {})})
