"""What a posting is asked to do: operations, and the legs the engine turns them into.

Invariants:
* An operation is one leg: source -> destination, one amount, one asset. `Issue(w)` is the
  asset's issuance account -> w, `Redeem(w)` is w -> issuance; a `Transfer` side may be a
  `PlatformAccount(purpose)` (fee, FX, settlement legs), never both sides.
* A leg side is `("w", wallet_id)` or `("p", purpose, counterparty_wallet_id)`: a platform side
  is resolved to a shard by the engine, from the counterparty wallet (`ledger.posting.shards`).
* 1..MAX_OPERATIONS operations per transaction; a wallet never transfers to itself.
* Stored, an operation is a `Posting` row (`postings_of`), and a row reads back as the same
  operation (`operations_of`), so a deferred posting resolves to the same wallets and shards.
Pure data: nothing here reads or writes the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Union

from django.core.serializers.json import DjangoJSONEncoder

from core.errors import CofferError, ValidationFailed
from ledger.models import Posting, Transaction, Wallet

MAX_OPERATIONS = 100
ZERO = Decimal(0)

WalletRef = Union[int, Wallet]


@dataclass(frozen=True)
class PlatformAccount:
    """A sharded platform account named by purpose ("fee", "fx", "settlement"); the shard is
    chosen from the other wallet of the leg."""

    purpose: str


@dataclass(frozen=True)
class Issue:
    """Value enters from outside: credit `wallet`, debit the asset's issuance account."""

    wallet: WalletRef
    amount: Decimal | str | int
    currency: str | None = None


@dataclass(frozen=True)
class Redeem:
    """Value leaves to outside: debit `wallet`, credit the asset's issuance account."""

    wallet: WalletRef
    amount: Decimal | str | int
    currency: str | None = None


@dataclass(frozen=True)
class Transfer:
    """Wallet to wallet, same asset. Either side may be a `PlatformAccount` (fee legs)."""

    source: WalletRef | PlatformAccount
    destination: WalletRef | PlatformAccount
    amount: Decimal | str | int
    currency: str | None = None


Operation = Union[Issue, Redeem, Transfer]
OPERATION_KINDS = {Issue: "issue", Redeem: "redeem", Transfer: "transfer"}


@dataclass
class PostingResult:
    transaction: Transaction | None
    ok: bool
    error: CofferError | None = None

    def raise_for_error(self) -> Transaction:
        """Raise the failure, or return the posted transaction."""
        if not self.ok:
            assert self.error is not None
            raise self.error
        assert self.transaction is not None
        return self.transaction


# A leg side: ("w", wallet_id) or ("p", purpose, counterparty_wallet_id).
Side = tuple


@dataclass
class Leg:
    index: int
    source: Side
    destination: Side
    raw_amount: Any
    currency: str | None
    op: Operation
    amount: Decimal = ZERO


