"""Per-customer usage counters: what each posting counts toward its customers' limits.

Invariants:
* Per leg, a movement counts outgoing for the customer owning the source wallet and incoming
  for the one owning the destination, in the leg's asset, under the transaction's movement type
  (`USAGE_TYPES`; an organization transaction by operation: issue = deposit, redeem =
  withdrawal). Not counted: a leg between one customer's wallets, a fee leg (except an
  exchange's, `FEE_INCLUDED_TYPES`).
* A transaction counts while completed, pending or in review, on the UTC day it was created,
  and is released when it fails, is rejected or reversed.
* Only the posting engine writes counters, in the transaction of the posting or transition;
  `usage_charges` is the one definition of what counts (engine, release and recount), so a
  counter always equals `usage_recount` over the posting rows unless a write bypassed the
  engine, which `usage_check` (run by `check_ledger`) reports.
* Each counter also keeps `reference_amount`: the same usage in the reference currency
  (`core.reference`), every leg converted at the rate its posting row stores
  (`Posting.reference_rate`, the rate of the time of the movement) with `to_reference`. The
  default limit rules are enforced against it; rules naming an asset against `amount`. The
  recount converts with the stored rates, so it stays exact however prices move since.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from itertools import groupby
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import F
from django.utils import timezone

from compliance.models import MovementType
from core.reference import to_reference
from ledger.models import Posting, Transaction, UsageCounter, Wallet

ZERO = Decimal(0)
OUTGOING, INCOMING = "outgoing", "incoming"
USAGE_TYPES = frozenset(MovementType.values)
FEE_INCLUDED_TYPES = frozenset({MovementType.EXCHANGE.value})
OPERATION_USAGE = {"issue": MovementType.DEPOSIT.value, "redeem": MovementType.WITHDRAWAL.value, "transfer": MovementType.TRANSFER.value}
COUNTED_STATUSES = frozenset({Transaction.Status.COMPLETED, Transaction.Status.PENDING, Transaction.Status.IN_REVIEW})


class UsageLeg(NamedTuple):
    operation: str  # issue | redeem | transfer
    source: int  # wallet ids, platform shards resolved
    destination: int
    asset_id: int
    amount: Decimal
    rate: Decimal | None = None  # the asset's reference rate stored on the posting row


class Charge(NamedTuple):
    amount: Decimal  # in the asset's major units
    reference: Decimal  # in the reference currency, at the posting's rate

    def __add__(self, other):  # type: ignore[override]
        return Charge(self.amount + other[0], self.reference + other[1])


NO_CHARGE = Charge(ZERO, ZERO)
class WalletOwner(NamedTuple):
    customer_id: int | None
    is_fee_account: bool  # the platform's fee account (a shard of it)


# (customer_id, asset_id, movement_type, direction) -> amount
UsageKey = tuple[int, int, str, str]


def movement_type_of(tx_type: str, operation: str) -> str | None:
    if tx_type == Transaction.Type.LEDGER:
        return OPERATION_USAGE.get(operation)
    return tx_type if tx_type in USAGE_TYPES else None


def usage_charges(*, tx_type: str, legs: Iterable[UsageLeg], owners: Mapping[int, WalletOwner]) -> dict[UsageKey, Charge]:
    """What a transaction of `tx_type` with these legs counts, per customer scope (module
    docstring): the amount, and its reference-currency value leg by leg at the leg's rate.
    `owners` must hold every wallet of the legs."""
    charges: dict[UsageKey, Charge] = defaultdict(lambda: NO_CHARGE)
    for leg in legs:
        movement_type = movement_type_of(tx_type, leg.operation)
        if movement_type is None:
            continue
        src, dst = owners[leg.source], owners[leg.destination]
        if src.customer_id is not None and src.customer_id == dst.customer_id:
            continue
        if dst.is_fee_account and movement_type not in FEE_INCLUDED_TYPES:
            continue
        charge = Charge(leg.amount, to_reference(leg.amount, leg.rate))
        if src.customer_id is not None:
            charges[(src.customer_id, leg.asset_id, movement_type, OUTGOING)] += charge
        if dst.customer_id is not None and not src.is_fee_account:
            charges[(dst.customer_id, leg.asset_id, movement_type, INCOMING)] += charge
    return dict(charges)


def usage_day(created_at: dt.datetime) -> dt.date:
    return created_at.astimezone(dt.timezone.utc).date()


def _upsert_sql() -> str:
    table = UsageCounter._meta.db_table
    return (
        f"INSERT INTO {table} (customer_id, asset_id, movement_type, direction, day, amount, reference_amount, count) VALUES {{rows}}"
        " ON CONFLICT (customer_id, asset_id, movement_type, direction, day) DO UPDATE"
        f" SET amount = {table}.amount + excluded.amount, reference_amount = {table}.reference_amount + excluded.reference_amount,"
        f" count = {table}.count + excluded.count"
    )


USAGE_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s)"


def usage_rows_sql(charges: Mapping[UsageKey, Charge], day: dt.date, sign: int = 1) -> tuple[str, list]:
    """The VALUES rows of a counter upsert (for the engine's single write statement too)."""
    rows, params = [], []
    for (customer_id, asset_id, movement_type, direction), (amount, reference) in sorted(charges.items()):
        rows.append(USAGE_ROW)
        params += [customer_id, asset_id, movement_type, direction, day, sign * amount, sign * reference, sign]
    return ", ".join(rows), params


def usage_apply(charges: Mapping[UsageKey, Charge], *, day: dt.date, sign: int = 1) -> None:
    """Add (sign=1) or release (sign=-1) `charges` on `day`, in the caller's transaction. Adding
    is one statement; rows go in key order so two postings never wait on each other's counters
    in opposite orders. Releasing updates the rows the charge wrote (an upsert's candidate row
    would fail the counters' CHECK before its conflict is found)."""
    if not charges:
        return
    if connection.vendor != "postgresql":
        _apply_exactly(charges, day=day, sign=sign)
        return
    if sign < 0:
        for (customer_id, asset_id, movement_type, direction), (amount, reference) in sorted(charges.items()):
            UsageCounter.objects.filter(
                customer_id=customer_id, asset_id=asset_id, movement_type=movement_type, direction=direction, day=day
            ).update(amount=F("amount") - amount, reference_amount=F("reference_amount") - reference, count=F("count") - 1)
        return
    rows, params = usage_rows_sql(charges, day, sign)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql().format(rows=rows), params)


