"""Transaction limits per KYC level (SPEC 6 limits endpoints, SPEC 11 defaults, issue 5 item 7).

Rules. `LimitRule(kyc_level, movement_type, direction, currency)`: a rule naming the asset's
code wins over the blank-currency rule. A rule naming an asset is in that asset's major units;
the blank-currency rule (the default) is in the reference currency (`LIMITS_REFERENCE_CURRENCY`,
`core.reference`): a movement is converted at the price provider's rate at the time of the
movement and compared with the counters' reference usage (each earlier movement at the rate of
its own time, stored on its posting rows), so "USD 1,000" means the same in BTC as in EUR. An
asset the provider cannot price (a custom asset) is limited only by rules naming it. NULL is no
limit; no rule at all is no limit (the seed migration writes a rule for every level and every
movement a customer's money takes, enhanced with NULLs). Rules are read through
`compliance.rules` (a per-process snapshot, reloaded when an admin changes one).

Usage comes from the per-customer counters the posting engine keeps (`ledger.usage`: what
counts, per leg, and when a movement is released): today's and this month's usage (UTC) of a
scope are one statement over at most 31 counter rows, whatever the customer's history. A
movement counts on the day it was requested, also when a reviewer approves it later.

Racing requests. `limits_enforce` must run inside the posting's database transaction after
`customer_lock` has locked the customer row (STYLE 4 lock order: customer, then wallets). Two
requests of the same customer then run their check-and-post one after the other, and the second
reads the counters after the first committed (READ COMMITTED), so together they cannot pass a
daily limit.

`customer_movements` (the customer's individual movements in a window, from the ledger) is
kept for the structuring risk rule, which needs amounts one by one; it runs only for a movement
that is itself just under a single limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from accounts.models import Customer, Organization
from compliance.models import Direction, LimitRule, MovementType
from compliance.rules import rules
from core.db import model_columns, model_from_row, query
from core.errors import CofferError, ValidationFailed
from core.money import MONEY_CONTEXT, format_amount
from core.reference import RateBook, from_reference, reference_currency, reference_exponent, to_reference
from ledger.models import Entry, Posting, Transaction, Wallet
from ledger.usage import FEE_INCLUDED_TYPES, customer_usage

ZERO = Decimal(0)
COUNTED_STATUSES = (Transaction.Status.COMPLETED, Transaction.Status.PENDING, Transaction.Status.IN_REVIEW)
UNPOSTED_STATUSES = (Transaction.Status.IN_REVIEW, Transaction.Status.PENDING)
FEE_PURPOSE = Wallet.Purpose.FEE
# Movements whose fee is part of the amount the customer asked to move (an exchange's fee comes
# out of its source amount, and `exchange_execute` enforces the whole source amount): their fee
# legs count. Elsewhere the fee comes on top (withdrawals) and is left out.


class LimitExceeded(CofferError):
    code, status = "LIMIT_EXCEEDED", 422
    default_message = "This movement exceeds a limit of the customer's KYC level."


def default_direction(movement_type: str) -> str:
    """Money comes in with deposits and settlements; everything else a customer starts goes out."""
    return Direction.INCOMING if movement_type in (MovementType.DEPOSIT, MovementType.SETTLEMENT) else Direction.OUTGOING


def _check_scope(movement_type: str, direction: str) -> None:
    errors: dict[str, list[str]] = {}
    if movement_type not in MovementType.values:
        errors["type"] = [f"One of {', '.join(MovementType.values)}."]
    if direction not in Direction.values:
        errors["direction"] = [f"One of {', '.join(Direction.values)}."]
    if errors:
        raise ValidationFailed("Invalid limit scope: " + ", ".join(errors), details={"fields": errors})


# --------------------------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------------------------


def customer_lock(customer: Customer | int, *others: Customer | int | None) -> Customer:
    """Lock the customer row (and any `others`, e.g. a transfer's recipient) FOR NO KEY UPDATE,
    in ascending id order, and return the freshly read first customer (its KYC level as of now).
    NO KEY: it serialises the customer's movements among themselves but not the foreign-key
    checks of other postings that charge this customer's usage counters (a payment into the
    customer would otherwise wait for it, and deadlock with it when the customer pays back).
    Must run inside `transaction.atomic()`: the lock lasts until that transaction ends."""
    if not connection.in_atomic_block:
        raise RuntimeError("customer_lock must be called inside transaction.atomic(): the lock ends with the transaction")
    first_pk = customer.pk if isinstance(customer, Customer) else customer
    locked = customers_lock([first_pk, *(o.pk if isinstance(o, Customer) else o for o in others if o is not None)])
    if first_pk not in locked:
        raise Customer.DoesNotExist(f"customer {first_pk} not found")
    return locked[first_pk]


def customers_lock(pks) -> dict[int, Customer]:
    """`customer_lock` for several customers at once: every one of them, freshly read, by id
    (their organizations with them), locked in ascending id order in one statement."""
    if not connection.in_atomic_block:
        raise RuntimeError("customers_lock must be called inside transaction.atomic(): the lock ends with the transaction")
    ids = sorted(set(pks))
    qn = connection.ops.quote_name
    sql = (  # written out, not compiled by the ORM on every money request
        f"SELECT {model_columns(Customer, 'c')}, {model_columns(Organization, 'o')}"
        f" FROM {qn(Customer._meta.db_table)} c LEFT JOIN {qn(Organization._meta.db_table)} o ON o.id = c.organization_id"
        f" WHERE c.id IN ({', '.join(['%s'] * len(ids))}) ORDER BY c.id"
        + (" FOR NO KEY UPDATE OF c" if connection.vendor == "postgresql" else "")
    )
    locked: dict[int, Customer] = {}
    for row in query(sql, ids):
        customer, at = model_from_row(Customer, row, 0)
        organization, _ = model_from_row(Organization, row, at)
        Customer._meta.get_field("organization").set_cached_value(customer, organization)
        locked[customer.pk] = customer
    return locked


# --------------------------------------------------------------------------------------------
# Usage from the ledger
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Movement:
    transaction_id: int
    amount: Decimal
    created_at: dt.datetime
    status: str


def day_start(now: dt.datetime) -> dt.datetime:
    now = now.astimezone(dt.timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: dt.datetime) -> dt.datetime:
    return day_start(now).replace(day=1)


def _own_wallet_ids(customer: Customer, asset) -> set[int]:
    return set(Wallet.objects.filter(customer=customer, asset=asset).values_list("pk", flat=True))


def _posted_movements(own: set[int], movement_type: str, direction: str, since: dt.datetime) -> dict[int, Movement]:
    side, other_side = (
        (Entry.Direction.DEBIT, Entry.Direction.CREDIT) if direction == Direction.OUTGOING else (Entry.Direction.CREDIT, Entry.Direction.DEBIT)
    )
    not_counted = Q(wallet_id__in=own)
    if movement_type not in FEE_INCLUDED_TYPES:
        not_counted |= Q(wallet__purpose=FEE_PURPOSE, wallet__customer__isnull=True, wallet__organization__isnull=True)
    excluded_counterpart = Entry.objects.filter(
        transaction_id=OuterRef("transaction_id"), operation_index=OuterRef("operation_index"), direction=other_side
    ).filter(not_counted)
    rows = (
        Entry.objects.filter(
            wallet_id__in=own,
            direction=side,
            transaction__type=movement_type,
            transaction__status__in=COUNTED_STATUSES,
            transaction__created_at__gte=since,
        )
        .filter(~Exists(excluded_counterpart))
        .values("transaction_id", "transaction__created_at", "transaction__status")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {
        r["transaction_id"]: Movement(r["transaction_id"], r["total"], r["transaction__created_at"], r["transaction__status"])
        for r in rows
    }


def _unposted_movements(own: set[int], movement_type: str, direction: str, since: dt.datetime) -> dict[int, Movement]:
    """Transactions holding funds (in review, or pending without entries) count from their
    posting rows: the legs that leave (outgoing) or enter (incoming) the customer's wallets,
    fee legs only where the fee is part of the amount asked to move. Summed in Python: exact
    on every database."""
    if direction == Direction.OUTGOING:
        counted, fee_leg = Q(source_wallet_id__in=own) & ~Q(destination_wallet_id__in=own), Q(destination_purpose=FEE_PURPOSE)
    else:
        counted, fee_leg = Q(destination_wallet_id__in=own) & ~Q(source_wallet_id__in=own), Q(source_purpose=FEE_PURPOSE)
    postings = Posting.objects.filter(
        counted, transaction__type=movement_type, transaction__status__in=UNPOSTED_STATUSES, transaction__created_at__gte=since
    ).filter(~Exists(Entry.objects.filter(transaction_id=OuterRef("transaction_id"))))
    if movement_type not in FEE_INCLUDED_TYPES:
        postings = postings.exclude(fee_leg)
    found: dict[int, Movement] = {}
    for tx_id, created_at, status, amount in postings.values_list("transaction_id", "transaction__created_at", "transaction__status", "amount"):
        previous = found.get(tx_id)
        found[tx_id] = Movement(tx_id, (previous.amount if previous else ZERO) + amount, created_at, status)
    return found


def customer_movements(
    *, customer: Customer, asset, movement_type: str, direction: str, since: dt.datetime
) -> list[Movement]:
    """The customer's counted movements since `since`, oldest first (see the module docstring)."""
    if customer.pk is None:  # an unsaved profile has no wallets
        return []
    own = _own_wallet_ids(customer, asset)
    if not own:
        return []
    found = _posted_movements(own, movement_type, direction, since)
    found.update(_unposted_movements(own, movement_type, direction, since))
    return sorted(found.values(), key=lambda m: (m.created_at, m.transaction_id))