@dataclass
class Plan:
    """A posting simulated in memory: what the writers write."""

    balances: dict[int, Decimal]
    held: dict[int, Decimal]
    # (wallet_id, direction, amount, balance_after, operation_index) in application order
    entries: list[tuple[int, str, Decimal, Decimal, int]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    drawdown: dict[int, Decimal] = field(default_factory=dict)  # largest running outflow


def wallet_id_of(ref: Any, what: str) -> int:
    if isinstance(ref, Wallet):
        if ref.pk is None:
            raise ValueError(f"{what} is an unsaved wallet")
        return ref.pk
    if isinstance(ref, bool) or not isinstance(ref, int):
        raise ValidationFailed(f"{what}: a wallet id is required.", details={"fields": {what: ["A wallet id is required."]}})
    return ref


def legs_of(operations: Sequence[Operation]) -> list[Leg]:
    """One leg per operation, in order (400 VALIDATION_ERROR for a malformed list)."""
    if not operations:
        raise ValidationFailed("operations: at least one operation is required.", details={"fields": {"operations": ["At least one operation is required."]}})
    if len(operations) > MAX_OPERATIONS:
        raise ValidationFailed(
            f"operations: at most {MAX_OPERATIONS} operations per transaction.",
            details={"fields": {"operations": [f"At most {MAX_OPERATIONS} operations per transaction."]}},
        )
    legs: list[Leg] = []
    for i, op in enumerate(operations):
        where = f"operations[{i}]"
        if isinstance(op, Issue):
            wid = wallet_id_of(op.wallet, f"{where}.wallet_id")
            legs.append(Leg(i, ("p", Wallet.Purpose.ISSUANCE, wid), ("w", wid), op.amount, op.currency, op))
        elif isinstance(op, Redeem):
            wid = wallet_id_of(op.wallet, f"{where}.wallet_id")
            legs.append(Leg(i, ("w", wid), ("p", Wallet.Purpose.ISSUANCE, wid), op.amount, op.currency, op))
        elif isinstance(op, Transfer):
            src_platform = isinstance(op.source, PlatformAccount)
            dst_platform = isinstance(op.destination, PlatformAccount)
            if src_platform and dst_platform:
                raise ValidationFailed(f"{where}: a transfer needs at least one concrete wallet.")
            if src_platform:
                did = wallet_id_of(op.destination, f"{where}.destination_wallet_id")
                legs.append(Leg(i, ("p", op.source.purpose, did), ("w", did), op.amount, op.currency, op))
            elif dst_platform:
                sid = wallet_id_of(op.source, f"{where}.source_wallet_id")
                legs.append(Leg(i, ("w", sid), ("p", op.destination.purpose, sid), op.amount, op.currency, op))
            else:
                sid = wallet_id_of(op.source, f"{where}.source_wallet_id")
                did = wallet_id_of(op.destination, f"{where}.destination_wallet_id")
                if sid == did:
                    raise ValidationFailed(
                        f"{where}: source and destination are the same wallet.",
                        details={"fields": {f"{where}.destination_wallet_id": ["Must differ from the source wallet."]}},
                    )
                legs.append(Leg(i, ("w", sid), ("w", did), op.amount, op.currency, op))
        else:
            raise TypeError(f"not a ledger operation: {op!r}")
    return legs


def inverse(op: Operation) -> Operation:
    """The operation that undoes `op` (a reversal's leg)."""
    if isinstance(op, Issue):
        return Redeem(wallet=op.wallet, amount=op.amount, currency=op.currency)
    if isinstance(op, Redeem):
        return Issue(wallet=op.wallet, amount=op.amount, currency=op.currency)
    return Transfer(source=op.destination, destination=op.source, amount=op.amount, currency=op.currency)


def json_dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))



def postings_of(legs: list[Leg], resolved: dict[Side, Any], rates: dict[int, Decimal | None] | None = None) -> list[Posting]:
    """The legs as the transaction's posting rows (unsaved; `transaction` set by the writer):
    each side's resolved wallet row, the platform purpose a side was named by, and the reference
    rate of the leg's asset (`rates`, by asset id; `core.reference`)."""
    out: list[Posting] = []
    for leg in legs:
        source, destination = resolved[leg.source], resolved[leg.destination]
        out.append(Posting(
            index=leg.index,
            kind=OPERATION_KINDS[type(leg.op)],
            source_wallet_id=source.pk,
            source_purpose=leg.source[1] if leg.source[0] == "p" else "",
            destination_wallet_id=destination.pk,
            destination_purpose=leg.destination[1] if leg.destination[0] == "p" else "",
            amount=leg.amount,
            asset_id=source.asset_id,
            reference_rate=(rates or {}).get(source.asset_id),
        ))
    return out


def operations_of(postings: Iterable[Posting]) -> list[Operation]:
    """A transaction's posting rows back as the operations that were asked (a held
    transaction's deferred posting, a reversal): platform sides by purpose, so they resolve to
    the same shards again."""
    ops: list[Operation] = []
    for p in postings:
        if p.kind == Posting.Kind.ISSUE:
            ops.append(Issue(wallet=p.destination_wallet_id, amount=p.amount))
        elif p.kind == Posting.Kind.REDEEM:
            ops.append(Redeem(wallet=p.source_wallet_id, amount=p.amount))
        else:
            source = PlatformAccount(p.source_purpose) if p.source_purpose else p.source_wallet_id
            destination = PlatformAccount(p.destination_purpose) if p.destination_purpose else p.destination_wallet_id
            ops.append(Transfer(source=source, destination=destination, amount=p.amount))
    return ops
