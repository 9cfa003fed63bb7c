"""The posting engine: `ledger_post` locks, simulates in memory, then writes, all or none.

Invariants:
* The only writer of balances, holds, postings, entries and usage counters (through
  `ledger.posting.pg` on PostgreSQL, `ledger.posting.orm` elsewhere); all else posts through it.
* Every wallet of a posting (shard rows included) is locked once, in ascending id order, in one
  statement (SPEC 4.7); legs apply in order and after each one no non-issuance wallet's
  available balance (balance - held) is below zero.
* A malformed request (bad amount, unknown wallet, empty list, a wallet to itself) raises and
  records nothing. A refusal on the locked state (WALLET_INACTIVE, CURRENCY_MISMATCH,
  INSUFFICIENT_FUNDS) is recorded as a `failed` transaction and returned in `PostingResult`,
  not raised; a reference the owner already used returns DUPLICATE_REFERENCE with that one.
* Runs in the caller's transaction (no savepoint: nothing is written before validation passes),
  or opens its own when there is none. On PostgreSQL a posting is two statements.
* Every posting row stores its asset's reference rate (`core.reference`), taken from the
  movement's `RateBook` (the money path passes the one its limit check used; no SQL), and the
  usage it charges carries the reference amounts at those rates (`ledger.usage`).
Design notes: docs/ledger.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal, localcontext
from typing import Any, Union

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import InvalidState, ValidationFailed
from core.reference import RateBook
from core.money import MAX_INTEGER_DIGITS, MONEY_CONTEXT, embedded_precision_problem, parse_amount
from ledger.errors import CurrencyMismatch, DuplicateReference, InsufficientFunds, LedgerPostingError, LivemodeMismatch, WalletInactive, WalletNotFound
from ledger.locks import holds_for_update
from ledger.models import Entry, Hold, Posting, Transaction, Wallet, hot_account_shards
from ledger.posting import orm, pg
from ledger.posting.operations import (
    OPERATION_KINDS,
    ZERO,
    Leg,
    Operation,
    Plan,
    PostingResult,
    Side,
    json_dumps,
    legs_of,
    postings_of,
)
from ledger.posting.shards import platform_wallets_ensure
from ledger.usage import UsageLeg, WalletOwner, usage_apply, usage_charges, usage_day

TRANSACTION_TYPES = frozenset(Transaction.Type.values)  # .values rebuilds a list on every access
Row = Union[Wallet, pg.LockedWallet]  # a locked wallet row: a model instance on SQLite, slots on PostgreSQL


def lock(legs: list[Leg], extra_wallet_ids: Iterable[int] = (), db: Any = None) -> tuple[dict[int, Row], dict[Side, Row]]:
    """Lock every wallet of the posting in one statement, in id order. Returns the rows by id
    and the resolution of every leg side to a row."""
    if db is None:
        db = connections[DEFAULT_DB_ALIAS]
    n = hot_account_shards()
    ids: set[int] = set(extra_wallet_ids)
    platform_sides: set[Side] = set()
    for leg in legs:
        for side in (leg.source, leg.destination):
            if side[0] == "w":
                ids.add(side[1])
            else:
                platform_sides.add(side)
                ids.add(side[2])

    def query() -> dict[int, Row]:
        if db.vendor == "postgresql":
            return pg.lock_rows(ids, sorted(platform_sides), n)
        return orm.lock_rows(ids, sorted(platform_sides), n)

    rows = query()
    missing = sorted(ids - rows.keys())
    if missing:
        raise WalletNotFound(f"Wallet {missing[0]} not found.", details={"wallet_id": missing[0]})

    def resolve(rows: dict[int, Row]) -> tuple[dict[Side, Row], set[tuple[int, str, bool]]]:
        # a platform side is its account's shard in the counterparty's mode (core.livemode)
        by_key = {(w.asset_id, w.purpose, w.shard, w.livemode): w for w in rows.values() if w.is_platform}
        resolved: dict[Side, Row] = {}
        absent: set[tuple[int, str, bool]] = set()
        for side in platform_sides:
            _, purpose, cid = side
            key = (rows[cid].asset_id, purpose, cid % n, rows[cid].livemode)
            if key in by_key:
                resolved[side] = by_key[key]
            else:
                absent.add((rows[cid].asset_id, purpose, rows[cid].livemode))
        return resolved, absent

    resolved, absent = resolve(rows)
    if absent:
        for asset_id, purpose, livemode in sorted(absent):
            platform_wallets_ensure(asset=asset_id, purpose=purpose, livemode=livemode)
        rows = query()  # rows already locked are re-locked (a no-op); new shard rows join them
        resolved, absent = resolve(rows)
        assert not absent, absent
    for leg in legs:
        for side in (leg.source, leg.destination):
            if side[0] == "w":
                resolved[side] = rows[side[1]]
    return rows, resolved


def _check_livemode(tx: Transaction, rows: dict[int, Row], *, existing: bool) -> None:
    """Every wallet of a transaction is of one mode, and the transaction is of that mode
    (core.livemode); a mix is refused before anything is written."""
    modes = {bool(w.livemode) for w in rows.values()}
    if len(modes) > 1 or (existing and modes and modes != {bool(tx.livemode)}):
        live = sorted(w.pk for w in rows.values() if w.livemode and not w.is_platform)
        test = sorted(w.pk for w in rows.values() if not w.livemode and not w.is_platform)
        raise LivemodeMismatch(
            "A transaction cannot mix live-mode and test-mode wallets: use the wallets of one mode (a test key's wallets are test mode).",
            details={"live_wallet_ids": live, "test_wallet_ids": test},
        )
    if modes and not existing:
        tx.livemode = modes.pop()


def _parse_amounts(legs: list[Leg], resolved: dict[Side, Row]) -> None:
    for leg in legs:
        exponent = resolved[leg.source].asset.exponent
        leg.amount = parse_amount(leg.raw_amount, exponent=exponent, field=f"operations[{leg.index}].amount")


def _simulate(
    legs: list[Leg], rows: dict[int, Row], resolved: dict[Side, Row], released: dict[int, Decimal]
) -> tuple[Plan, LedgerPostingError | None]:
    """Apply the legs in memory, in order. Returns the plan and the first failure (if any)."""
    plan = Plan(
        balances={wid: w.balance for wid, w in rows.items()},
        held={wid: w.held - released.get(wid, ZERO) for wid, w in rows.items()},
    )
    plan.touched.update(wid for wid, amount in released.items() if amount)
    net: dict[int, Decimal] = {}
    with localcontext(MONEY_CONTEXT):
        for leg in legs:
            src, dst = resolved[leg.source], resolved[leg.destination]
            i = leg.index
            for w in (src, dst):
                if w.status != Wallet.Status.ACTIVE:
                    return plan, WalletInactive(
                        f"Operation {i}: wallet {w.pk} is {w.status}.",
                        details={"operation_index": i, "wallet_id": w.pk, "wallet_status": w.status},
                    )
            if src.asset_id != dst.asset_id:
                return plan, CurrencyMismatch(
                    f"Operation {i}: wallet {src.pk} holds {src.asset.code} but wallet {dst.pk} holds {dst.asset.code}.",
                    details={"operation_index": i, "source_currency": src.asset.code, "destination_currency": dst.asset.code},
                )
            if leg.currency is not None and leg.currency != src.asset.code:
                return plan, CurrencyMismatch(
                    f"Operation {i}: the amount is in {leg.currency} but the wallets hold {src.asset.code}.",
                    details={"operation_index": i, "currency": leg.currency, "wallet_currency": src.asset.code},
                )
            amount = leg.amount
            plan.balances[src.pk] -= amount
            plan.balances[dst.pk] += amount
            for wid in (src.pk, dst.pk):  # NUMERIC(38, 18): a balance past 20 integer digits cannot be stored
                if plan.balances[wid] and abs(plan.balances[wid]).adjusted() >= MAX_INTEGER_DIGITS:
                    raise ValidationFailed(
                        f"operations[{i}].amount: wallet {wid}'s balance would exceed {MAX_INTEGER_DIGITS} integer digits.",
                        details={"fields": {f"operations[{i}].amount": [f"The resulting balance would exceed {MAX_INTEGER_DIGITS} integer digits."]},
                                 "operation_index": i, "wallet_id": wid},
                    )
            for wid, value in ((None, amount), (src.pk, plan.balances[src.pk]), (dst.pk, plan.balances[dst.pk])):
                problem = embedded_precision_problem(value)  # SQLite keeps 15 digits: refuse, never round
                if problem:
                    what = "the amount" if wid is None else f"wallet {wid}'s resulting balance"
                    raise ValidationFailed(
                        f"operations[{i}].amount: {what} {problem}",
                        details={"fields": {f"operations[{i}].amount": [f"{what[0].upper()}{what[1:]} {problem}"]},
                                 "operation_index": i, "wallet_id": wid},
                    )
            plan.entries.append((src.pk, Entry.Direction.DEBIT, amount, plan.balances[src.pk], i))
            plan.entries.append((dst.pk, Entry.Direction.CREDIT, amount, plan.balances[dst.pk], i))
            plan.touched.update((src.pk, dst.pk))
            net[src.pk] = net.get(src.pk, ZERO) - amount
            net[dst.pk] = net.get(dst.pk, ZERO) + amount
            if -net[src.pk] > plan.drawdown.get(src.pk, ZERO):
                plan.drawdown[src.pk] = -net[src.pk]
            if src.kind != Wallet.Kind.ISSUANCE and plan.balances[src.pk] - plan.held[src.pk] < 0:
                return plan, InsufficientFunds(
                    f"Operation {i}: wallet {src.pk} has insufficient available funds.",
                    details={"operation_index": i, "wallet_id": src.pk},
                )
    return plan, None


def _existing_by_reference(*, organization, customer, reference: str, livemode: bool) -> Transaction:
    cond = Q()
    if organization is not None:
        cond |= Q(organization=organization)
    if customer is not None:
        cond |= Q(customer=customer)
    # references are per mode: a test key's reference never finds (or reveals) a live transaction
    return Transaction.objects.filter(cond, reference=reference, livemode=livemode).order_by("id").first()  # type: ignore[return-value]


def _duplicate(*, organization, customer, reference: str, livemode: bool) -> PostingResult:
    existing = _existing_by_reference(organization=organization, customer=customer, reference=reference, livemode=livemode)
    details: dict[str, Any] = {"reference": reference}
    if existing is not None:
        details.update(transaction_id=existing.pk, status=existing.status, type=existing.type)
    error = DuplicateReference(f"The reference {reference!r} was already used (transaction {details.get('transaction_id')}).", details=details)
    return PostingResult(transaction=existing, ok=False, error=error)


def _record_failure(tx: Transaction, postings: list[Posting], error: LedgerPostingError, *, existing: bool, db: Any) -> bool:
    """Record the refused attempt as a failed transaction with the postings it tried (an
    existing one has them already). False if the owner's reference is taken."""
    tx.failure_code = error.code
    tx.failure_message = error.message[:500]
    tx.failure_operation_index = error.details.get("operation_index")
    tx.fail()
    if existing:
        tx.save()
        return True
    if db.vendor == "postgresql":
        tx_id = pg.write_failed(tx, postings)
        if tx_id is None:
            return False
        pg.mark_saved(tx, tx_id)
        return True
    return orm.insert_with_postings(tx, postings)


