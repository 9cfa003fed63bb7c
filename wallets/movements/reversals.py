"""Reversals: a NEW transaction that mirrors a completed one's postings, in full or in part.

`transaction_reverse` is the one service behind `POST /api/v1/transactions/{id}/reverse`
(organizations, on the transactions they posted) and the Django admin's "Reverse" action (staff,
any reversible transaction, e.g. a customer's deposit charged back).

Invariants:
* Lock order: the ORIGINAL transaction row first (`ledger.locks.transactions_for_update`: the
  "ledger transaction" place of the global order, after any parent row, before customers and
  wallets), then the money path locks the customers and the wallets. Two reversals of one
  transaction therefore run one after the other, and the second sees what the first reversed:
  racing partial reversals never exceed the original.
* The reversal posts through the money path (`wallets.pipeline.money_path`) as a `reversal`
  transaction with `reversal_of` set; no limits, 2FA or risk rules (it undoes a movement that
  passed them), but every wallet must stay >= 0: a reversal of money already spent is refused
  422 INSUFFICIENT_FUNDS and recorded as a failed reversal, like any refused posting.
* Its postings are the original's, inverted and in reverse order (the only order that replays
  for sure), each platform leg on the shard of the original's. A partial reversal of `amount`
  (in the asset of the principal, the original's first posting) takes each leg pro rata,
  rounded to its asset's minor unit by largest remainder (per asset, the shares sum to the
  rounded exact total, so no minor unit is lost), never more than that leg has left; the
  reversal that completes the principal takes every included leg's exact remainder.
* Fee legs (postings after the first paid into the platform fee account) are reversed with the
  rest unless `include_fees=False`; a fee share left out then stays with the platform (a
  later reversal that includes fees and completes the principal returns what remains of them).
* The original keeps `reversed_amount` (principal reversed so far) and becomes `reversed` (FSM)
  when it reaches the principal; its usage toward limits is given back then (a partially
  reversed transaction still counts in full, as `ledger.usage` recounts it).
* 409 INVALID_STATE: not completed (pending, failed, already fully reversed...), a reversal
  itself, a type that cannot be reversed here, or an amount past what remains.
* Webhooks `transaction.reversed` (or `transaction.failed` for a refused reversal) to the
  organizations concerned, and the audit event, in the same database transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from accounts.models import Organization, User
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.models import Direction, MovementType
from core.livemode import mode_q, principal_livemode
from core.errors import InvalidState, NotFound, ValidationFailed
from core.money import format_amount, parse_amount, quantum
from ledger.errors import DuplicateReference
from ledger.locks import transactions_for_update
from ledger.models import Posting, Transaction, Wallet
from ledger.posting import Issue, Operation, PlatformAccount, Redeem, Transfer
from ledger.selectors import Viewer
from ledger.serializers import TransactionPresenter
from ledger.usage import usage_release
from wallets.pipeline import MoneyMovement, MovementResult, money_path

# What an organization may reverse over the API: the ledger transactions it posted (pay-order
# settlements and refunds have their own flows). Staff may also charge back deposits and reverse
# customer transfers and exchanges; never a withdrawal (the money left), a payout or a reversal.
ORGANIZATION_REVERSIBLE = frozenset({Transaction.Type.LEDGER})
STAFF_REVERSIBLE = frozenset({Transaction.Type.LEDGER, Transaction.Type.DEPOSIT, Transaction.Type.TRANSFER, Transaction.Type.EXCHANGE})
ZERO = Decimal(0)


@dataclass(frozen=True)
class LegShare:
    """One original posting to reverse: its amount, its asset and what it has left."""

    index: int
    asset_id: int
    exponent: int
    amount: Decimal
    remaining: Decimal
    exact: bool  # take the exact remainder (the reversal completes this leg's share)


def pro_rata(legs: list[LegShare], *, part: Decimal, whole: Decimal) -> dict[int, Decimal]:
    """Each leg's share of `part / whole`, by index. Legs marked `exact` take their remainder.
    The others, per asset: the exact shares are floored to the minor unit, and the units the
    floors lost (the rounded exact total minus their sum) go one each to the largest remainders
    (ties: the earlier leg). Every share is capped at the leg's remainder."""
    shares: dict[int, Decimal] = {}
    groups: dict[int, list[LegShare]] = defaultdict(list)
    for leg in legs:
        if leg.exact:
            shares[leg.index] = leg.remaining
        else:
            groups[leg.asset_id].append(leg)
    with localcontext() as ctx:
        ctx.prec = 80
        for group in groups.values():
            unit = quantum(group[0].exponent)
            exact = {leg.index: leg.amount * part / whole for leg in group}
            floors = {i: value.quantize(unit, rounding=ROUND_DOWN) for i, value in exact.items()}
            total = sum(exact.values(), ZERO).quantize(unit, rounding=ROUND_HALF_EVEN)
            extra = int((total - sum(floors.values(), ZERO)) / unit)
            by_remainder = sorted(group, key=lambda leg: (-(exact[leg.index] - floors[leg.index]), leg.index))
            for leg in by_remainder[:max(extra, 0)]:
                floors[leg.index] += unit
            for leg in group:
                shares[leg.index] = min(floors[leg.index], leg.remaining)
    return shares


