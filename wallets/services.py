"""Customer wallets: a user's own wallets and every money movement they start (deposits,
transfers, withdrawals with payouts, currency exchange). Every balance change goes through the
ledger's services; nothing here writes a balance, a hold or an entry.

Every movement here runs the money path (`moneypath.pipeline.money_path`), after this module
validated its input and authorized it: the source wallet (the deposit's wallet, the quote's
wallets) must be the caller's own (`wallets.selectors.wallet_get_for_user`: anyone else's is a
404 and nothing moves); a transfer may go to any active customer wallet. Limits are checked for
the CALLER'S OWN customer only, in the direction the money moves for them: deposits incoming;
transfers, withdrawals and exchanges outgoing (an exchange also incoming, in the destination
asset). The recipient of a transfer is not checked at send time (that would lock and disclose
another customer's limit state to the sender), but the transfer counts toward their incoming
usage. A transfer between the caller's own wallets moves nothing in or out: neither limited nor
risk-screened, it still needs the step-up code at the threshold.

Withdrawals and payouts: see `withdrawal_create`, `payout_send`, `payout_settle` and
`wallets.payouts`. Exchanges: see `exchange_quote_create` and `exchange_execute`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import transaction as db_transaction
from django.utils import timezone
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from accounts.models import Customer, User
from compliance.fees import fee_compute
from compliance.models import Direction, MovementType
from compliance.services import audit_record
from core.errors import CofferError, InvalidState, NotFound, ValidationFailed
from core.money import MAX_INTEGER_DIGITS, MONEY_CONTEXT, format_amount, parse_amount, quantum
from moneypath.pipeline import LimitScope, MoneyMovement, money_path
from core.db import Insert
from core.outbox import outbox_emit, outbox_message
from core.prices import get_price_provider
from ledger.errors import InsufficientFunds
from ledger.models import Asset, Transaction, Wallet
from ledger.selectors import asset_get, wallet_owner_name
from ledger.posting import (
    Issue,
    Operation,
    PlatformAccount,
    Redeem,
    Transfer,
    ledger_complete_pending,
    ledger_fail_pending,
    ledger_post,
    ledger_reverse,
    platform_wallet_covering,
    platform_wallets_ensure,
)
from ledger.services import wallet_open
from wallets.errors import InvalidBeneficiary, InvalidIban, QuoteExpired
from wallets.models import ExchangeQuote, Payout
from wallets.payouts import ACCEPTED, FAILED, get_payout_provider
from wallets.selectors import customer_of, transfer_wallets_get, wallet_get_for_user

logger = logging.getLogger("coffer.wallets")

PAYOUT_TOPIC = "payout.send"
PAYOUT_CHECK_TOPIC = "payout.check"


def _customer_for(user: User) -> Customer:
    customer = customer_of(user=user)
    if customer is None:  # users made outside signup (createsuperuser) get their profile on first use
        customer, _ = Customer.objects.get_or_create(user=user, defaults={"name": user.full_name, "email": user.email})
    return customer


def _platform_asset(code: str, field: str = "currency") -> Asset:
    try:
        return asset_get(code=code, organization=None)
    except Asset.DoesNotExist:
        raise ValidationFailed(f"{field}: unknown currency {code!r}.", details={"fields": {field: ["Unknown currency."]}}) from None


def _field_error(name: str, message: str, cls: type[CofferError] = ValidationFailed) -> CofferError:
    return cls(f"{name}: {message}", details={"fields": {name: [message]}})


def wallet_create(*, user: User, currency: str, label: str = "") -> Wallet:
    """Open a wallet in `currency` for the user's own Customer (one unlabelled open wallet per
    currency: a second one is 409 WALLET_EXISTS unless labelled)."""
    asset = _platform_asset(currency)
    with db_transaction.atomic():
        wallet = wallet_open(asset=asset, customer=_customer_for(user), label=label)
        audit_record(actor=user, action="wallet.open", target=wallet, data={"currency": asset.code, "label": label})
    return wallet


# --------------------------------------------------------------------------------------------
# The money path
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Deposits and transfers
# --------------------------------------------------------------------------------------------


def deposit_create(*, user: User, wallet_id: int, amount: Any, source: str = "") -> Transaction:
    """Money enters the user's own wallet from outside: an `Issue` from the asset's issuance
    account, through the money path (incoming deposit limits, risk; no 2FA: nothing leaves).
    Someone else's wallet is 404."""
    wallet = wallet_get_for_user(user=user, wallet_id=wallet_id, lock_customer=True)
    value = parse_amount(amount, exponent=wallet.asset.exponent, field="amount")
    movement = MoneyMovement(
        actor=user, movement_type=MovementType.DEPOSIT, ledger_type=Transaction.Type.DEPOSIT, wallet=wallet, amount=value,
        operations=[Issue(wallet=wallet.pk, amount=value, currency=wallet.asset.code)],
        direction=Direction.INCOMING, step_up=False,
        limits=[LimitScope(wallet.asset, MovementType.DEPOSIT, Direction.INCOMING, value)],
        description=f"Deposit from {source}" if source else "Deposit", metadata={"source": source} if source else {},
        audit_data={"source": source},
    )
    return money_path(movement).raise_for_error()


