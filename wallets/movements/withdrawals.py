"""Withdrawals: money leaves a user's wallet for a bank account (IBAN) or another rail. The
amount and fee are held (`pending`) and a `Payout` with its `payout.send` outbox row is written in
the same transaction; `wallets.movements.payouts` sends and settles it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from accounts.models import User
from compliance.fees import fee_compute
from compliance.models import Direction, MovementType
from core.db import Insert
from core.errors import field_error
from core.money import format_amount, parse_amount
from core.outbox import outbox_message
from core.reference import RateBook
from ledger.models import Transaction, Wallet
from ledger.posting import Operation, PlatformAccount, Redeem, Transfer
from wallets.beneficiaries import beneficiary_audit_fields, beneficiary_sealed_fields, mask_destination
from wallets.errors import InvalidBeneficiary, InvalidIban
from wallets.models import Payout
from wallets.movements.payouts import PAYOUT_TOPIC, payout_payload
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from wallets.selectors import wallet_get_for_user


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
        raise field_error("destination", "An object with type IBAN or EXTERNAL is required.", InvalidBeneficiary)
    kind = _text(destination.get("type")).upper()
    if kind not in Payout.DestinationType.values:
        raise field_error("destination.type", "One of IBAN, EXTERNAL.", InvalidBeneficiary)
    name = _text(destination.get("name"))
    if not name or len(name) > 200:
        raise field_error("destination.name", "The beneficiary's name (1-200 characters) is required.", InvalidBeneficiary)
    if kind == Payout.DestinationType.IBAN:
        raw = _text(destination.get("iban"))
        if not raw:
            raise field_error("destination.iban", "An IBAN is required.", InvalidBeneficiary)
        try:
            iban = IBAN(raw)
        except SchwiftyException as exc:
            raise InvalidIban(f"destination.iban: {exc}.", details={"fields": {"destination.iban": [str(exc)]}}) from None
        country = _text(destination.get("country")).upper()
        if country and country != iban.country_code:
            raise field_error("destination.country", f"The IBAN is from {iban.country_code}, not {country}.", InvalidBeneficiary)
        details = {"iban": iban.compact, "country": iban.country_code, "bank_name": _text(destination.get("bank_name"))[:200]}
        return Beneficiary(type=kind, name=name, details=details)
    account = _text(destination.get("account"))
    if not account or len(account) > 200:
        raise field_error("destination.account", "The account at the external rail (1-200 characters) is required.", InvalidBeneficiary)
    return Beneficiary(type=kind, name=name, details={"account": account, "network": _text(destination.get("network"))[:50]})


def withdrawal_create(
    *, user: User, wallet_id: int, amount: Any, destination: Any, description: str = "", two_factor_code: str | None = None,
    step_up: bool = True, reference: str = "",
) -> Transaction:
    """Money leaves the user's wallet for a bank account (IBAN) or another rail. The fee
    (`fee_compute`: 1%, minimum USD 1.00 worth for an IBAN) is charged on top; amount + fee are held
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
    rates = RateBook()  # the fee's minimum, the limits, the step-up and the posting: one rate
    fee = fee_compute(movement_type=MovementType.WITHDRAWAL, amount=value, asset=asset, destination_type=beneficiary.type, rates=rates)
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
            currency=asset.code, destination_type=beneficiary.type,
            **beneficiary_sealed_fields(name=beneficiary.name, destination={"name": beneficiary.name, **beneficiary.details}),
            reference=f"po_{uuid.uuid4().hex}", provider=getattr(settings, "PAYOUT_PROVIDER", "sandbox"),
            status=Payout.Status.IN_REVIEW if in_review else Payout.Status.PENDING,  # the initial state (protected field)
        )
        tx.payout = payout  # the answer shows it
        rows = [Insert(payout)]
        if not in_review:
            rows.append(outbox_message(topic=PAYOUT_TOPIC, payload=payout_payload(tx), key=f"payout:tx:{tx.pk}"))
        return rows

    shown = mask_destination({"name": beneficiary.name, **beneficiary.details})
    movement = MoneyMovement(
        actor=user, movement_type=MovementType.WITHDRAWAL, ledger_type=Transaction.Type.WITHDRAWAL, wallet=wallet, amount=value,
        operations=operations, limits=[LimitScope(asset, MovementType.WITHDRAWAL, Direction.OUTGOING, value)],
        two_factor_code=two_factor_code, step_up=step_up, beneficiary_name=beneficiary.name, pending=True, reference=reference,
        description=description or f"Withdrawal to {beneficiary.type} {shown.get('iban') or shown.get('account', '')}",
        metadata={"destination_type": beneficiary.type, "fee": str(fee.fee_amount)},
        after_post=create_payout, rates=rates,
        audit_data={"fee": format_amount(fee.fee_amount, asset.exponent), "destination_type": beneficiary.type,
                    **beneficiary_audit_fields(beneficiary.name)},
    )
    return money_path(movement).raise_for_error()