def _inverse(posting: Posting, amount: Decimal) -> Operation:
    """The operation undoing `amount` of `posting`: platform sides by purpose (same shard)."""
    if posting.kind == Posting.Kind.ISSUE:
        return Redeem(wallet=posting.destination_wallet_id, amount=amount)
    if posting.kind == Posting.Kind.REDEEM:
        return Issue(wallet=posting.source_wallet_id, amount=amount)
    source = PlatformAccount(posting.destination_purpose) if posting.destination_purpose else posting.destination_wallet_id
    destination = PlatformAccount(posting.source_purpose) if posting.source_purpose else posting.source_wallet_id
    return Transfer(source=source, destination=destination, amount=amount)


def _is_fee(posting: Posting) -> bool:
    return posting.index > 0 and posting.destination_purpose == Wallet.Purpose.FEE


def _reversed_so_far(original: Transaction) -> tuple[dict[int, Decimal], Decimal]:
    """Per original leg, what completed reversals took of it; and the principal of those that
    included fees. Read under the original's lock: every earlier reversal is committed."""
    per_leg: dict[int, Decimal] = defaultdict(Decimal)
    fee_included = ZERO
    for metadata in Transaction.objects.filter(reversal_of=original, status=Transaction.Status.COMPLETED).values_list("metadata", flat=True):
        info = (metadata or {}).get("reversal", {})
        for index, amount in info.get("legs", {}).items():
            per_leg[int(index)] += Decimal(amount)
        if info.get("include_fees", True):
            fee_included += Decimal(info.get("amount", "0"))
    return per_leg, fee_included


def reversal_remaining(original: Transaction, postings: list[Posting] | None = None) -> Decimal:
    """What of the original's principal is still reversible."""
    postings = postings if postings is not None else list(original.postings.order_by("index"))
    return postings[0].amount - original.reversed_amount if postings else ZERO


@dataclass
class ReversalOutcome:
    """The money path's result, with the representation the organization sees (when one asked)."""

    result: MovementResult
    original: Transaction
    asset: Any  # the principal's asset
    whole: Decimal  # the principal's amount
    representation: dict[str, Any] | None = None

    @property
    def original_summary(self) -> dict[str, Any]:
        return original_summary(self.original, self.asset, self.whole)

    def raise_for_error(self) -> Transaction:
        return self.result.raise_for_error()


def _organizations_concerned(original: Transaction, wallets: dict[int, Wallet]) -> dict[int, Organization]:
    found: dict[int, Organization] = {}
    if original.organization_id is not None:
        found[original.organization_id] = original.organization
    for wallet in wallets.values():
        if wallet.customer_id is not None and wallet.customer.organization_id is not None:
            found[wallet.customer.organization_id] = wallet.customer.organization
        elif wallet.organization_id is not None:
            found[wallet.organization_id] = wallet.organization
    return found