def transfer_create(
    *, user: User, source_wallet_id: int, destination_wallet_id: int, amount: Any, currency: str, description: str = "",
    two_factor_code: str | None = None, step_up: bool = True, reference: str = "",
) -> Transaction:
    """From one of the user's wallets to any customer wallet of the same asset. The source
    must be the caller's (else 404); the ledger checks status, asset and funds under lock.
    `step_up=False` and `reference` are for a schedule's occurrence (`wallets.schedules`): its
    schedule was step-up authorized at creation, and the reference is its per-attempt key."""
    if destination_wallet_id == source_wallet_id:
        wallet_get_for_user(user=user, wallet_id=source_wallet_id)  # someone else's is still a 404
        raise _field_error("destination_wallet_id", "Must differ from the source wallet.")
    source, destination = transfer_wallets_get(
        user=user, source_wallet_id=source_wallet_id, destination_wallet_id=destination_wallet_id, lock_customer=True,
    )
    value = parse_amount(amount, exponent=source.asset.exponent, field="amount")
    own = destination.customer_id == source.customer_id
    movement = MoneyMovement(
        actor=user, movement_type=MovementType.TRANSFER, ledger_type=Transaction.Type.TRANSFER, wallet=source, amount=value,
        operations=[Transfer(source=source.pk, destination=destination.pk, amount=value, currency=(currency or "").strip().upper())],
        limits=[] if own else [LimitScope(source.asset, MovementType.TRANSFER, Direction.OUTGOING, value)], risk=not own,
        two_factor_code=two_factor_code, step_up=step_up, beneficiary_name=None if own else wallet_owner_name(destination),
        description=description, reference=reference, counterparty_wallets=[destination],
        audit_data={"destination_wallet_id": destination.pk},
    )
    return money_path(movement).raise_for_error()


# --------------------------------------------------------------------------------------------
# Withdrawals and payouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Beneficiary:
    type: str
    name: str
    details: dict[str, str]


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def beneficiary_parse(destination: Any) -> Beneficiary:
    """`{type: IBAN, iban, name, bank_name?, country?}` or `{type: EXTERNAL, name, account,
    network?}`. A bad IBAN (schwifty: characters, length per country, mod-97) is 400
    INVALID_IBAN; anything missing or contradictory is 400 INVALID_BENEFICIARY naming the field."""
    if not isinstance(destination, dict):
        raise _field_error("destination", "An object with type IBAN or EXTERNAL is required.", InvalidBeneficiary)
    kind = _text(destination.get("type")).upper()
    if kind not in Payout.DestinationType.values:
        raise _field_error("destination.type", "One of IBAN, EXTERNAL.", InvalidBeneficiary)
    name = _text(destination.get("name"))
    if not name or len(name) > 200:
        raise _field_error("destination.name", "The beneficiary's name (1-200 characters) is required.", InvalidBeneficiary)
    if kind == Payout.DestinationType.IBAN:
        raw = _text(destination.get("iban"))
        if not raw:
            raise _field_error("destination.iban", "An IBAN is required.", InvalidBeneficiary)
        try:
            iban = IBAN(raw)
        except SchwiftyException as exc:
            raise InvalidIban(f"destination.iban: {exc}.", details={"fields": {"destination.iban": [str(exc)]}}) from None
        country = _text(destination.get("country")).upper()
        if country and country != iban.country_code:
            raise _field_error("destination.country", f"The IBAN is from {iban.country_code}, not {country}.", InvalidBeneficiary)
        details = {"iban": iban.compact, "country": iban.country_code, "bank_name": _text(destination.get("bank_name"))[:200]}
        return Beneficiary(type=kind, name=name, details=details)
    account = _text(destination.get("account"))
    if not account or len(account) > 200:
        raise _field_error("destination.account", "The account at the external rail (1-200 characters) is required.", InvalidBeneficiary)
    return Beneficiary(type=kind, name=name, details={"account": account, "network": _text(destination.get("network"))[:50]})


