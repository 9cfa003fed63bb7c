"""The risk step of the money path (SPEC 4 "The money path", SPEC 8, SPEC 11).

`risk_evaluate` runs every active `RiskRule` against one intended movement and returns a
`RiskDecision`: `allow`, `review` (the caller posts with `ledger_post(..., hold_for_review=True)`,
so the transaction is `in_review` with its funds held, and opens a `ReviewCase` with
`review_case_open` in the same database transaction) or `reject`. The strongest action wins
(reject > review > allow); among rules of that action the lowest id names the decision. All
hits are kept in `RiskDecision.hits` for the audit record.

Rule kinds are functions in a registry: `@register_risk_kind("name")` on
`def check(rule: RiskRule, ctx: RiskContext) -> str | None` (a reason when the rule fires, None
otherwise). A `RiskRule(kind="name", action=..., params={...})` row switches it on. Built in:

- velocity (params max_count=100, window_minutes=10): an outgoing movement from a wallet that
  already had `max_count` outgoing movements in the window (so this would be the 101st).
  Counted: distinct ledger transactions debiting the wallet (posted debits, open holds), read
  from two index range scans and capped at max_count: never the wallet's history.
- structuring (min_count=3, window_hours=24, band_percent=10): the movement is within
  `band_percent` % under the customer's single limit for its type, direction and asset
  (limit * 0.9 <= amount <= limit) and, with it, at least `min_count` movements in the same
  direction and asset, each within the band under the single limit of its own type, fall in
  the window (counted like limit usage). All types count, because the daily limit (twice the
  single one by default) already stops three such movements of one type in one UTC day: what
  remains is spreading them over types or across midnight. No single limit (enhanced): never
  fires.
- new_account_large (fraction=0.5, window_hours=24): an outgoing movement above `fraction` of
  the single limit, by a customer created within the window who has no earlier outgoing
  movement (completed, pending or in review) at all.
- amount_threshold (threshold, currency="" = any, movement_types=[] = any, direction="" = any):
  amount >= threshold (in the moving asset's major units).
- sanctions (threshold=90): the beneficiary name, fuzzy-matched (rapidfuzz token_sort_ratio over
  lower-cased, punctuation-free names, so word order does not matter) against every active
  `SanctionsEntry` name and alias, scores >= threshold. Only runs when the money path passes a
  beneficiary name (withdrawal beneficiaries, the owner of a transfer's destination). The
  processed names are kept per process in the rules snapshot (`compliance.rules`), rebuilt
  after a change to the list: ~9 ms per screen against 10,000 entries instead of ~250 ms
  re-reading them. A name cleared against an entry (`SanctionsClearance`, the whitelist of false
  positives kept by `compliance.sanctions`) does not match that entry.
A rule whose kind is not registered is skipped and logged (a misconfiguration must not stop
every payment); its kind cannot be chosen in the admin.

Rejections. The money path (`wallets.pipeline`) records a rejected attempt as an audit event
(`risk_reject_record`, `risk.rejected`: customer, wallet, amount, asset, rule, reason, the
beneficiary masked and keyed-hashed, never in clear: `wallets.beneficiaries.beneficiary_audit_fields`)
and answers `TransactionRejected` (422) in its result, raised by the caller once its
transaction block closed, so the record commits with the answer. No ledger transaction is
created for it: a rejected attempt moves no money; the audit chain is the tamper-evident record
compliance staff read.

Reviews: a `review` decision opens a case (`compliance.review.review_case_open`); a reviewer's
decision posts or releases the held money (`wallets.review`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from compliance.limits import (
    COUNTED_STATUSES,
    UNPOSTED_STATUSES,
    customer_movements,
    default_direction,
    single_limit_in_asset,
)
from compliance.audit import audit_record
from compliance.models import Direction, MovementType, RiskRule, SanctionsEntry
from compliance.rules import rules
from core.errors import CofferError
from core.money import format_amount
from ledger.models import Entry, Transaction, Wallet
from wallets.beneficiaries import beneficiary_audit_fields

logger = logging.getLogger("coffer.compliance.risk")

ALLOW, REVIEW, REJECT = "allow", "review", "reject"
_STRENGTH = {ALLOW: 0, REVIEW: 1, REJECT: 2}


class TransactionRejected(CofferError):
    code, status = "TRANSACTION_REJECTED", 422
    default_message = "This transaction was blocked by a risk rule."


@dataclass(frozen=True)
class RiskContext:
    customer: Any
    wallet: Wallet
    asset: Any
    movement_type: str
    direction: str
    amount: Decimal
    beneficiary_name: str | None
    now: dt.datetime
    outgoing_counts: dict[int, int] = field(default_factory=dict)  # window minutes -> count, read by the caller


@dataclass(frozen=True)
class RiskDecision:
    action: str
    rule: RiskRule | None = None
    reason: str = ""
    hits: tuple[tuple[RiskRule, str], ...] = field(default=(), repr=False)

    @property
    def allowed(self) -> bool:
        return self.action == ALLOW

    @property
    def needs_review(self) -> bool:
        return self.action == REVIEW

    @property
    def rejected(self) -> bool:
        return self.action == REJECT

    def error(self) -> TransactionRejected:
        # The rule and reason stay internal (audit chain, admin): telling a customer that a
        # sanctions screen matched them would tip them off.
        return TransactionRejected("This transaction was blocked by our compliance checks.")

    def raise_for_reject(self) -> RiskDecision:
        if self.rejected:
            raise self.error()
        return self


RiskCheck = Callable[[RiskRule, RiskContext], "str | None"]
_REGISTRY: dict[str, RiskCheck] = {}


def register_risk_kind(name: str) -> Callable[[RiskCheck], RiskCheck]:
    """Decorator: make `name` a rule kind. Re-registering a name replaces its function."""

    def decorator(func: RiskCheck) -> RiskCheck:
        _REGISTRY[name] = func
        return func

    return decorator


def unregister_risk_kind(name: str) -> None:
    _REGISTRY.pop(name, None)


def risk_kinds() -> list[str]:
    return sorted(_REGISTRY)


def _decimal_param(rule: RiskRule, name: str, default: str) -> Decimal:
    value = (rule.params or {}).get(name, default)
    if isinstance(value, float):  # admin JSON may carry a float; go through its repr, not binary
        value = repr(value)
    return Decimal(str(value))


def _int_param(rule: RiskRule, name: str, default: int) -> int:
    return int((rule.params or {}).get(name, default))


# --------------------------------------------------------------------------------------------
# Built-in kinds
# --------------------------------------------------------------------------------------------


def _outgoing_count_sql(*, wallet_id: int, since: dt.datetime, cap: int) -> tuple[str, list]:
    """Distinct transactions taking money out of the wallet since `since` that are completed,
    pending or in review, at most `cap`.

    A loose index scan of the wallet's posting rows (`posting_source_wallet`: source wallet,
    transaction): each step is one descent to the next older transaction naming the wallet as a
    source and one read of that transaction's time and status by its key; the walk stops at the
    first transaction created before `since` (transaction ids
    follow creation time) or after `max_steps` transactions. Postings are written for every
    status, so posted, held and in-flight movements are all seen, each once however many legs it
    has. Each step is a LATERAL subquery with the one transaction it names: there is no join
    for the planner to turn into a hash of `ledger_transaction` (a scan of every transaction of
    the platform, which it chose under statistics of a few hundred transactions).
    Cost: the wallet's transactions in the window, never its history; and no partitioned
    table is read, so the statement locks a few relations, not every month of `ledger_entry` and
    their indexes (a generic plan locks all partitions before it prunes them)."""
    counted = [str(s) for s in COUNTED_STATUSES]
    status_list = ", ".join(["%s"] * len(counted))
    max_steps = max(10 * cap, 1000)  # failed attempts in the window are walked too; a hard bound all the same
    sql = (
        "(WITH RECURSIVE walk(tx, at, status, steps) AS ("
        " SELECT t.id, t.created_at, t.status, 1 FROM ledger_transaction t"
        " WHERE t.id = (SELECT p.transaction_id FROM ledger_posting p WHERE p.source_wallet_id = %s"
        " ORDER BY p.transaction_id DESC LIMIT 1)"
        " UNION ALL"
        " SELECT step.id, step.created_at, step.status, walk.steps + 1 FROM walk CROSS JOIN LATERAL ("
        "  SELECT t.id, t.created_at, t.status FROM ledger_transaction t"
        "  WHERE t.id = (SELECT p.transaction_id FROM ledger_posting p WHERE p.source_wallet_id = %s AND p.transaction_id < walk.tx"
        "  ORDER BY p.transaction_id DESC LIMIT 1) LIMIT 1) step"  # LIMIT: kept a subquery, not pulled up into a join
        " WHERE walk.at >= %s AND walk.steps < %s)"
        f" SELECT count(*) FROM (SELECT 1 FROM walk WHERE walk.at >= %s AND walk.status IN ({status_list}) LIMIT %s) AS counted)"
    )
    return sql, [wallet_id, wallet_id, since, max_steps, since, *counted, cap]


def wallet_outgoing_count(*, wallet: Wallet, since: dt.datetime, cap: int = 10_000) -> int:
    """Distinct ledger transactions taking money out of `wallet` since `since`, counted up to
    `cap` (the velocity rule only needs to know it passed); see `_outgoing_count_sql`."""
    sql, params = _outgoing_count_sql(wallet_id=wallet.pk, since=since, cap=cap)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + sql, params)
        return min(cursor.fetchone()[0], cap)


def wallet_outgoing_count_subquery(*, wallet_id: int, since: dt.datetime, cap: int) -> tuple[str, list]:
    """`wallet_outgoing_count` as a scalar subquery, for a caller that reads several things in
    one statement (the money path)."""
    return _outgoing_count_sql(wallet_id=wallet_id, since=since, cap=cap)


def velocity_windows() -> dict[int, int]:
    """Window minutes -> the highest max_count among the active velocity rules of that window
    (a count capped there answers every one of them)."""
    windows: dict[int, int] = {}
    for rule in rules().risk:
        if rule.kind == "velocity":
            minutes = _int_param(rule, "window_minutes", 10)
            windows[minutes] = max(windows.get(minutes, 0), _int_param(rule, "max_count", 100))
    return windows


@register_risk_kind("velocity")
def _velocity(rule: RiskRule, ctx: RiskContext) -> str | None:
    if ctx.direction != Direction.OUTGOING:
        return None
    max_count = _int_param(rule, "max_count", 100)
    minutes = _int_param(rule, "window_minutes", 10)
    earlier = ctx.outgoing_counts.get(minutes)  # read ahead, capped at the highest max_count of the window
    if earlier is None:
        earlier = wallet_outgoing_count(wallet=ctx.wallet, since=ctx.now - dt.timedelta(minutes=minutes), cap=max_count)
    if earlier + 1 > max_count:
        return f"{earlier + 1} outgoing movements from wallet {ctx.wallet.pk} within {minutes} minutes (more than {max_count})"
    return None


def _single_limit(ctx: RiskContext, movement_type: str | None = None) -> Decimal | None:
    """The customer's single limit for the movement's scope in the asset's units (a default
    rule's reference amount converted at today's rate: `compliance.limits`)."""
    return single_limit_in_asset(
        customer=ctx.customer, asset=ctx.asset, movement_type=movement_type or ctx.movement_type, direction=ctx.direction
    )


@register_risk_kind("structuring")
def _structuring(rule: RiskRule, ctx: RiskContext) -> str | None:
    if ctx.customer.pk is None:
        return None
    band = _decimal_param(rule, "band_percent", "10")
    hours = _int_param(rule, "window_hours", 24)
    min_count = _int_param(rule, "min_count", 3)

    def band_of(single: Decimal | None) -> tuple[Decimal, Decimal] | None:
        return None if single is None else (single * (Decimal(100) - band) / Decimal(100), single)

    own = band_of(_single_limit(ctx))
    if own is None or not own[0] <= ctx.amount <= own[1]:
        return None
    since = ctx.now - dt.timedelta(hours=hours)
    count = 1
    for movement_type in MovementType.values:  # each earlier movement against its own type's limit
        limits = band_of(_single_limit(ctx, movement_type))
        if limits is None:
            continue
        earlier = customer_movements(
            customer=ctx.customer, asset=ctx.asset, movement_type=movement_type, direction=ctx.direction, since=since
        )
        count += sum(1 for m in earlier if limits[0] <= m.amount <= limits[1])
    if count >= min_count:
        return (
            f"{count} {ctx.direction} {ctx.asset.code} movements within {hours} h, each within {band}% under the "
            f"single limit of its type"
        )
    return None


def customer_has_outgoing(*, customer) -> bool:
    """Any earlier outgoing movement by the customer (posted, pending or in review), any asset."""
    posted = Entry.objects.filter(
        wallet__customer=customer, direction=Entry.Direction.DEBIT, transaction__status__in=COUNTED_STATUSES
    ).exists()
    if posted:
        return True
    return Transaction.objects.filter(
        customer=customer, status__in=UNPOSTED_STATUSES,
        type__in=[Transaction.Type.WITHDRAWAL, Transaction.Type.TRANSFER, Transaction.Type.EXCHANGE],
    ).exists()


@register_risk_kind("new_account_large")
def _new_account_large(rule: RiskRule, ctx: RiskContext) -> str | None:
    if ctx.direction != Direction.OUTGOING or ctx.customer.pk is None:
        return None
    hours = _int_param(rule, "window_hours", 24)
    created = ctx.customer.created_at
    if created is None or created < ctx.now - dt.timedelta(hours=hours):
        return None
    single = _single_limit(ctx)
    if single is None:
        return None
    fraction = _decimal_param(rule, "fraction", "0.5")
    threshold = single * fraction
    if ctx.amount <= threshold or customer_has_outgoing(customer=ctx.customer):
        return None
    exp = ctx.asset.exponent
    return (
        f"First outgoing movement, within {hours} h of sign-up, over {fraction} of the single limit "
        f"({format_amount(ctx.amount, exp)} > {format_amount(threshold, exp)} {ctx.asset.code})"
    )


@register_risk_kind("amount_threshold")
def _amount_threshold(rule: RiskRule, ctx: RiskContext) -> str | None:
    params = rule.params or {}
    currency = (params.get("currency") or "").upper()
    if currency and currency != ctx.asset.code:
        return None
    types = params.get("movement_types") or []
    if types and ctx.movement_type not in types:
        return None
    direction = params.get("direction") or ""
    if direction and direction != ctx.direction:
        return None
    threshold = _decimal_param(rule, "threshold", "50000")
    if ctx.amount >= threshold:
        exp = ctx.asset.exponent
        return f"Amount {format_amount(ctx.amount, exp)} {ctx.asset.code} at or above {threshold}"
    return None


def sanctions_match(name: str, *, threshold: int | float = 90) -> tuple[SanctionsEntry, str, float] | None:
    """The best-matching active sanctions entry for `name`: (entry, matched name, score), or None
    below `threshold` (0-100). Entries this name was cleared against (`SanctionsClearance`, the
    whitelist of false positives) are skipped; the whitelist is read only when a name matched."""
    from compliance.sanctions import sanctions_candidates

    for entry_id, matched, score in sanctions_candidates(name, threshold=threshold):
        entry = SanctionsEntry.objects.filter(pk=entry_id).first()
        if entry is not None:  # else deleted since the index was built
            return entry, matched, score
    return None


@register_risk_kind("sanctions")
def _sanctions(rule: RiskRule, ctx: RiskContext) -> str | None:
    if not ctx.beneficiary_name:
        return None
    threshold = float(_decimal_param(rule, "threshold", "90"))
    found = sanctions_match(ctx.beneficiary_name, threshold=threshold)
    if found is None:
        return None
    entry, matched, score = found
    where = f" ({entry.source} {entry.list_id})".rstrip() if (entry.source or entry.list_id) else ""
    # The entry by id and list, never the name that matched: the reason goes into the audit chain,
    # where a name close to the beneficiary's must not be written (the reviewer opens the entry).
    return f"Beneficiary matches sanctions entry {entry.pk}{where} with score {score:.0f}"


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def risk_evaluate(
    *,
    customer,
    wallet: Wallet,
    movement_type: str,
    amount: Decimal,
    asset,
    beneficiary_name: str | None = None,
    now: dt.datetime | None = None,
    direction: str | None = None,
    only_kinds: frozenset[str] | None = None,
    outgoing_counts: dict[int, int] | None = None,
) -> RiskDecision:
    """Run the active rules (module docstring), or only those of `only_kinds` (an organization
    that turned its risk rules off still gets the sanctions screen). Reads only; records nothing."""
    ctx = RiskContext(
        customer=customer, wallet=wallet, asset=asset, movement_type=movement_type,
        direction=direction or default_direction(movement_type), amount=amount,
        beneficiary_name=(beneficiary_name or "").strip() or None, now=now or timezone.now(),
        outgoing_counts=outgoing_counts or {},
    )
    hits: list[tuple[RiskRule, str]] = []
    for rule in rules().risk:
        if only_kinds is not None and rule.kind not in only_kinds:
            continue
        check = _REGISTRY.get(rule.kind)
        if check is None:
            logger.error("risk rule %s has unknown kind %r; skipped", rule.pk, rule.kind)
            continue
        if rule.action not in (REVIEW, REJECT):
            continue
        reason = check(rule, ctx)
        if reason:
            hits.append((rule, reason))
    if not hits:
        return RiskDecision(action=ALLOW)
    strongest = max(_STRENGTH[r.action] for r, _ in hits)
    rule, reason = next((r, why) for r, why in hits if _STRENGTH[r.action] == strongest)
    return RiskDecision(action=rule.action, rule=rule, reason=reason, hits=tuple(hits))


def risk_hits_data(decision: RiskDecision) -> list[dict[str, Any]]:
    return [{"rule_id": r.pk, "kind": r.kind, "action": r.action, "reason": why} for r, why in decision.hits]


def risk_reject_record(
    *, decision: RiskDecision, customer, wallet: Wallet, asset, movement_type: str, direction: str, amount: Decimal,
    beneficiary_name: str | None = None, actor=None,
) -> None:
    """Append the rejected attempt to the audit chain (in the caller's transaction)."""
    audit_record(
        actor=actor,
        action="risk.rejected",
        target=customer,
        data={
            "wallet_id": wallet.pk, "currency": asset.code, "amount": format_amount(amount, asset.exponent),
            "type": movement_type, "direction": direction, **beneficiary_audit_fields(beneficiary_name),
            "rule_id": decision.rule.pk if decision.rule else None, "rule_kind": decision.rule.kind if decision.rule else "",
            "reason": decision.reason, "hits": risk_hits_data(decision),
        },
    )
