"""Ledger factories and fixtures: assets, wallets and holds, made through the ledger's services.

* `platform_asset(code)`: a seeded platform asset (get_or_create, because a transactional test's
  flush removes what the seed migration inserted). The one list of seeded assets for the tests.
* `AssetFactory`: an organization's custom asset, through `asset_create` (its issuance shards too).
* `WalletFactory`: a customer's wallet opened by `wallet_open`; `funded="10"` posts a real
  deposit through the posting engine (`deposit`), never a written balance. `OrgWalletFactory`
  for an organization's customer, `SystemWalletFactory` for an organization's system wallet.
* `TransactionFactory`: a completed transaction posted by `ledger_post` (a deposit by default).
* `hold_pending(wallet, amount)`: money reserved as a payout in flight reserves it
  (`ledger_hold_pending`); `ledger_fail_pending` / `ledger_complete_pending` end it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

import factory
import pytest
from django.db import connection, transaction
from django.utils import timezone

from ledger.models import Asset, Transaction, Wallet
from ledger.posting import Issue, Redeem, ledger_hold_pending, ledger_post
from ledger.services import asset_create, wallet_open
from tests.factories.accounts import CustomerFactory, OrgCustomerFactory, OrganizationFactory

# ledger/migrations/0003_seed_assets.py
SEEDED = {
    "USD": ("US Dollar", 2, "fiat"),
    "EUR": ("Euro", 2, "fiat"),
    "GBP": ("Pound Sterling", 2, "fiat"),
    "BTC": ("Bitcoin", 8, "crypto"),
    "ETH": ("Ether", 18, "crypto"),
    "USDC": ("USD Coin", 6, "crypto"),
    "SOL": ("Solana", 9, "crypto"),
}


def platform_asset(code: str) -> Asset:
    """The seeded asset. get_or_create because a transactional test's flush (TRUNCATE) removes
    what the seed migration inserted, for the transactional tests that run after it."""
    name, exponent, kind = SEEDED[code]
    asset, _ = Asset.objects.get_or_create(code=code, organization=None, defaults={"name": name, "exponent": exponent, "kind": kind})
    return asset


def deposit(wallet: Wallet, amount: str | Decimal, **posting) -> Transaction:
    """A completed deposit into `wallet` through the posting engine (`posting`: the transaction's
    customer= or organization=, reference=, description=, as the entry point that posts it would set)."""
    tx = TransactionFactory(wallet=wallet, amount=amount, **posting)
    wallet.refresh_from_db()
    return tx


def hold_pending(wallet: Wallet, amount: str | Decimal, *, type: str = "withdrawal", **owner) -> Transaction:  # noqa: A002
    """`amount` reserved on `wallet` by a pending transaction, as a payout in flight reserves it."""
    tx = ledger_hold_pending(type=type, operations=[Redeem(wallet=wallet, amount=Decimal(amount))], **owner).raise_for_error()
    wallet.refresh_from_db()
    return tx


class TransactionFactory(factory.django.DjangoModelFactory):
    """A completed ledger transaction posted by the engine (`ledger_post`): by default a deposit
    of `amount` into `wallet`; or the given `operations` with their `type`. Other keywords
    (customer=, organization=, reference=, description=) go to `ledger_post`."""

    class Meta:
        model = Transaction

    type = "deposit"
    amount = "10.00"
    operations = None

    @classmethod
    def _create(cls, model_class, *, type, amount, operations=None, wallet=None, **posting):  # noqa: A002
        if operations is None:
            operations = [Issue(wallet=wallet if wallet is not None else WalletFactory(), amount=Decimal(amount))]
        return ledger_post(type=type, operations=operations, **posting).raise_for_error()


class AssetFactory(factory.django.DjangoModelFactory):
    """An organization's custom asset (points, tickets), created by `asset_create`."""

    class Meta:
        model = Asset

    organization = factory.SubFactory(OrganizationFactory)
    code = factory.Sequence(lambda n: f"PTS{n}")
    name = "Loyalty points"
    exponent = 0
    kind = Asset.Kind.CUSTOM

    @classmethod
    def _create(cls, model_class, **kwargs):
        return asset_create(**kwargs)