class in_transaction:
    """Run in the caller's transaction if there is one (no savepoint: nothing is written
    before validation passes), else in a transaction of our own."""

    def __enter__(self):
        self._atomic = None if connection.in_atomic_block else db_transaction.atomic()
        if self._atomic is not None:
            self._atomic.__enter__()

    def __exit__(self, *exc):
        if self._atomic is not None:
            return self._atomic.__exit__(*exc)
        return False


def ledger_post(
    *,
    type: str,  # noqa: A002 - the transaction type, as in the API
    operations: Sequence[Operation],
    organization=None,
    customer=None,
    reference: str = "",
    description: str = "",
    metadata: dict | None = None,
    status_on_success: str = Transaction.Status.COMPLETED,
    hold_for_review: bool = False,
    reversal_of: Transaction | None = None,
    rates: RateBook | None = None,
) -> PostingResult:
    """Post `operations` all or none. See the module docstring for the steps and failures.
    `reversal_of`: the transaction this one reverses (`wallets.movements.reversals`), recorded on it.
    `rates`: the movement's reference rates (the money path's), else asked now."""
    if type not in TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {type!r}")
    if status_on_success not in (Transaction.Status.COMPLETED, Transaction.Status.PENDING):
        raise ValueError("status_on_success must be 'completed' or 'pending'")
    legs = legs_of(operations)
    with in_transaction():
        return post(
            legs,
            tx=Transaction(
                type=type,
                organization=organization,
                customer=customer,
                reference=reference or "",
                description=description or "",
                metadata=json.loads(json_dumps(metadata)) if metadata else {},  # Decimals etc. as strings
                reversal_of=reversal_of,
            ),
            complete=status_on_success == Transaction.Status.COMPLETED,
            hold_for_review=hold_for_review,
            rates=rates,
        )