def _apply_exactly(charges: Mapping[UsageKey, Charge], *, day: dt.date, sign: int) -> None:
    """SQLite (a development database) stores NUMERIC as floating point, so `amount + x` in SQL
    drifts: add in Python, on the Decimal read back (writers are serialised there), never below
    zero."""
    for (customer_id, asset_id, movement_type, direction), (amount, reference) in sorted(charges.items()):
        counter, _ = UsageCounter.objects.get_or_create(
            customer_id=customer_id, asset_id=asset_id, movement_type=movement_type, direction=direction, day=day
        )
        counter.amount = max(counter.amount + sign * amount, ZERO)
        counter.reference_amount = max(counter.reference_amount + sign * reference, ZERO)
        counter.count = max(counter.count + sign, 0)
        counter.save(update_fields=["amount", "reference_amount", "count"])


def wallet_owners(wallet_ids: Iterable[int]) -> dict[int, WalletOwner]:
    rows = Wallet.objects.filter(pk__in=set(wallet_ids)).values_list("pk", "customer_id", "organization_id", "purpose")
    return {
        pk: WalletOwner(customer_id, customer_id is None and organization_id is None and purpose == Wallet.Purpose.FEE)
        for pk, customer_id, organization_id, purpose in rows.iterator()
    }


def transaction_legs(tx: Transaction) -> list[UsageLeg]:
    """The legs of a stored transaction: its posting rows (wallet ids resolved, with their asset
    and the reference rate the posting stored)."""
    rows = Posting.objects.filter(transaction_id=tx.pk).order_by("index").values_list(
        "kind", "source_wallet_id", "destination_wallet_id", "asset_id", "amount", "reference_rate")
    return [UsageLeg(*row) for row in rows]


def transaction_charges(tx: Transaction) -> dict[UsageKey, Charge]:
    if tx.type not in USAGE_TYPES and tx.type != Transaction.Type.LEDGER:
        return {}
    legs = transaction_legs(tx)
    return usage_charges(tx_type=tx.type, legs=legs, owners=wallet_owners(w for leg in legs for w in (leg.source, leg.destination)))


def usage_release(tx: Transaction) -> None:
    """A counted transaction ended without moving money (rejected, failed) or was reversed:
    give its usage back, on the day it was charged."""
    usage_apply(transaction_charges(tx), day=usage_day(tx.created_at), sign=-1)


USAGE_COLUMNS = frozenset({"amount", "reference_amount"})


