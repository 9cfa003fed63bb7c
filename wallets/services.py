"""Customer wallets: a user opens wallets for their own Customer. Money moves only through
`wallets.movements` (each kind of movement) and the money path (`wallets.pipeline`).
"""

from __future__ import annotations

from django.db import transaction as db_transaction

from accounts.models import Customer, User
from compliance.audit import audit_record
from core.errors import ValidationFailed
from ledger.models import Asset, Wallet
from ledger.selectors import asset_get
from ledger.services import wallet_open
from wallets.selectors import customer_of


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