# --------------------------------------------------------------------------------------------
# Rules and status
# --------------------------------------------------------------------------------------------


def limit_rule_for(*, kyc_level: str, movement_type: str, direction: str, currency: str) -> LimitRule | None:
    return rules().limit_rule(kyc_level=kyc_level, movement_type=movement_type, direction=direction, currency=currency)


@dataclass(frozen=True)
class LimitUnits:
    """How a scope's limits are compared: `reference` True for a default rule (blank currency,
    amounts in the reference currency, compared at `rate`), False for a rule naming the asset
    (its own units) or no rule. `rate`: one unit of the asset in the reference currency, when
    known."""

    rule: LimitRule | None
    reference: bool
    rate: Decimal | None


def limit_units(*, customer: Customer, asset, movement_type: str, direction: str, rates: RateBook | None = None, show_rate: bool = False) -> LimitUnits:
    """The rule of a scope and its units (module docstring). A default rule needs the asset's
    rate (PriceUnavailable when the provider cannot answer); an asset the provider cannot price
    has no rate, and the default rule does not apply to it (only a rule naming it does).
    `show_rate`: look the rate up for display even when the rule does not need it (never raises)."""
    rule = limit_rule_for(kyc_level=customer.kyc_level, movement_type=movement_type, direction=direction, currency=asset.code)
    if rule is not None and not rule.currency:
        rate = (rates or RateBook()).rate(asset.code)
        if rate is None:
            return LimitUnits(rule=None, reference=False, rate=None)
        return LimitUnits(rule=rule, reference=True, rate=rate)
    rate = (rates or RateBook()).stored(asset.code) if show_rate else None
    return LimitUnits(rule=rule, reference=False, rate=rate)