class WalletFactory(factory.django.DjangoModelFactory):
    """A customer's wallet, opened by `wallet_open`. `funded`: an amount deposited through the
    posting engine, with `deposit_owner` (customer=/organization=) on its transaction."""

    class Meta:
        model = Wallet

    asset = factory.LazyFunction(lambda: platform_asset("USD"))
    customer = factory.SubFactory(CustomerFactory)
    label = ""
    funded = None
    deposit_owner = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, *, funded=None, deposit_owner=None, **kwargs):
        wallet = wallet_open(**kwargs)
        if funded is not None:
            deposit(wallet, funded, **(deposit_owner or {}))
        return wallet


class OrgWalletFactory(WalletFactory):
    """A wallet of an organization's customer (`customer__organization=org`)."""

    customer = factory.SubFactory(OrgCustomerFactory)


class SystemWalletFactory(WalletFactory):
    """An organization's system wallet (kind=system), e.g. its settlement or fee wallet."""

    customer = None
    organization = factory.SubFactory(OrganizationFactory)
    purpose = ""


@pytest.fixture
def usd(db) -> Asset:
    return platform_asset("USD")


@pytest.fixture
def eur(db) -> Asset:
    return platform_asset("EUR")


@pytest.fixture
def eth(db) -> Asset:
    return platform_asset("ETH")


def open_wallet(asset: Asset, funded: str | Decimal | None = None, *, customer=None, label: str = "") -> Wallet:
    return WalletFactory(asset=asset, funded=funded, label=label, **({"customer": customer} if customer is not None else {}))


@pytest.fixture
def make_wallet(db):
    return open_wallet


@pytest.fixture
def organization(db):
    return OrganizationFactory()


def balance(wallet: Wallet | int) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk if isinstance(wallet, Wallet) else wallet).balance


@contextlib.contextmanager
def clock_at(moment: datetime):
    """Django's clock reads `moment` inside the block (the posting engine dates entries with
    `timezone.now()`): entries of a past month, written by the real engine."""
    real = timezone.now
    timezone.now = lambda: moment
    try:
        yield moment
    finally:
        timezone.now = real


@contextlib.contextmanager
def past_month_partitions(months: int = 6):
    """PostgreSQL: monthly partitions of ledger_entry for the `months` months before this one, as
    a database partitioned that long ago has them (a new test database's legacy partition covers
    everything before this month, or before the next one after the conversion test re-ran it). Committed DDL (for TransactionTestCase-style tests), undone on
    exit: the months created are dropped and the legacy partition gets its bound back."""
    from ledger.partitions import _legacy_end, add_months, create_month_sql, month_start, partition_name, partitions

    current = month_start(timezone.now())
    first = add_months(current, -months)
    legacy_end = _legacy_end("ledger_entry")
    moved = legacy_end is not None and legacy_end > first

    def run(sql: str) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)

    if moved:
        run("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_p_legacy")
        run(f"ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_p_legacy FOR VALUES FROM (MINVALUE) TO ('{first.isoformat()} 00:00:00+00')")
    existing = {name for name, _ in partitions("ledger_entry")}
    # ... and this month's, which the moved legacy partition may have been holding (a database
    # whose conversion ran with rows of this month: ledger 0010 then covers up to next month).
    made = [add_months(first, n) for n in range(months + 1) if partition_name("ledger_entry", add_months(first, n)) not in existing]
    for month in made:
        run(create_month_sql("ledger_entry", month))
    try:
        yield [add_months(first, n) for n in range(months)]
    finally:
        for month in made:
            run(f"DROP TABLE IF EXISTS {partition_name('ledger_entry', month)}")
        if moved:
            run("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_p_legacy")
            run(f"ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_p_legacy FOR VALUES FROM (MINVALUE) TO ('{legacy_end.isoformat()} 00:00:00+00')")