def _payout_check_later(payout: Payout) -> None:
    """In the caller's transaction: a `payout.check` outbox message due at `next_check_at` (a
    time the worker comes back, never a sleep). Keyed by that time, so recording the same
    provider answer twice schedules one check."""
    outbox_emit(
        topic=PAYOUT_CHECK_TOPIC, payload={"payout_id": payout.pk}, available_at=payout.next_check_at,
        key=f"payout:{payout.pk}:check:{payout.next_check_at.isoformat()}",
    )


def withdrawal_create(
    *, user: User, wallet_id: int, amount: Any, destination: Any, description: str = "", two_factor_code: str | None = None,
    step_up: bool = True, reference: str = "",
) -> Transaction:
    """Money leaves the user's wallet for a bank account (IBAN) or another rail. The fee
    (`fee_compute`: 1%, minimum 1.00 for an IBAN) is charged on top; amount + fee are held
    (`ledger_hold_pending`: the transaction is `pending`), and a `Payout` plus its `payout.send`
    outbox row are written in the same database transaction: a broker outage delays the payout
    and loses nothing. The worker sends it (`payout_send`) and settles it (`payout_settle`):
    completed -> the held transaction is posted (Redeem of the amount, fee to the platform fee
    account); failed -> the holds are released and the transaction is failed. A risk review
    leaves the transaction `in_review` and the payout waits for the reviewer. `step_up` and
    `reference`: as for `transfer_create` (a schedule's occurrence)."""
    wallet = wallet_get_for_user(user=user, wallet_id=wallet_id, lock_customer=True)
    asset = wallet.asset
    value = parse_amount(amount, exponent=asset.exponent, field="amount")
    beneficiary = beneficiary_parse(destination)
    fee = fee_compute(movement_type=MovementType.WITHDRAWAL, amount=value, asset=asset, destination_type=beneficiary.type)
    operations: list[Operation] = [Redeem(wallet=wallet.pk, amount=value, currency=asset.code)]
    if fee.fee_amount > 0:
        operations.append(Transfer(source=wallet.pk, destination=PlatformAccount(Wallet.Purpose.FEE), amount=fee.fee_amount, currency=asset.code))

    def create_payout(tx: Transaction) -> list[Insert]:
        """The payout and (unless held for review) its `payout.send` message, inserted by the
        money path with its audit event in one statement; the message names the payout by its
        transaction (one payout per transaction), so the two rows need not wait for each other."""
        in_review = tx.status == Transaction.Status.IN_REVIEW
        payout = Payout(
            transaction=tx, wallet=wallet, customer_id=wallet.customer_id, amount=value, fee=fee.fee_amount,
            currency=asset.code, destination_type=beneficiary.type, destination={"name": beneficiary.name, **beneficiary.details},
            beneficiary_name=beneficiary.name, reference=f"po_{uuid.uuid4().hex}", provider=getattr(settings, "PAYOUT_PROVIDER", "sandbox"),
            status=Payout.Status.IN_REVIEW if in_review else Payout.Status.PENDING,  # the initial state (protected field)
        )
        tx.payout = payout  # the answer shows it
        rows = [Insert(payout)]
        if not in_review:
            rows.append(outbox_message(topic=PAYOUT_TOPIC, payload=_payout_payload(tx), key=f"payout:tx:{tx.pk}"))
        return rows

    masked = beneficiary.details.get("iban", beneficiary.details.get("account", ""))
    movement = MoneyMovement(
        actor=user, movement_type=MovementType.WITHDRAWAL, ledger_type=Transaction.Type.WITHDRAWAL, wallet=wallet, amount=value,
        operations=operations, limits=[LimitScope(asset, MovementType.WITHDRAWAL, Direction.OUTGOING, value)],
        two_factor_code=two_factor_code, step_up=step_up, beneficiary_name=beneficiary.name, pending=True, reference=reference,
        description=description or f"Withdrawal to {beneficiary.type} {masked[:4]}...{masked[-4:]}",
        metadata={"destination_type": beneficiary.type, "fee": str(fee.fee_amount)},
        after_post=create_payout,
        audit_data={"fee": format_amount(fee.fee_amount, asset.exponent), "destination_type": beneficiary.type,
                    "beneficiary_name": beneficiary.name},
    )
    return money_path(movement).raise_for_error()


