"""Deposits: money enters a user's own wallet from outside (an `Issue`), through the money path."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from compliance.models import Direction, MovementType
from core.money import parse_amount
from ledger.models import Transaction
from ledger.posting import Issue
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from wallets.selectors import wallet_get_for_user


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