def usage_subqueries(
    *, customer_id: int, asset_id: int, movement_type: str, direction: str, now: dt.datetime | None = None, reference: bool = False
) -> tuple[list[str], list]:
    """Two scalar subqueries, (today's usage, this month's usage) in UTC over at most 31 counter
    rows, for a caller that reads several things in one statement (the money path): in the
    asset's units, or with `reference` in the reference currency."""
    today = usage_day(now or timezone.now())
    table = UsageCounter._meta.db_table
    column = "reference_amount" if reference else "amount"
    where = f" FROM {table} WHERE customer_id = %s AND asset_id = %s AND movement_type = %s AND direction = %s AND day >= %s AND day <= %s"
    scope = [customer_id, asset_id, movement_type, direction, today.replace(day=1), today]
    return (
        [f"(SELECT coalesce(sum({column}), 0){where} AND day = %s)", f"(SELECT coalesce(sum({column}), 0){where})"],
        [*scope, today, *scope],
    )


def usage_value(raw: Any) -> Decimal:
    if not raw:
        return ZERO
    if isinstance(raw, float):  # SQLite sums its floating-point NUMERIC: its shortest repr is the value
        return Decimal(repr(raw))
    return Decimal(raw).normalize()


def customer_usage(
    *, customer_id: int, asset_id: int, movement_type: str, direction: str, now: dt.datetime | None = None, reference: bool = False
) -> tuple[Decimal, Decimal]:
    """(today's usage, this month's usage) in UTC, from at most 31 counter rows: one statement
    (in the reference currency with `reference`)."""
    parts, params = usage_subqueries(
        customer_id=customer_id, asset_id=asset_id, movement_type=movement_type, direction=direction, now=now, reference=reference
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        daily, monthly = cursor.fetchone()
    return usage_value(daily), usage_value(monthly)


def usage_recount(*, since: dt.date | None = None) -> dict[tuple[UsageKey, dt.date], Charge]:
    """Usage recounted from the ledger (every counted transaction, optionally from `since`)."""
    postings = Posting.objects.filter(transaction__status__in=COUNTED_STATUSES, transaction__type__in=[*USAGE_TYPES, Transaction.Type.LEDGER])
    if since is not None:
        postings = postings.filter(transaction__created_at__gte=dt.datetime.combine(since, dt.time.min, tzinfo=dt.timezone.utc))
    owners = wallet_owners(Wallet.objects.values_list("pk", flat=True))
    totals: dict[tuple[UsageKey, dt.date], Charge] = defaultdict(lambda: NO_CHARGE)
    rows = (
        postings.order_by("transaction_id", "index")
        .values_list(
            "transaction_id", "transaction__type", "transaction__created_at", "kind", "source_wallet_id", "destination_wallet_id",
            "asset_id", "amount", "reference_rate",
        )
    )
    # values_list, not model instances: django-fsm would re-read each deferred status
    for _, group in groupby(rows.iterator(chunk_size=2000), key=lambda row: row[0]):
        group = list(group)
        tx_type, created_at = group[0][1], group[0][2]
        legs = [UsageLeg(*row[3:]) for row in group]
        day = usage_day(created_at)
        for key, amount in usage_charges(tx_type=tx_type, legs=legs, owners=owners).items():
            totals[(key, day)] += amount
    return dict(totals)


def usage_check(*, since: dt.date | None = None, limit: int = 100) -> list[str]:
    """Every counter that differs from the recount (empty: counters are exact)."""
    expected = usage_recount(since=since)
    stored: dict[tuple[UsageKey, dt.date], Charge] = {}
    counters = UsageCounter.objects.all()
    if since is not None:
        counters = counters.filter(day__gte=since)
    for c in counters.iterator():
        stored[((c.customer_id, c.asset_id, c.movement_type, c.direction), c.day)] = Charge(c.amount, c.reference_amount)
    problems = []
    # SQLite keeps about 15 significant digits of a NUMERIC: compare what it can hold there.
    exact = connection.vendor == "postgresql"
    for key in sorted(set(expected) | set(stored), key=repr):
        for what, want, have in zip(("", "reference "), expected.get(key, NO_CHARGE), stored.get(key, NO_CHARGE)):
            if want != have and (exact or abs(want - have) > abs(want) * Decimal("1e-13") + Decimal("1e-12")):
                (customer_id, asset_id, movement_type, direction), day = key
                problems.append(
                    f"usage customer {customer_id} asset {asset_id} {movement_type} {direction} {day}: {what}counter {have} but the ledger counts {want}"
                )
        if len(problems) >= limit:
            break
    return problems