def _payout_payload(tx: Transaction) -> dict[str, int]:
    return {"transaction_id": tx.pk}


def payout_id_of(payload: dict) -> int | None:
    """The payout an outbox message names: by id, or by its transaction (`_payout_payload`)."""
    if "payout_id" in payload:
        return int(payload["payout_id"])
    return Payout.objects.filter(transaction_id=int(payload["transaction_id"])).values_list("pk", flat=True).first()


def _payout_locked(payout_id: int) -> Payout | None:
    return Payout.objects.select_for_update(of=("self",)).select_related("transaction").filter(pk=payout_id).first()


def _require_no_transaction(what: str) -> None:
    """The payout provider is called over the network: never inside a database transaction,
    never under a row lock (STYLE 4)."""
    connection = db_transaction.get_connection()
    if connection.in_atomic_block or not connection.get_autocommit():
        raise RuntimeError(f"{what} calls the payout provider: call it outside any database transaction.")


def _payout_claim_send(payout_id: int) -> Payout | None:
    """Step 1 of a send, committed before the provider is called: pending -> sending. A payout
    already `sending` (an earlier attempt died between its claim and its record) is sent again:
    the provider takes `reference` as its idempotency key. Anything else: nothing to send."""
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout is None or payout.status not in (Payout.Status.PENDING, Payout.Status.SENDING):
            return None
        if payout.status == Payout.Status.PENDING:
            payout.claim_send()
        payout.attempts += 1
        payout.save(update_fields=["status", "attempts", "updated_at"])
    return payout


def payout_send(*, payout_id: int) -> Payout | None:
    """The `payout.send` outbox handler, in three steps, so the provider is never called under
    a lock or inside a transaction: (1) claim the payout (pending -> sending, committed); (2)
    hand it to the provider with no transaction open, `reference` as the idempotency key; (3)
    record the answer in a short transaction that locks the payout row: accepted -> `sent`, with
    a `payout.check` due when the provider said to ask again; completed -> settled at once;
    refused -> failed (holds released). A second run finds it `sent` or settled and does nothing."""
    _require_no_transaction("payout_send")
    claimed = _payout_claim_send(payout_id)
    if claimed is None:
        return Payout.objects.filter(pk=payout_id).first()
    result = get_payout_provider(claimed.provider).send(claimed)
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout.status != Payout.Status.SENDING:  # a concurrent run recorded it first
            return payout
        payout.provider_reference = result.provider_reference or payout.provider_reference
        if result.status == FAILED:
            _payout_failed(payout, reason=result.reason or "Refused by the payout provider.")
            return payout
        payout.mark_sent()
        payout.sent_at = timezone.now()
        payout.next_check_at = result.check_at or payout.sent_at
        payout.save(update_fields=["status", "provider_reference", "sent_at", "next_check_at", "updated_at"])
        audit_record(action="payout.sent", target=payout, data={"transaction_id": payout.transaction_id, "provider": payout.provider,
                                                                "provider_reference": payout.provider_reference})
        _payout_follow(payout, result)
    return payout


def _payout_failed(payout: Payout, *, reason: str) -> None:
    """Release the held funds (or, for a payout whose transaction a reviewer already posted,
    reverse it) and fail the payout. Caller holds the payout lock."""
    tx = payout.transaction
    if tx.status == Transaction.Status.PENDING:
        ledger_fail_pending(tx, code="PAYOUT_FAILED", reason=reason)
    elif tx.status == Transaction.Status.COMPLETED:
        ledger_reverse(tx, description=f"Payout {payout.pk} failed: {reason}"[:500]).raise_for_error()
    payout.fail()
    payout.failure_reason = reason[:500]
    payout.settled_at = timezone.now()
    payout.next_check_at = None
    payout.save(update_fields=["status", "failure_reason", "settled_at", "next_check_at", "attempts", "provider_reference", "updated_at"])
    audit_record(action="withdrawal.failed", target=tx, data={"payout_id": payout.pk, "reason": reason})
    if tx.reference.startswith("schedule:"):  # a schedule's occurrence (wallets.schedules): record it and tell the owner
        from wallets.schedules import schedule_payout_failed

        schedule_payout_failed(transaction=tx, reason=reason)


