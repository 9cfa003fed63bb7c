"""The money path (SPEC 4): every money movement, whatever its entry point, runs this one
pipeline inside the caller's database transaction, and only the ledger's posting engine writes
balances, entries and usage counters. docs/money-path.md has the design.

    validate -> authorize (owner) -> idempotency -> lock -> limits -> 2FA step-up -> risk -> post | hold

Invariants:
* Validation and authorization are the entry point's (`wallets.movements`, `payorders.services`);
  idempotency is the request's (`core.idempotency`, or the transaction `reference`).
* Locks: the customers checked, ascending id (a user's own movement takes its one customer's
  lock in its wallet read), before the wallets the ledger locks (docs/lock-order.md); the usage
  read after them sees every earlier movement committed.
* Runs in the caller's transaction (opens one only if there is none) and never raises a
  refusal: it is returned in `MovementResult` and raised by `raise_for_error()` once the caller's
  block closed, so what the path recorded on the way commits with the stored error response.
* The movement's own rows (`after_post`) are inserted in one statement; its audit event goes
  with the request's idempotency record (`core.db.insert_later`).
* Limits: default rules (blank currency) are in the reference currency: the movement's
  `RateBook` (`core.reference`, no SQL) gives each asset's rate once; the limit check, the 2FA
  step-up (TWO_FACTOR_THRESHOLD, reference currency) and the posting (which stores the rates on
  its posting rows with the usage they charge) use the same rates.
* Scheduled payments (`wallets.schedules`) run each occurrence through the transfer,
  withdrawal or organization-transaction service, with a per-attempt `reference`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction as db_transaction
from django.utils import timezone

from accounts.identity.twofactor import twofactor_require
from accounts.webhooks import webhook_publish
from accounts.models import Customer, Organization, User
from compliance.limits import customers_lock, limits_enforce, limits_usage_needed
from compliance.models import Direction
from compliance.risk import (
    RiskDecision,
    risk_evaluate,
    risk_reject_record,
    velocity_windows,
    wallet_outgoing_count_subquery,
)
from compliance.audit import audit_event
from compliance.review import review_case_open
from core.livemode import object_livemode
from core.db import Insert, insert_all, insert_later, query
from core.errors import CofferError
from core.metrics import count_posting
from core.money import format_amount
from core.reference import RateBook
from ledger.errors import DuplicateReference
from ledger.models import Asset, Transaction, Wallet
from ledger.posting import Operation, PostingResult, ledger_hold_pending, ledger_post
from ledger.usage import usage_subqueries, usage_value

SANCTIONS_ONLY = frozenset({"sanctions"})


@dataclass(frozen=True)
class LimitScope:
    asset: Asset
    movement_type: str
    direction: str
    amount: Decimal
    customer_id: int | None = None  # None: the movement's own customer


@dataclass
class MoneyMovement:
    """One movement. `wallet` is the wallet the checks run against (the source; a deposit's
    destination), or None for a movement of an organization's own system wallets; `amount` is
    what was asked to move, in its asset."""

    actor: Any  # the User who acted, or an organization's principal (audited by label)
    movement_type: str  # compliance.models.MovementType
    ledger_type: str  # ledger.models.Transaction.Type
    wallet: Wallet | None
    amount: Decimal
    operations: list[Operation]
    direction: str = Direction.OUTGOING
    limits: list[LimitScope] = field(default_factory=list)
    customers: list[int] = field(default_factory=list)  # to lock besides the wallet's own customer
    step_up: bool = True
    risk: bool = True
    two_factor_code: str | None = None
    beneficiary_name: str | None = None
    organization: Organization | None = None  # the transaction's owner, for organization movements
    reference: str = ""
    description: str = ""
    metadata: dict = field(default_factory=dict)
    pending: bool = False  # withdrawals: hold now, post when the payout settles
    counterparty_wallets: list[Wallet] = field(default_factory=list)
    # The movement's own rows, same DB transaction: it may write them, or return them (`core.db.Insert`)
    # to be inserted with the audit event in one statement.
    after_post: Callable[[Transaction], list[Insert] | None] | None = None
    publish: Callable[[Transaction], None] | None = None  # webhooks; default: to organizations whose customers took part
    audit_action: str | None = None  # a template with {type} and {status}; default "{type}.{status}"
    audit_data: dict = field(default_factory=dict)
    reversal_of: Transaction | None = None  # a reversal (`wallets.movements.reversals`): the transaction it reverses, locked by the caller
    rates: RateBook | None = None  # reference rates the entry point already used (a fee's minimum); else the path's own

    @property
    def customer(self) -> Customer | None:
        return self.wallet.customer if self.wallet is not None and self.wallet.customer_id else None


@dataclass
class MovementResult:
    transaction: Transaction | None
    error: CofferError | None = None
    decision: RiskDecision | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> Transaction:
        if self.error is not None:
            raise self.error
        assert self.transaction is not None
        return self.transaction


def _controls(customer: Customer | None, known: Organization | None = None) -> tuple[bool, bool]:
    """(limits apply, risk rules apply) to `customer`: their organization's choice, else yes."""
    if customer is None or customer.organization_id is None:
        return True, True
    organization = known if known is not None and known.pk == customer.organization_id else customer.organization
    return organization.limits_enabled, organization.risk_rules_enabled


