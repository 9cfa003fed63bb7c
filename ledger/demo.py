"""Demo ledger data for `seed_demo` (SPEC 10).

Invariants:
* Idempotent: wallets are opened only if missing, and the deposits carry fixed references
  ("demo-seed-..."), so a second run gets DUPLICATE_REFERENCE from the ledger and moves nothing.
* Money only through `ledger.posting.ledger_post`, one transaction per demo wallet.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from accounts.models import Customer, User
from ledger.errors import DuplicateReference
from ledger.models import Asset, Wallet
from ledger.selectors import platform_asset
from ledger.posting import Issue, ledger_post
from ledger.services import wallet_open

DEMO_EMAIL = "demo@coffer.local"
BOB_EMAIL = "bob@coffer.local"

# (email, asset code, opening deposit or None)
DEMO_WALLETS: list[tuple[str, str, Decimal | None]] = [
    (DEMO_EMAIL, "USD", Decimal("1000.00")),
    (DEMO_EMAIL, "EUR", None),
    (BOB_EMAIL, "USD", None),
]


def _customer(user: User) -> Customer:
    customer = Customer.objects.filter(user=user).first()
    if customer is None:  # users created by signup have one; older rows may not
        customer = Customer.objects.create(user=user, name=user.full_name, email=user.email)
    return customer


def _wallet(customer: Customer, asset: Asset) -> Wallet:
    existing = Wallet.objects.filter(customer=customer, asset=asset, label="").exclude(status=Wallet.Status.CLOSED).first()
    return existing or wallet_open(asset=asset, customer=customer)


def seed_ledger_demo(stdout) -> None:
    for email, code, deposit in DEMO_WALLETS:
        user = User.objects.filter(email=email).first()
        if user is None:
            stdout.write(f"ledger demo: no user {email}, skipped")
            continue
        asset = platform_asset(code)
        with transaction.atomic():
            customer = _customer(user)
            wallet = _wallet(customer, asset)
            if deposit is None:
                continue
            result = ledger_post(
                type="deposit",
                operations=[Issue(wallet=wallet, amount=deposit, currency=code)],
                customer=customer,
                reference=f"demo-seed-{code.lower()}-{wallet.pk}",
                description="Demo opening balance",
            )
        if result.ok:
            stdout.write(f"ledger demo: deposited {asset.format(deposit)} {code} into wallet {wallet.pk} of {email}")
        elif not isinstance(result.error, DuplicateReference):
            result.raise_for_error()