def _payout_follow(payout: Payout, result) -> None:
    """Follow the provider's answer about a LOCKED `sent` payout in the ledger, once: completed
    -> `ledger_complete_pending` (holds captured, Redeem + fee posted, transaction completed);
    failed -> holds released, transaction failed; still in flight -> check again at the
    provider's time. If the ledger refuses the posting of money the bank already paid out (a
    wallet suspended meanwhile), the payout stays `sent`, the refusal is audited and a check is
    due in a minute: the money did leave."""
    if result.status == ACCEPTED:
        payout.next_check_at = result.check_at or timezone.now() + timedelta(seconds=30)
        payout.save(update_fields=["next_check_at", "updated_at"])
        _payout_check_later(payout)
        return
    if result.status == FAILED:
        _payout_failed(payout, reason=result.reason or "The payout failed.")
        return
    tx = payout.transaction
    if tx.status == Transaction.Status.PENDING:
        with db_transaction.atomic():
            posted = ledger_complete_pending(tx)
            if not posted.ok:
                db_transaction.set_rollback(True)  # keep the transaction pending, its funds held
        if not posted.ok:
            payout.failure_reason = f"Posting refused: {posted.error.code}: {posted.error.message}"[:500]
            payout.next_check_at = timezone.now() + timedelta(seconds=60)
            payout.save(update_fields=["failure_reason", "next_check_at", "updated_at"])
            audit_record(action="payout.posting_refused", target=payout, data={"transaction_id": tx.pk, "code": posted.error.code})
            _payout_check_later(payout)
            return
    payout.complete()
    payout.settled_at = timezone.now()
    payout.next_check_at = None
    payout.failure_reason = ""
    payout.save(update_fields=["status", "settled_at", "next_check_at", "failure_reason", "updated_at"])
    audit_record(action="withdrawal.completed", target=tx, data={"payout_id": payout.pk, "provider_reference": payout.provider_reference})


def payout_settle(*, payout_id: int) -> Payout | None:
    """The `payout.check` outbox handler (and the admin's "ask now"): ask the provider where a
    `sent` payout stands, with no transaction open, then follow the answer in a short
    transaction that locks the payout row (`_payout_follow`); only a payout still `sent` moves,
    so a second run does nothing."""
    _require_no_transaction("payout_settle")
    payout = Payout.objects.filter(pk=payout_id).first()
    if payout is None or payout.status != Payout.Status.SENT:
        return payout
    result = get_payout_provider(payout.provider).status(payout)
    with db_transaction.atomic():
        payout = _payout_locked(payout_id)
        if payout is None or payout.status != Payout.Status.SENT:
            return payout
        _payout_follow(payout, result)
    return payout


def payout_review_decided(*, case) -> None:
    """A reviewer decided a held withdrawal: called by the review decision
    (`compliance.risk.review_approve` / `review_reject`) inside its transaction, after the ledger
    followed it. Approved and posted -> the payout is released to the provider (a `payout.send`
    outbox row); rejected, or approved but refused by the ledger -> the payout is cancelled (its
    holds were released by the ledger)."""
    payout = Payout.objects.select_for_update(of=("self",)).select_related("transaction").filter(
        transaction_id=case.transaction_id, status=Payout.Status.IN_REVIEW
    ).first()
    if payout is None or case.status == "open":
        return
    payout.transaction.refresh_from_db()
    if case.status == "approved" and payout.transaction.status == Transaction.Status.COMPLETED:
        payout.approve()
        payout.save(update_fields=["status", "updated_at"])
        outbox_emit(topic=PAYOUT_TOPIC, payload=_payout_payload(payout.transaction), key=f"payout:tx:{payout.transaction_id}")
    else:
        payout.cancel()
        payout.failure_reason = (case.decision_reason or "Rejected in review.")[:500]
        payout.save(update_fields=["status", "failure_reason", "updated_at"])


# --------------------------------------------------------------------------------------------
# Currency exchange
# --------------------------------------------------------------------------------------------