def _read_ahead(movement: MoneyMovement, locked: dict[int, Customer], customer: Customer | None, risk_runs: bool, now, rates: RateBook):
    """What the limits and the velocity rule need, read in ONE statement after the customers
    are locked (so it sees every earlier movement of theirs committed): each limited scope's
    usage today and this month, and the checked wallet's recent outgoing movements per velocity
    window. Returns ({scope index: (daily, monthly)}, {window minutes: count})."""
    parts: list[str] = []
    params: list = []
    usage_at: dict[int, int] = {}
    for i, scope in enumerate(movement.limits):
        subject = locked.get(scope.customer_id) if scope.customer_id is not None else customer
        if subject is None or not _controls(subject, movement.organization)[0]:
            continue
        column = limits_usage_needed(
            customer=subject, asset=scope.asset, movement_type=scope.movement_type, direction=scope.direction, rates=rates
        )
        if column is None:
            continue
        sql, values = usage_subqueries(
            customer_id=subject.pk, asset_id=scope.asset.pk, movement_type=scope.movement_type, direction=scope.direction, now=now,
            reference=column == "reference",
        )
        usage_at[i] = len(parts)
        parts += sql
        params += values
    windows_at: dict[int, int] = {}
    if risk_runs and movement.direction == Direction.OUTGOING:
        for minutes, cap in velocity_windows().items():
            sql, values = wallet_outgoing_count_subquery(wallet_id=movement.wallet.pk, since=now - dt.timedelta(minutes=minutes), cap=cap)
            windows_at[minutes] = len(parts)
            parts.append(sql)
            params += values
    if not parts:
        return {}, {}
    row = query("SELECT " + ", ".join(parts), params, one=True)
    usage = {i: (usage_value(row[at]), usage_value(row[at + 1])) for i, at in usage_at.items()}
    return usage, {minutes: row[at] for minutes, at in windows_at.items()}


def _checks(movement: MoneyMovement, rates: RateBook) -> tuple[RiskDecision, str | None]:
    """lock -> limits -> 2FA -> risk. Raises LIMIT_EXCEEDED / 2FA_*; returns the risk decision
    (a rejection already recorded in the audit chain) and the 2FA method used."""
    own = movement.customer
    to_lock = sorted({*movement.customers, *([own.pk] if own is not None else [])})
    if own is not None and getattr(movement.wallet, "customer_locked", False):
        # the entry point's wallet read locked it (ledger.selectors.wallets_with_owners): fine
        # only when it is the one customer to lock, else the ascending order would break
        if to_lock != [own.pk]:
            raise RuntimeError("a movement locking several customers must let the money path lock them all")
        locked = {own.pk: own}
    else:
        locked = customers_lock(to_lock) if to_lock else {}
    customer = locked.get(own.pk) if own is not None else None
    now = timezone.now()
    only_kinds = None if customer is not None and _controls(customer, movement.organization)[1] else SANCTIONS_ONLY
    risk_runs = movement.risk and movement.wallet is not None and (only_kinds is None or bool(movement.beneficiary_name))
    usage, outgoing_counts = _read_ahead(movement, locked, customer, risk_runs and only_kinds is None, now, rates)
    for i, scope in enumerate(movement.limits):
        subject = locked.get(scope.customer_id) if scope.customer_id is not None else customer
        if subject is None or not _controls(subject, movement.organization)[0]:
            continue
        limits_enforce(
            customer=subject, asset=scope.asset, movement_type=scope.movement_type, direction=scope.direction,
            amount=scope.amount, now=now, usage=usage.get(i, (Decimal(0), Decimal(0))), rates=rates,
        )
    method = None
    if movement.step_up and isinstance(movement.actor, User) and movement.wallet is not None:
        method = twofactor_require(
            user=movement.actor, amount=movement.amount, currency=movement.wallet.asset.code, code=movement.two_factor_code,
            exponent=movement.wallet.asset.exponent, rates=rates,
        )
    if not risk_runs:
        return RiskDecision(action="allow"), method
    asset = movement.wallet.asset
    decision = risk_evaluate(
        customer=customer, wallet=movement.wallet, movement_type=movement.movement_type, amount=movement.amount,
        asset=asset, beneficiary_name=movement.beneficiary_name, now=now, direction=movement.direction, only_kinds=only_kinds,
        outgoing_counts=outgoing_counts,
    )
    if decision.rejected:
        risk_reject_record(
            decision=decision, customer=customer if customer is not None else movement.organization, wallet=movement.wallet,
            asset=asset, movement_type=movement.movement_type, direction=movement.direction, amount=movement.amount,
            beneficiary_name=movement.beneficiary_name, actor=movement.actor,
        )
    return decision, method