def single_limit_in_asset(*, customer: Customer, asset, movement_type: str, direction: str) -> Decimal | None:
    """The single-transaction limit of a scope in the asset's units, unrounded (the risk rules'
    bands compare amounts of the asset against it), or None for no limit."""
    units = limit_units(customer=customer, asset=asset, movement_type=movement_type, direction=direction)
    if units.rule is None or units.rule.single_limit is None:
        return None
    if not units.reference:
        return units.rule.single_limit
    with localcontext(MONEY_CONTEXT):
        return units.rule.single_limit / units.rate


@dataclass
class LimitStatus:
    """Limits and usage of one scope. `single_limit` .. `monthly_used` are in the asset's major
    units (a default rule's converted at `rate`: limits and remaining rounded down, usage to the
    nearest unit); `ref_*` are the same in the reference currency (None without a rate). With
    `in_reference` the check itself compares the reference values."""

    customer: Customer
    asset: Any
    movement_type: str
    direction: str
    rule: LimitRule | None
    single_limit: Decimal | None
    daily_limit: Decimal | None
    daily_used: Decimal
    monthly_limit: Decimal | None
    monthly_used: Decimal
    amount: Decimal | None = None
    failed_limit: str | None = None  # "single" | "daily" | "monthly"
    in_reference: bool = False
    rate: Decimal | None = None
    reference_currency: str = ""
    ref_single_limit: Decimal | None = None
    ref_daily_limit: Decimal | None = None
    ref_daily_used: Decimal | None = None
    ref_monthly_limit: Decimal | None = None
    ref_monthly_used: Decimal | None = None
    ref_amount: Decimal | None = None

    @property
    def passed(self) -> bool:
        return self.failed_limit is None

    @staticmethod
    def _remaining(limit: Decimal | None, used: Decimal | None) -> Decimal | None:
        return None if limit is None or used is None else max(limit - used, ZERO)

    @property
    def daily_remaining(self) -> Decimal | None:
        if self.in_reference:
            return self._to_asset(self._remaining(self.ref_daily_limit, self.ref_daily_used))
        return self._remaining(self.daily_limit, self.daily_used)

    @property
    def monthly_remaining(self) -> Decimal | None:
        if self.in_reference:
            return self._to_asset(self._remaining(self.ref_monthly_limit, self.ref_monthly_used))
        return self._remaining(self.monthly_limit, self.monthly_used)

    def _to_asset(self, value: Decimal | None, rounding: str = ROUND_FLOOR) -> Decimal | None:
        return None if value is None else from_reference(value, self.rate, self.asset.exponent, rounding=rounding)

    def as_dict(self) -> dict[str, Any]:
        """The SPEC 6 shape (amounts as strings at the asset's exponent, null = no limit), plus
        the scope it was computed for and the reference-currency view: `limit_currency` (what
        the rule is expressed in), `reference_currency`, `rate` (one unit of the asset in it) and
        `reference` (the same figures in the reference currency, null without a rate)."""
        exp = self.asset.exponent

        def fmt(value: Decimal | None, exponent: int = exp) -> str | None:
            return None if value is None else format_amount(value, exponent)

        reference = None
        if self.rate is not None:
            rexp = reference_exponent(self.reference_currency)
            reference = {
                "single_transaction_limit": fmt(self.ref_single_limit, rexp),
                "daily_limit": fmt(self.ref_daily_limit, rexp),
                "daily_used": fmt(self.ref_daily_used, rexp),
                "daily_remaining": fmt(self._remaining(self.ref_daily_limit, self.ref_daily_used), rexp),
                "monthly_limit": fmt(self.ref_monthly_limit, rexp),
                "monthly_used": fmt(self.ref_monthly_used, rexp),
                "monthly_remaining": fmt(self._remaining(self.ref_monthly_limit, self.ref_monthly_used), rexp),
                "amount": fmt(self.ref_amount, rexp),
            }
        return {
            "limit_check": "PASSED" if self.passed else "FAILED",
            "single_transaction_limit": fmt(self.single_limit),
            "daily_limit": fmt(self.daily_limit),
            "daily_used": fmt(self.daily_used),
            "daily_remaining": fmt(self.daily_remaining),
            "monthly_limit": fmt(self.monthly_limit),
            "monthly_used": fmt(self.monthly_used),
            "monthly_remaining": fmt(self.monthly_remaining),
            "failed_limit": self.failed_limit,
            "type": self.movement_type,
            "direction": self.direction,
            "currency": self.asset.code,
            "kyc_level": self.customer.kyc_level,
            "limit_currency": self.reference_currency if self.in_reference else self.asset.code,
            "reference_currency": self.reference_currency,
            "rate": None if self.rate is None else format(self.rate.normalize(), "f"),
            "reference": reference,
        }

    def error(self) -> LimitExceeded:
        assert self.failed_limit is not None
        limit, used = {
            "single": (self.single_limit, ZERO),
            "daily": (self.daily_limit, self.daily_used),
            "monthly": (self.monthly_limit, self.monthly_used),
        }[self.failed_limit]
        assert limit is not None
        exp = self.asset.exponent
        remaining = {"single": limit, "daily": self.daily_remaining, "monthly": self.monthly_remaining}[self.failed_limit]
        remaining = max(remaining if self.failed_limit != "single" else limit - used, ZERO)
        name = "single-transaction" if self.failed_limit == "single" else self.failed_limit
        details = {
            "limit_type": self.failed_limit,
            "limit": format_amount(limit, exp),
            "used": format_amount(used, exp),
            "remaining": format_amount(remaining, exp),
            "requested": format_amount(self.amount or ZERO, exp),
            "currency": self.asset.code,
            "type": self.movement_type,
            "direction": self.direction,
            "kyc_level": self.customer.kyc_level,
            "limit_currency": self.reference_currency if self.in_reference else self.asset.code,
            "reference_currency": self.reference_currency,
            "rate": None if self.rate is None else format(self.rate.normalize(), "f"),
        }
        in_reference = ""
        if self.in_reference:
            rexp = reference_exponent(self.reference_currency)
            ref_limit, ref_used = {
                "single": (self.ref_single_limit, ZERO),
                "daily": (self.ref_daily_limit, self.ref_daily_used),
                "monthly": (self.ref_monthly_limit, self.ref_monthly_used),
            }[self.failed_limit]
            details["reference"] = {
                "limit": format_amount(ref_limit, rexp),
                "used": format_amount(ref_used or ZERO, rexp),
                "remaining": format_amount(max(ref_limit - (ref_used or ZERO), ZERO), rexp),
                "requested": format_amount(self.ref_amount or ZERO, rexp),
            }
            in_reference = f" (worth {format_amount(ref_limit, rexp)} {self.reference_currency})"
        return LimitExceeded(
            f"This {self.movement_type} of {format_amount(self.amount or ZERO, exp)} {self.asset.code} exceeds the {name} "
            f"limit of {format_amount(limit, exp)} {self.asset.code}{in_reference} for KYC level {self.customer.kyc_level}"
            + ("." if self.failed_limit == "single" else f" ({format_amount(remaining, exp)} remaining)."),
            details=details,
        )