def quote_ttl_seconds() -> int:
    return int(getattr(settings, "EXCHANGE_QUOTE_TTL_SECONDS", 30))


def exchange_quote_create(*, user: User, source_wallet_id: int, destination_wallet_id: int, amount: Any) -> ExchangeQuote:
    """Price an exchange between two of the user's wallets (both must be theirs: 404).

    `amount` leaves the source wallet; the fee (`fee_compute`, 0.5%, rounded UP to the source
    exponent) is part of it; the rest is converted at the provider's BID (what the platform
    pays for one source unit) and the destination amount is rounded DOWN (toward zero) to the
    destination asset's exponent. Both roundings favour the platform, by less than one minor
    unit each, and the rate shown is the one applied. Nothing moves; the quote is honoured
    until `expires_at` (EXCHANGE_QUOTE_TTL_SECONDS, 30 s)."""
    source = wallet_get_for_user(user=user, wallet_id=source_wallet_id)
    destination = wallet_get_for_user(user=user, wallet_id=destination_wallet_id)
    if source.pk == destination.pk or source.asset_id == destination.asset_id:
        raise ValidationFailed(
            "destination_wallet_id: an exchange needs a wallet in another currency.",
            details={"fields": {"destination_wallet_id": ["Must hold a different currency than the source wallet."]}},
        )
    value = parse_amount(amount, exponent=source.asset.exponent, field="amount")
    fee = fee_compute(movement_type=MovementType.EXCHANGE, amount=value, asset=source.asset).fee_amount
    rate = get_price_provider().quote(source.asset.code, destination.asset.code).bid
    with localcontext(MONEY_CONTEXT):
        net = value - fee
        destination_amount = (net * rate).quantize(quantum(destination.asset.exponent), rounding=ROUND_FLOOR) if net > 0 else Decimal(0)
    if destination_amount <= 0:
        raise _field_error("amount", "Too small to exchange: nothing would arrive after the fee.")
    if destination_amount.adjusted() >= MAX_INTEGER_DIGITS:  # the ledger stores NUMERIC(38, 18)
        raise _field_error("amount", f"Too large to exchange: the {destination.asset.code} amount would exceed {MAX_INTEGER_DIGITS} integer digits.")
    now = timezone.now()
    return ExchangeQuote.objects.create(
        user=user, customer_id=source.customer_id, source_wallet=source, destination_wallet=destination,
        source_currency=source.asset.code, destination_currency=destination.asset.code, source_amount=value, fee=fee,
        rate=rate, destination_amount=destination_amount, created_at=now, expires_at=now + timedelta(seconds=quote_ttl_seconds()),
    )


def exchange_quote_get(*, user: User, quote_id) -> ExchangeQuote:
    quote = ExchangeQuote.objects.select_related("source_wallet__asset", "destination_wallet__asset").filter(pk=quote_id, user=user).first()
    if quote is None:
        raise NotFound(f"Quote {quote_id} not found.", details={"quote_id": str(quote_id)})
    return quote