def post(
    legs: list[Leg],
    *,
    tx: Transaction,
    complete: bool = True,
    hold_for_review: bool = False,
    hold_pending: bool = False,
    captured: Sequence[Hold] = (),
    existing: bool = False,
    rates: RateBook | None = None,
) -> PostingResult:
    """Lock, validate, simulate, write. `tx` is a new pending transaction, or (existing=True)
    a locked transaction in review whose operations these legs are."""
    db = connections[DEFAULT_DB_ALIAS]  # resolved once: each `connection.x` is a lookup through a thread-local proxy
    rows, resolved = lock(legs, extra_wallet_ids=[h.wallet_id for h in captured], db=db)
    _check_livemode(tx, rows, existing=existing)
    for leg in legs:
        if resolved[leg.source].pk == resolved[leg.destination].pk:
            raise ValidationFailed(f"operations[{leg.index}]: source and destination are the same wallet.")
    if captured:  # the holds' wallets are locked now: re-read the holds under that lock
        fresh = {h.pk: h for h in holds_for_update().filter(pk__in=[h.pk for h in captured])}
        captured = [fresh[h.pk] for h in captured]
        for hold in captured:
            if hold.status != Hold.Status.HELD:
                raise InvalidState(f"Hold {hold.pk} is {hold.status}, not held.", details={"hold_id": hold.pk, "status": hold.status})
    _parse_amounts(legs, resolved)
    released: dict[int, Decimal] = {}
    for hold in captured:
        released[hold.wallet_id] = released.get(hold.wallet_id, ZERO) + hold.amount
    plan, error = _simulate(legs, rows, resolved, released)
    now = timezone.now()
    asset_rates: dict[int, Decimal | None] = {}
    if not existing:  # a held transaction's rows (and rates) were stored when it was held
        book = rates if rates is not None else RateBook()
        for leg in legs:
            asset = resolved[leg.source]
            if asset.asset_id not in asset_rates:
                asset_rates[asset.asset_id] = book.stored(asset.asset.code)
    postings = postings_of(legs, resolved, asset_rates)
    if not existing:
        tx.created_at = now

    if error is not None:
        if not _record_failure(tx, postings, error, existing=existing, db=db):
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference, livemode=tx.livemode)
        error.details["transaction_id"] = tx.pk
        _attach_postings(tx, postings)
        return PostingResult(transaction=tx, ok=False, error=error)

    charges = {} if existing else _charges(tx, legs, resolved, asset_rates)  # an existing transaction was charged when held
    if hold_for_review:
        tx.hold_for_review()
        return _place_review_holds(tx, postings, plan, rows, now, charges=charges)
    if hold_pending:  # a payout in flight: stays pending, funds held (ledger_hold_pending)
        return _place_review_holds(tx, postings, plan, rows, now, why="payout in flight", charges=charges)

    if complete:
        tx.complete()
        tx.completed_at = now
    if db.vendor == "postgresql" and not existing:
        written = pg.write_posted(tx, postings, plan, now, [h.pk for h in captured], charges)
        if written is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference, livemode=tx.livemode)
        pk, entry_ids = written
        pg.mark_saved(tx, pk)
        for hold in captured:
            hold.capture()
            hold.transaction = tx
    else:
        entry_ids = orm.write_posted(tx, postings, plan, now, list(captured), existing=existing)
        if entry_ids is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference, livemode=tx.livemode)
        usage_apply(charges, day=usage_day(now))
    _attach_entries(tx, plan, now, entry_ids)
    _attach_postings(tx, postings)
    return PostingResult(transaction=tx, ok=True)


