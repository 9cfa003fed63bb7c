"""Hot platform accounts (SPEC 4.9): each (asset, purpose) platform account is N wallet rows.

Invariants:
* A platform account is `LEDGER_HOT_ACCOUNT_SHARDS` (N) Wallet rows with the same (asset,
  purpose) in each mode (core.livemode), no owner, and `shard` 0..N-1; its balance is the sum of its rows
  (`ledger.selectors.platform_account_balance`). Each row keeps its own exact balance and
  `balance_after` chain, so every per-wallet invariant holds per row.
* A posting uses shard `counterparty_wallet_id % N`: deterministic (a reversal lands where the
  original did) and spread across rows, so no platform account is one global lock.
* Issuance shards may go negative; paying out of a non-issuance account picks a shard that
  covers the amount (`platform_wallet_covering`).
* Shard rows are created on first use (`INSERT ... ON CONFLICT DO NOTHING`) or by `asset_create`;
  creating them is idempotent and race-safe, in the caller's transaction.
"""

from __future__ import annotations

from decimal import Decimal

from core.livemode import deployment_livemode
from ledger.errors import WalletInactive
from ledger.models import Asset, Wallet, hot_account_shards


def _platform_purposes() -> set[str]:
    return {p for p in Wallet.Purpose.values if p}


def _platform_kind(purpose: str) -> str:
    return Wallet.Kind.ISSUANCE if purpose == Wallet.Purpose.ISSUANCE else Wallet.Kind.SYSTEM


def platform_wallets_ensure(*, asset: Asset | int, purpose: str, livemode: bool | None = None) -> None:
    """Create the N shard rows of a platform account in mode `livemode` (the deployment's by
    default, core.livemode) if missing (idempotent, race-safe)."""
    livemode = deployment_livemode() if livemode is None else livemode
    if purpose not in _platform_purposes():
        raise ValueError(f"unknown platform account purpose {purpose!r}")
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    Wallet.objects.bulk_create(
        [
            Wallet(asset_id=asset_id, kind=_platform_kind(purpose), purpose=purpose, shard=s, livemode=livemode,
                   label=f"platform {purpose} #{s}" + ("" if livemode else " (test)"))
            for s in range(hot_account_shards())
        ],
        ignore_conflicts=True,
    )


def _platform_shards(asset_id: int, purpose: str, livemode: bool):
    return Wallet.objects.filter(asset_id=asset_id, purpose=purpose, livemode=livemode, customer__isnull=True, organization__isnull=True)


def platform_wallet_covering(asset: Asset | int, purpose: str, amount: Decimal, *, livemode: bool | None = None) -> Wallet:
    """A shard of a sharded non-issuance platform account in mode `livemode` (the deployment's by
    default, core.livemode) whose available balance covers `amount` (the richest one); if none
    does, the richest, so the posting reports INSUFFICIENT_FUNDS under lock."""
    asset_id = asset.pk if isinstance(asset, Asset) else asset
    livemode = deployment_livemode() if livemode is None else livemode
    platform_wallets_ensure(asset=asset_id, purpose=purpose, livemode=livemode)
    shards = list(_platform_shards(asset_id, purpose, livemode).filter(status=Wallet.Status.ACTIVE))
    if not shards:
        raise WalletInactive(f"No active {purpose} account for this asset.")
    shards.sort(key=lambda w: (w.balance - w.held, -w.pk), reverse=True)
    return shards[0]