def exchange_execute(*, user: User, quote_id, two_factor_code: str | None = None) -> Transaction:
    """Execute a quote once, as ONE ledger posting through the platform's FX accounts:

        Transfer(source -> FX[source asset], amount - fee)
        Transfer(source -> fee[source asset], fee)
        Transfer(FX[destination asset] -> destination, destination_amount)

    The FX account in the destination asset is the platform's FX float: funded by issuing into
    it (`fx_float_fund`, `manage.py fund_fx_float`) and replenished by the source legs of
    exchanges the other way. If no FX shard covers the destination amount the posting is
    refused: 422 INSUFFICIENT_FUNDS (the quote stays open until it expires). After expiry: 409
    QUOTE_EXPIRED; an executed quote: 409 INVALID_STATE (a retry with the same Idempotency-Key
    replays the first answer instead). Limits (outgoing in the source asset, incoming in the
    destination asset), 2FA on the source amount and risk apply as for any movement."""
    with db_transaction.atomic():
        quote = (
            ExchangeQuote.objects.select_for_update(of=("self",)).select_related("source_wallet__asset", "destination_wallet__asset")
            .filter(pk=quote_id, user=user).first()
        )  # lock 1: the quote, then (money path) the customer, then the wallets
        if quote is None:
            raise NotFound(f"Quote {quote_id} not found.", details={"quote_id": str(quote_id)})
        if quote.status != ExchangeQuote.Status.OPEN:
            raise InvalidState(f"Quote {quote.pk} was already executed (transaction {quote.transaction_id}).",
                               details={"quote_id": str(quote.pk), "status": quote.status, "transaction_id": quote.transaction_id})
        if timezone.now() >= quote.expires_at:
            raise QuoteExpired(details={"quote_id": str(quote.pk), "expired_at": quote.expires_at.isoformat()})
        source = wallet_get_for_user(user=user, wallet_id=quote.source_wallet_id)  # still theirs
        destination = wallet_get_for_user(user=user, wallet_id=quote.destination_wallet_id)
        src, dst = source.asset, destination.asset
        net = quote.source_amount - quote.fee
        float_wallet = platform_wallet_covering(dst, Wallet.Purpose.FX, quote.destination_amount)
        operations: list[Operation] = [Transfer(source=source.pk, destination=PlatformAccount(Wallet.Purpose.FX), amount=net, currency=src.code)]
        if quote.fee > 0:
            operations.append(Transfer(source=source.pk, destination=PlatformAccount(Wallet.Purpose.FEE), amount=quote.fee, currency=src.code))
        operations.append(Transfer(source=float_wallet.pk, destination=destination.pk, amount=quote.destination_amount, currency=dst.code))

        def mark_executed(tx: Transaction) -> None:
            quote.execute()
            quote.transaction = tx
            quote.executed_at = timezone.now()
            quote.save(update_fields=["status", "transaction", "executed_at"])

        result = money_path(MoneyMovement(
            actor=user, movement_type=MovementType.EXCHANGE, ledger_type=Transaction.Type.EXCHANGE, wallet=source,
            amount=quote.source_amount, operations=operations,
            limits=[LimitScope(src, MovementType.EXCHANGE, Direction.OUTGOING, quote.source_amount),
                    LimitScope(dst, MovementType.EXCHANGE, Direction.INCOMING, quote.destination_amount)],
            two_factor_code=two_factor_code, counterparty_wallets=[destination],
            description=f"Exchange {format_amount(quote.source_amount, src.exponent)} {src.code} to {dst.code}",
            metadata={"quote_id": str(quote.pk), "rate": str(quote.rate), "fee": str(quote.fee),
                      "destination_amount": str(quote.destination_amount), "destination_currency": dst.code},
            after_post=mark_executed,
            audit_data={"quote_id": str(quote.pk), "rate": str(quote.rate), "destination_wallet_id": destination.pk,
                        "destination_amount": format_amount(quote.destination_amount, dst.exponent)},
        ))
        if isinstance(result.error, InsufficientFunds) and result.error.details.get("wallet_id") == float_wallet.pk:
            result.error = InsufficientFunds(
                f"The platform's {dst.code} exchange float cannot cover {format_amount(quote.destination_amount, dst.exponent)} {dst.code} right now.",
                details={**result.error.details, "float": True},
            )
    return result.raise_for_error()


def fx_float_fund(*, asset: Asset, per_shard: Decimal, actor: User | None = None) -> Transaction | None:
    """Top up every shard of the platform's FX account in `asset` to at least `per_shard` by
    issuing into it (the platform's FX float: the money it pays exchanges out of). Returns the
    adjustment transaction, or None when every shard already had enough."""
    if per_shard <= 0:
        raise _field_error("amount", "Must be greater than zero.")
    with db_transaction.atomic():
        platform_wallets_ensure(asset=asset, purpose=Wallet.Purpose.FX)
        shards = Wallet.objects.filter(asset=asset, purpose=Wallet.Purpose.FX, customer__isnull=True, organization__isnull=True).order_by("pk")
        operations = [Issue(wallet=w.pk, amount=per_shard - w.balance, currency=asset.code) for w in shards if w.balance < per_shard]
        if not operations:
            return None
        tx = ledger_post(
            type=Transaction.Type.ADJUSTMENT, operations=operations, description=f"FX float top-up ({asset.code})",
            metadata={"fx_float": True, "per_shard": str(per_shard)},
        ).raise_for_error()
        audit_record(actor=actor, action="fx_float.funded", target=tx, data={"currency": asset.code, "per_shard": format_amount(per_shard, asset.exponent)})
    return tx