def _attach_entries(tx: Transaction, plan: Plan, now, entry_ids: list[int | None]) -> None:
    """Give the posted transaction its entries as written (`tx.posted_entries`, with their
    ids), so a caller can answer from what the posting already knows without reading them back."""
    tx.posted_entries = [
        Entry(pk=pk, transaction_id=tx.pk, wallet_id=wid, direction=d, amount=a, balance_after=after, operation_index=i, created_at=now)
        for pk, (wid, d, a, after, i) in zip(entry_ids, plan.entries, strict=True)
    ]


def _attach_postings(tx: Transaction, postings: list[Posting]) -> None:
    """The posting rows as written (`tx.posted_postings`): a held transaction's are its stored
    ones, recomputed from the same legs."""
    for posting in postings:
        posting.transaction_id = tx.pk
    tx.posted_postings = postings


def _charges(tx: Transaction, legs: list[Leg], resolved: dict[Side, Row], rates: dict[int, Decimal | None]) -> dict:
    """What this posting counts toward its customers' usage (`ledger.usage`), at the rates its
    posting rows store."""
    usage_legs, owners = [], {}
    for leg in legs:
        src, dst = resolved[leg.source], resolved[leg.destination]
        usage_legs.append(UsageLeg(OPERATION_KINDS[type(leg.op)], src.pk, dst.pk, src.asset_id, leg.amount, rates.get(src.asset_id)))
        for w in (src, dst):
            owners[w.pk] = WalletOwner(w.customer_id, w.is_platform and w.purpose == Wallet.Purpose.FEE)
    return usage_charges(tx_type=tx.type, legs=usage_legs, owners=owners)


def _place_review_holds(tx: Transaction, postings: list[Posting], plan: Plan, rows: dict[int, Row], now, why: str = "in review", charges: dict | None = None) -> PostingResult:
    """Leave `tx` (in review, or pending) with holds for each wallet's largest running outflow
    (not on issuance accounts) and its usage charged: one statement on PostgreSQL."""
    holds = [
        (wid, plan.drawdown[wid], rows[wid].held + plan.drawdown[wid])
        for wid in sorted(plan.drawdown)
        if plan.drawdown[wid] > 0 and rows[wid].kind != Wallet.Kind.ISSUANCE
    ]
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        tx_id = pg.write_held(tx, postings, holds, why, now, charges)
        if tx_id is None:
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference, livemode=tx.livemode)
        pg.mark_saved(tx, tx_id)
    else:
        if not orm.write_held(tx, postings, holds, why, now):
            return _duplicate(organization=tx.organization, customer=tx.customer, reference=tx.reference, livemode=tx.livemode)
        usage_apply(charges or {}, day=usage_day(now))
    tx.posted_entries = []  # nothing posted yet: nothing to read back for the answer
    _attach_postings(tx, postings)
    return PostingResult(transaction=tx, ok=True)

