"""Transfers: from one of a user's wallets to any customer wallet of the same asset."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from compliance.models import Direction, MovementType
from core.errors import field_error
from core.money import parse_amount
from ledger.models import Transaction
from ledger.posting import Transfer
from ledger.selectors import wallet_owner_name
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from wallets.selectors import transfer_wallets_get, wallet_get_for_user


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
        raise field_error("destination_wallet_id", "Must differ from the source wallet.")
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