def transaction_reverse(
    *,
    transaction_id: int,
    reason: str,
    actor: Any,
    amount: Any = None,
    include_fees: bool = True,
    organization: Organization | None = None,
    reference: str = "",
) -> ReversalOutcome:
    """Reverse `amount` (default: all that remains) of a completed transaction's principal (module
    docstring). `organization`: the calling organization (it must have posted the transaction,
    else 404 NOT_FOUND from the caller's selector, and only its ledger transactions); None: staff.
    Runs in the caller's transaction (required: the original's lock must last until commit).
    Refusals before posting raise; a refused posting is recorded and returned in the outcome:
    call `raise_for_error()` once your own block has closed (the API's idempotent block commits
    the failed reversal with the 422)."""
    from django.db import connection

    if not connection.in_atomic_block:
        raise RuntimeError("transaction_reverse must run inside the caller's database transaction")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason: a reason is required.", details={"fields": {"reason": ["A reason is required."]}})
    original = transactions_for_update().select_related("organization", "customer").get(pk=transaction_id)
    state = {"transaction_id": original.pk, "status": original.status, "type": original.type}
    allowed = ORGANIZATION_REVERSIBLE if organization is not None else STAFF_REVERSIBLE
    if original.type == Transaction.Type.REVERSAL:
        raise InvalidState(f"Transaction {original.pk} is itself a reversal.", details=state)
    if original.type not in allowed:
        raise InvalidState(f"A {original.type} transaction cannot be reversed here.", details=state)
    if original.status != Transaction.Status.COMPLETED:
        word = "already fully reversed" if original.status == Transaction.Status.REVERSED else original.status
        raise InvalidState(f"Transaction {original.pk} is {word}: only a completed transaction can be reversed.", details=state)
    postings = list(original.postings.order_by("index"))
    wallet_ids = {w for p in postings for w in (p.source_wallet_id, p.destination_wallet_id)}
    wallets = {w.pk: w for w in Wallet.objects.filter(pk__in=wallet_ids).select_related("asset", "customer__organization", "customer__user", "organization")}
    principal = postings[0]
    asset = wallets[principal.source_wallet_id].asset
    whole = principal.amount
    remaining = whole - original.reversed_amount
    part = remaining if amount in (None, "") else parse_amount(amount, exponent=asset.exponent, field="amount")
    if part > remaining:
        raise InvalidState(
            f"Only {format_amount(remaining, asset.exponent)} {asset.code} of transaction {original.pk} remains to be reversed.",
            details={**state, "requested_amount": format_amount(part, asset.exponent), "remaining_amount": format_amount(remaining, asset.exponent),
                     "currency": asset.code},
        )

    per_leg, fee_included = _reversed_so_far(original)
    completes = original.reversed_amount + part == whole
    legs: list[LegShare] = []
    for posting in postings:
        fee = _is_fee(posting)
        if fee and not include_fees:
            continue
        left = posting.amount - per_leg[posting.index]
        if left <= 0:
            continue
        share_whole = (fee_included + part == whole) if fee else completes
        legs.append(LegShare(posting.index, posting.asset_id, wallets[posting.source_wallet_id].asset.exponent, posting.amount, left, share_whole))
    shares = pro_rata(legs, part=part, whole=whole)
    taken = [p for p in postings if shares.get(p.index, ZERO) > 0]
    operations = [_inverse(p, shares[p.index]) for p in reversed(taken)]

    # The wallet the movement is checked (and owned) by: the principal's customer side.
    concrete = [w for w in (principal.source_wallet_id, principal.destination_wallet_id) if not wallets[w].is_platform]
    checked = wallets[concrete[0]] if concrete else None
    viewer_org = organization or original.organization
    metadata = {"reversal": {
        "of": original.pk, "amount": str(part), "include_fees": include_fees, "reason": reason[:500],
        "legs": {str(p.index): str(shares[p.index]) for p in taken},
    }}
    outcome = ReversalOutcome(result=None, original=original, asset=asset, whole=whole)  # type: ignore[arg-type]
    concerned = _organizations_concerned(original, wallets)

    def after_post(tx: Transaction) -> None:
        original.reversed_amount += part
        fields = ["reversed_amount"]
        if original.reversed_amount == whole:
            original.reverse()
            fields.append("status")
            usage_release(original)
        original.save(update_fields=fields)

    def publish(tx: Transaction) -> None:
        tx.known_wallets = wallets
        for org in concerned.values():
            representation = TransactionPresenter(viewer=Viewer(organization=org, livemode=original.livemode)).one(tx, detail=True)
            if viewer_org is not None and org.pk == viewer_org.pk:
                outcome.representation = representation
            if tx.status == Transaction.Status.COMPLETED:
                payload = {**representation, "reversal_of": original.pk, "original": outcome.original_summary}
                webhook_publish(organization=org, event_type="transaction.reversed", payload=payload)
            elif tx.status == Transaction.Status.FAILED:
                webhook_publish(organization=org, event_type="transaction.failed", payload=representation)
        if outcome.representation is None and viewer_org is not None:
            outcome.representation = TransactionPresenter(viewer=Viewer(organization=viewer_org, livemode=original.livemode)).one(tx, detail=True)

    actor_data = principal_audit_data(actor) if organization is not None else {"staff": True}
    outcome.result = money_path(MoneyMovement(
        actor=actor, movement_type=MovementType.TRANSFER, ledger_type=Transaction.Type.REVERSAL, wallet=checked, amount=part,
        operations=operations, direction=Direction.OUTGOING, limits=[], step_up=False, risk=False,
        organization=original.organization, reference=reference, description=f"Reversal of transaction {original.pk}: {reason}"[:500],
        metadata=metadata, reversal_of=original, after_post=after_post, publish=publish, audit_action="reversal.{status}",
        audit_data={"reversal_of": original.pk, "reason": reason[:500], "include_fees": include_fees, **actor_data},
    ))
    return outcome


