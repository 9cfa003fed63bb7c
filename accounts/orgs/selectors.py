"""Reads for the organization API. Callers pass the organization; nothing here crosses it."""

from __future__ import annotations

from accounts.models import Customer
from ledger.models import Wallet


def customer_wallets(*, customer: Customer) -> list:
    """The customer's wallets (ledger.Wallet rows whose `customer` is this one)."""
    return list(Wallet.objects.select_related("asset").filter(customer=customer).order_by("id"))
