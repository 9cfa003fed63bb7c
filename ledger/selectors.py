"""Reads of the ledger. Access checks (who may see which wallet) belong to the API layer's
selectors built on these; these never write and never lock."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Q, QuerySet, Sum

from ledger.models import Asset, Entry, Hold, Transaction, Wallet


def assets_visible(*, organization=None) -> QuerySet[Asset]:
    """Platform assets, plus the organization's own custom assets."""
    cond = Q(organization__isnull=True)
    if organization is not None:
        cond |= Q(organization=organization)
    return Asset.objects.filter(cond)


def asset_get(*, code: str, organization=None) -> Asset:
    """By code: the organization's custom asset wins over a platform asset of the same code.
    Raises Asset.DoesNotExist."""
    code = (code or "").strip().upper()
    if organization is not None:
        own = Asset.objects.filter(organization=organization, code=code).first()
        if own is not None:
            return own
    return Asset.objects.get(organization__isnull=True, code=code)


def wallet_list(*, customer=None, organization=None) -> QuerySet[Wallet]:
    """A customer's wallets, or an organization's system wallets and its customers' wallets."""
    qs = Wallet.objects.select_related("asset", "customer")
    if customer is not None:
        return qs.filter(customer=customer)
    if organization is not None:
        return qs.filter(Q(organization=organization) | Q(customer__organization=organization))
    return qs.none()


def wallet_owner_name(wallet: Wallet | None) -> str | None:
    """Who a wallet belongs to, as shown in wallet and transaction representations: a user's
    full name; an organization's customer by name, else external id; an organization's system
    wallet by label, else the organization's name; a platform wallet is "Coffer". Reads
    `wallet.customer(.user)` and `wallet.organization`: select them with the wallet."""
    if wallet is None:
        return None
    customer = wallet.customer
    if customer is not None:
        if customer.user_id is not None and customer.user.full_name:
            return customer.user.full_name
        return customer.name or customer.external_id or f"customer {customer.pk}"
    if wallet.organization_id is not None:
        return wallet.label or wallet.organization.name
    return "Coffer"


def wallet_entries(*, wallet: Wallet | int) -> QuerySet[Entry]:
    """A wallet's statement, newest first."""
    wid = wallet.pk if isinstance(wallet, Wallet) else wallet
    return Entry.objects.filter(wallet_id=wid).select_related("wallet__asset").order_by("-id")


def transaction_entries(*, transaction: Transaction | int) -> QuerySet[Entry]:
    tid = transaction.pk if isinstance(transaction, Transaction) else transaction
    return Entry.objects.filter(transaction_id=tid).select_related("wallet__asset").order_by("id")


def wallet_open_holds(*, wallet: Wallet | int) -> QuerySet[Hold]:
    wid = wallet.pk if isinstance(wallet, Wallet) else wallet
    return Hold.objects.filter(wallet_id=wid, status=Hold.Status.HELD)


def platform_account_balance(asset: Asset | int, purpose: str) -> Decimal:
    """The logical balance of a sharded platform account: the sum of its shard rows."""
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    total = Wallet.objects.filter(
        asset_id=asset_id, purpose=purpose, customer__isnull=True, organization__isnull=True
    ).aggregate(total=Sum("balance"))["total"]
    return total or Decimal(0)