def original_summary(original: Transaction, asset, whole: Decimal) -> dict[str, Any]:
    """The original as a reversal answer names it: status and what remains reversible."""
    return {
        "id": original.pk, "status": original.status, "amount": format_amount(whole, asset.exponent), "currency": asset.code,
        "reversed_amount": format_amount(original.reversed_amount, asset.exponent),
        "remaining_amount": format_amount(whole - original.reversed_amount, asset.exponent),
    }


def organization_transaction_reverse(
    *, organization: Organization, principal: Any, transaction_id: int, reason: str, amount: Any = None,
    include_fees: bool = True, reference: str = "",
) -> dict[str, Any]:
    """`POST /transactions/{id}/reverse`: the organization's own transaction (anyone else's is
    404), reversed through `transaction_reverse`; returns the reversal's representation with the
    original's summary. Raises the refusal (a failed reversal is already recorded)."""
    if not Transaction.objects.filter(mode_q(principal_livemode(principal)), pk=transaction_id, organization=organization).exists():
        raise NotFound("Transaction not found.", details={"transaction_id": transaction_id})
    outcome = transaction_reverse(
        transaction_id=transaction_id, reason=reason, actor=principal, amount=amount, include_fees=include_fees,
        organization=organization, reference=reference,
    )
    result = outcome.result
    if isinstance(result.error, DuplicateReference):
        raise result.error
    tx = result.transaction
    if tx is None:
        raise result.error
    representation = {**(outcome.representation or {}), "reversal_of": outcome.original.pk, "original": outcome.original_summary}
    if not result.ok:
        error = result.error
        error.details.update(code=error.code, reason=error.message, transaction_id=tx.pk, transaction=representation)
        raise error
    return representation


def staff_transaction_reverse(*, user: User, transaction_id: int, reason: str, amount: Any = None, include_fees: bool = True,
                              reference: str = "") -> Transaction:
    """The admin's reversal (a chargeback of a deposit, a mistaken transfer): its own database
    transaction, so a refused posting's failed reversal commits before the refusal is raised."""
    from django.db import transaction as db_transaction

    with db_transaction.atomic():
        outcome = transaction_reverse(
            transaction_id=transaction_id, reason=reason, actor=user, amount=amount, include_fees=include_fees, reference=reference,
        )
    return outcome.raise_for_error()
