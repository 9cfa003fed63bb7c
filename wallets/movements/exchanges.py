"""Currency exchange: a quote priced at the provider's bid, executed once as one ledger
posting through the platform's FX accounts (the FX float); and the FX float's funding."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import transaction as db_transaction
from django.utils import timezone

from accounts.models import User
from compliance.fees import fee_compute
from compliance.models import Direction, MovementType
from compliance.audit import audit_record
from core.errors import InvalidState, NotFound, QuoteExpired, ValidationFailed, field_error
from core.money import MAX_INTEGER_DIGITS, MONEY_CONTEXT, format_amount, parse_amount, quantum
from core.prices import get_price_provider
from ledger.errors import InsufficientFunds
from ledger.models import Asset, Transaction, Wallet
from ledger.posting import Issue, Operation, PlatformAccount, Transfer, ledger_post, platform_wallet_covering, platform_wallets_ensure
from wallets.models import ExchangeQuote
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from wallets.selectors import wallet_get_for_user


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
        raise field_error("amount", "Too small to exchange: nothing would arrive after the fee.")
    if destination_amount.adjusted() >= MAX_INTEGER_DIGITS:  # the ledger stores NUMERIC(38, 18)
        raise field_error("amount", f"Too large to exchange: the {destination.asset.code} amount would exceed {MAX_INTEGER_DIGITS} integer digits.")
    now = timezone.now()
    return ExchangeQuote.objects.create(
        user=user, customer_id=source.customer_id, source_wallet=source, destination_wallet=destination,
        source_currency=source.asset.code, destination_currency=destination.asset.code, source_amount=value, fee=fee,
        rate=rate, destination_amount=destination_amount, created_at=now, expires_at=now + timedelta(seconds=quote_ttl_seconds()),
    )


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
        raise field_error("amount", "Must be greater than zero.")
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
