"""Customer wallets and the first money endpoints: a user's own wallets, deposits into them and
transfers out of them. Every balance change goes through `ledger.services.ledger_post`.

Transactions. These services run inside the request's idempotent transaction
(`core.idempotency`), so they never open a durable block. A posting refused by the ledger
(INSUFFICIENT_FUNDS, WALLET_INACTIVE, CURRENCY_MISMATCH) is recorded by `ledger_post` as a
failed transaction in that same transaction; the service closes its savepoint first and only
then raises, so the failed record commits together with the stored 4xx response.

Lock order (STYLE 4): only the ledger locks, wallets by ascending id, in one statement.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction as db_transaction

from accounts.models import Customer, User
from compliance.services import audit_record
from core.errors import ValidationFailed
from core.money import parse_amount
from ledger.models import Asset, Transaction, Wallet
from ledger.selectors import asset_get
from ledger.services import Issue, Transfer, ledger_post, wallet_open
from wallets.selectors import customer_of, transfer_destination_get, wallet_get_for_user


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


def wallet_create(*, user: User, currency: str, label: str = "") -> Wallet:
    """Open a wallet in `currency` for the user's own Customer (one unlabelled open wallet per
    currency: a second one is 409 WALLET_EXISTS unless labelled)."""
    asset = _platform_asset(currency)
    with db_transaction.atomic():
        wallet = wallet_open(asset=asset, customer=_customer_for(user), label=label)
        audit_record(actor=user, action="wallet.open", target=wallet, data={"currency": asset.code, "label": label})
    return wallet


def deposit_create(*, user: User, wallet_id: int, amount: Any, source: str = "") -> Transaction:
    """Money enters the user's own wallet from outside: an `Issue` from the asset's issuance
    account. Someone else's wallet is 404."""
    with db_transaction.atomic():
        wallet = wallet_get_for_user(user=user, wallet_id=wallet_id)
        value = parse_amount(amount, exponent=wallet.asset.exponent, field="amount")
        result = ledger_post(
            type=Transaction.Type.DEPOSIT,
            operations=[Issue(wallet=wallet.pk, amount=value, currency=wallet.asset.code)],
            customer=wallet.customer,
            description=f"Deposit from {source}" if source else "Deposit",
            metadata={"source": source} if source else {},
        )
    return result.raise_for_error()  # after the savepoint closed: a failed attempt stays recorded


def transfer_create(
    *, user: User, source_wallet_id: int, destination_wallet_id: int, amount: Any, currency: str, description: str = ""
) -> Transaction:
    """From one of the user's wallets to any customer wallet of the same asset. The source
    must be the caller's (else 404); the ledger checks status, asset and funds under lock."""
    with db_transaction.atomic():
        source = wallet_get_for_user(user=user, wallet_id=source_wallet_id)
        destination = transfer_destination_get(wallet_id=destination_wallet_id)
        if destination.pk == source.pk:
            raise ValidationFailed(
                "destination_wallet_id: must differ from the source wallet.",
                details={"fields": {"destination_wallet_id": ["Must differ from the source wallet."]}},
            )
        value = parse_amount(amount, exponent=source.asset.exponent, field="amount")
        result = ledger_post(
            type=Transaction.Type.TRANSFER,
            operations=[Transfer(source=source.pk, destination=destination.pk, amount=value, currency=(currency or "").strip().upper())],
            customer=source.customer,
            description=description,
        )
    return result.raise_for_error()