def limits_status(
    *,
    customer: Customer,
    asset,
    movement_type: str,
    direction: str | None = None,
    amount: Decimal | None = None,
    now: dt.datetime | None = None,
    always_usage: bool = False,
    usage: tuple[Decimal, Decimal] | None = None,
    rates: RateBook | None = None,
) -> LimitStatus:
    """Limits and usage for one scope (usage is only worked out when a daily or monthly limit
    needs it, or with `always_usage`, as the API shows it even when there is no limit). With `amount`, `failed_limit` names the first limit
    (single, then daily, then monthly) that moving it now would break; without, whether the
    daily or monthly allowance is already used up. A default rule (blank currency) is compared
    in the reference currency: `amount` converted at the asset's rate (`rates`, the movement's
    book) against the counters' reference usage. `usage`, when given, is in the rule's units
    (`limit_units`). Reads only: it locks nothing, so outside `customer_lock` its answer is
    advisory (the API's `/limits` endpoints)."""
    direction = direction or default_direction(movement_type)
    _check_scope(movement_type, direction)
    now = now or timezone.now()
    units = limit_units(customer=customer, asset=asset, movement_type=movement_type, direction=direction, rates=rates, show_rate=always_usage)
    rule, rate = units.rule, units.rate
    single = rule.single_limit if rule else None
    daily = rule.daily_limit if rule else None
    monthly = rule.monthly_limit if rule else None
    daily_used = monthly_used = ZERO
    if usage is not None:  # read by the caller (the money path reads it with the rest, in one statement)
        daily_used, monthly_used = usage
    elif (daily is not None or monthly is not None or always_usage) and customer.pk is not None:
        daily_used, monthly_used = customer_usage(
            customer_id=customer.pk, asset_id=asset.pk, movement_type=movement_type, direction=direction, now=now,
            reference=units.reference,
        )
    status = LimitStatus(
        customer=customer, asset=asset, movement_type=movement_type, direction=direction, rule=rule,
        single_limit=single, daily_limit=daily, daily_used=daily_used, monthly_limit=monthly,
        monthly_used=monthly_used, amount=amount, in_reference=units.reference, rate=rate, reference_currency=reference_currency(),
    )
    wanted = amount if amount is not None else ZERO
    if units.reference:
        status.ref_single_limit, status.ref_daily_limit, status.ref_monthly_limit = single, daily, monthly
        status.ref_daily_used, status.ref_monthly_used = daily_used, monthly_used
        status.ref_amount = to_reference(amount, rate) if amount is not None else None
        wanted = status.ref_amount if amount is not None else ZERO
        status.single_limit, status.daily_limit, status.monthly_limit = (status._to_asset(v) for v in (single, daily, monthly))
        status.daily_used, status.monthly_used = (status._to_asset(v, ROUND_HALF_EVEN) for v in (daily_used, monthly_used))
    elif rate is not None:  # a rule in the asset's own units: the reference view is for display
        status.ref_single_limit, status.ref_daily_limit, status.ref_monthly_limit = (
            None if v is None else to_reference(v, rate) for v in (single, daily, monthly)
        )
        status.ref_daily_used, status.ref_monthly_used = to_reference(daily_used, rate), to_reference(monthly_used, rate)
        status.ref_amount = to_reference(amount, rate) if amount is not None else None
    if amount is not None and single is not None and wanted > single:
        status.failed_limit = "single"
    elif daily is not None and (daily_used + wanted > daily or (amount is None and daily_used >= daily)):
        status.failed_limit = "daily"
    elif monthly is not None and (monthly_used + wanted > monthly or (amount is None and monthly_used >= monthly)):
        status.failed_limit = "monthly"
    return status