def _webhook_payload(tx: Transaction, movement: MoneyMovement) -> dict[str, Any]:
    asset = movement.wallet.asset
    return {
        "id": tx.pk, "type": tx.type, "status": tx.status, "amount": format_amount(movement.amount, asset.exponent),
        "currency": asset.code, "created_at": tx.created_at, "completed_at": tx.completed_at,
        "failure_code": tx.failure_code or None,
    }


def _publish_for_organizations(tx: Transaction, movement: MoneyMovement) -> None:
    """`transaction.completed` / `transaction.failed` to every organization whose customer's
    wallet took part (a transfer into an organization customer's wallet); users have none."""
    if tx.status not in (Transaction.Status.COMPLETED, Transaction.Status.FAILED) or movement.wallet is None:
        return
    wallets = [movement.wallet, *movement.counterparty_wallets]
    organizations = {}
    for wallet in wallets:
        customer = wallet.customer if wallet.customer_id else None
        if customer is not None and customer.organization_id is not None:
            organizations[customer.organization_id] = customer.organization
    for organization in organizations.values():
        payload = _webhook_payload(tx, movement)
        payload["wallet_ids"] = sorted(w.pk for w in wallets if w.customer_id and w.customer.organization_id == organization.pk)
        webhook_publish(organization=organization, event_type=f"transaction.{tx.status}", payload=payload, livemode=object_livemode(tx))


def money_path(movement: MoneyMovement) -> MovementResult:
    """Run one movement through the money path (module docstring). Never raises a refusal:
    call `.raise_for_error()` on the result once your own transaction block has closed. A
    posting refused for a used `reference` comes back as the ledger's DuplicateReference with
    the existing transaction, nothing written. Outside a transaction it opens its own."""
    if not connection.in_atomic_block:
        with db_transaction.atomic():
            result = _run(movement)
    else:
        result = _run(movement)
    count_posting(movement.ledger_type, result)  # core.metrics: postings by type and outcome
    return result


def _run(movement: MoneyMovement) -> MovementResult:
    rates = movement.rates if movement.rates is not None else RateBook()  # its checks and its posting use the same rates
    try:
        decision, method = _checks(movement, rates)
    except CofferError as exc:  # limits, 2FA: keep what the checks recorded, answer the refusal
        return MovementResult(transaction=None, error=exc)
    if decision.rejected:
        return MovementResult(transaction=None, error=decision.error(), decision=decision)
    posting = dict(  # an organization's transaction is the organization's (its reference namespace), not its customer's
        type=movement.ledger_type, operations=movement.operations,
        customer=movement.customer if movement.organization is None else None,
        organization=movement.organization, reference=movement.reference,
        description=movement.description, metadata=movement.metadata, rates=rates,
    )
    if movement.reversal_of is not None:
        posting["reversal_of"] = movement.reversal_of
    if decision.needs_review:
        result: PostingResult = ledger_post(**posting, hold_for_review=True)
    elif movement.pending:
        result = ledger_hold_pending(**posting)
    else:
        result = ledger_post(**posting)
    tx = result.transaction
    if tx is not None and movement.wallet is not None:  # the response names them: no re-read
        tx.known_wallets = {w.pk: w for w in [movement.wallet, *movement.counterparty_wallets]}
    if isinstance(result.error, DuplicateReference):
        return MovementResult(transaction=tx, error=result.error, decision=decision)
    assert tx is not None
    side_rows: list[Insert] = []
    if result.ok:
        if tx.status == Transaction.Status.IN_REVIEW:
            review_case_open(transaction=tx, decision=decision, customer=movement.customer, actor=movement.actor)
        if movement.after_post is not None:
            side_rows += movement.after_post(tx) or []
    if movement.publish is not None:
        movement.publish(tx)
    else:
        _publish_for_organizations(tx, movement)
    asset = movement.wallet.asset if movement.wallet is not None else None
    data = {
        "type": tx.type, "status": tx.status, "two_factor": method, "risk": decision.action, **movement.audit_data,
    }
    if asset is not None:
        data.update(currency=asset.code, amount=format_amount(movement.amount, asset.exponent), wallet_id=movement.wallet.pk)
    if not result.ok:
        data.update(failure_code=tx.failure_code, operation_index=tx.failure_operation_index)
    event = audit_event(
        actor=movement.actor if isinstance(movement.actor, User) else None,
        action=(movement.audit_action or "{type}.{status}").format(type=movement.movement_type, status=tx.status), target=tx, data=data,
    )
    if side_rows:  # the movement's own rows (a payout, its outbox message): now, the response may name them
        insert_all(side_rows)
    insert_later([Insert(event)])  # with the request's idempotency record, one statement (core.db)
    return MovementResult(transaction=tx, error=result.error, decision=decision)