def limits_usage_needed(*, customer: Customer, asset, movement_type: str, direction: str, rates: RateBook | None = None) -> str | None:
    """Whether enforcing this scope reads the customer's usage (a daily or monthly limit), and
    in which counter column: None (no), "amount" (a rule naming the asset) or "reference" (a
    default rule, in the reference currency)."""
    units = limit_units(customer=customer, asset=asset, movement_type=movement_type, direction=direction, rates=rates)
    if units.rule is None or (units.rule.daily_limit is None and units.rule.monthly_limit is None):
        return None
    return "reference" if units.reference else "amount"


def limits_needs_usage(*, customer: Customer, asset, movement_type: str, direction: str) -> bool:
    """Whether enforcing this scope reads the customer's usage (a daily or monthly limit)."""
    return limits_usage_needed(customer=customer, asset=asset, movement_type=movement_type, direction=direction) is not None


def limits_enforce(
    *, customer: Customer, asset, movement_type: str, direction: str | None = None, amount: Decimal, now: dt.datetime | None = None,
    usage: tuple[Decimal, Decimal] | None = None, rates: RateBook | None = None,
) -> LimitStatus:
    """Raise `LimitExceeded` (422 LIMIT_EXCEEDED; details: limit_type, limit, used, remaining,
    and the reference-currency figures) if moving `amount` breaks a limit. Call it after
    `customer_lock`, inside the posting's database transaction (module docstring)."""
    if not connection.in_atomic_block:
        raise RuntimeError("limits_enforce must run inside the posting's transaction, after customer_lock")
    status = limits_status(
        customer=customer, asset=asset, movement_type=movement_type, direction=direction, amount=amount, now=now, usage=usage, rates=rates
    )
    if not status.passed:
        raise status.error()
    return status
