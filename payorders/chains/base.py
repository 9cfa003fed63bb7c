"""The chain provider interface that pay orders use to see payments on chain.

Invariants:
- Amounts are `Decimal` in the asset's major units (BTC, ETH, USDC), converted from integer base
  units exactly (`from_base_units`), never through a float.
- A transaction can carry several transfers (a native value transfer and ERC-20 `Transfer` logs);
  `get_transaction` returns all of them that move a known asset, or None when the chain does not
  know the hash.
- `confirmations` is 0 while a transaction is pending, 1 once it is in the head block, and grows
  by one with each block after it.
- A provider that cannot answer raises `ChainUnavailable` (503): callers retry later, they never
  conclude that a payment is missing from an unreachable node.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal, localcontext

from django.conf import settings

from core.errors import CofferError, NotFound, ValidationFailed


class ChainUnavailable(CofferError):
    code, status = "CHAIN_UNAVAILABLE", 503
    default_message = "The blockchain node cannot be reached right now; try again shortly."


class TransactionNotFound(NotFound):
    default_message = "No such transaction on this chain."


class UnsupportedAsset(ValidationFailed):
    default_message = "This asset is not supported on this chain."


class TransferStatus:
    PENDING = "pending"  # not in a block yet
    SUCCEEDED = "succeeded"  # in a block and executed
    FAILED = "failed"  # in a block but reverted: nothing moved


@dataclass(frozen=True)
class ChainAsset:
    symbol: str
    chain: str
    decimals: int
    native: bool


# The assets pay orders accept and the chain each lives on. Token contract addresses come from
# settings.EVM_TOKENS (they differ between mainnet, testnets and a local node).
CHAIN_ASSETS: dict[str, ChainAsset] = {
    "BTC": ChainAsset("BTC", "bitcoin", 8, True),
    "ETH": ChainAsset("ETH", "ethereum", 18, True),
    "USDC": ChainAsset("USDC", "ethereum", 6, False),
}
CHAINS = ("bitcoin", "ethereum")


def chain_asset(symbol: object) -> ChainAsset:
    code = symbol.strip().upper() if isinstance(symbol, str) else ""
    try:
        return CHAIN_ASSETS[code]
    except KeyError:
        raise UnsupportedAsset(
            f"{symbol!s} is not a supported crypto asset.",
            details={"fields": {"currency": ["unsupported"]}, "supported": sorted(CHAIN_ASSETS)},
        ) from None


@dataclass(frozen=True)
class ChainTransfer:
    tx_hash: str
    chain: str
    asset: str
    from_address: str
    to_address: str
    amount: Decimal
    block_number: int | None
    confirmations: int
    status: str
    log_index: int | None = None  # position of the ERC-20 log in its block; None for native value; PENDING_LOG_INDEX before mined

    @property
    def stored_log_index(self) -> int:
        """The log index as PayOrderPayment stores it: -1 for a native value transfer."""
        return -1 if self.log_index is None else self.log_index

    @property
    def is_mined_log(self) -> bool:
        """A token transfer read from a mined log (its real position known)."""
        return self.log_index is not None and self.log_index >= 0


# A token transfer seen before it is mined (decoded from the broadcast transaction's input): its
# log's position in the block is not known yet. A payment recorded with it takes the mined log's
# index once the transaction is mined (payorders.services.payments), so it is never counted twice.
PENDING_LOG_INDEX = -2


def same_pending_transfer(stored_log_index: int, asset: str, to_address: str, amount: Decimal, mined: "ChainTransfer") -> bool:
    """Whether `mined` (a mined token log) is the transfer a payment recorded while it was pending
    (`stored_log_index` PENDING_LOG_INDEX, with that asset, recipient and amount)."""
    return (
        stored_log_index == PENDING_LOG_INDEX and mined.is_mined_log and mined.asset == asset
        and mined.to_address.lower() == to_address.lower() and mined.amount == amount
    )


def same_address(chain: str, a: str, b: str) -> bool:
    """Ethereum addresses compare case-insensitively (EIP-55 is only a checksum); Bitcoin's exactly."""
    return a.lower() == b.lower() if chain == "ethereum" else a == b


TX_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")


def normalize_tx_hash(tx_hash: object) -> str:
    if not isinstance(tx_hash, str) or not TX_HASH_RE.match(tx_hash.strip()):
        raise ValidationFailed(
            "tx_hash must be 0x followed by 64 hexadecimal digits.", details={"fields": {"tx_hash": ["0x + 64 hex digits"]}}
        )
    return tx_hash.strip().lower()


def from_base_units(value: int, decimals: int) -> Decimal:
    """Integer base units (satoshi, wei, token units) -> Decimal major units, exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("base units must be an int")
    with localcontext() as ctx:
        ctx.prec = 100
        return Decimal(value).scaleb(-decimals)


def to_base_units(amount: Decimal, decimals: int, *, field: str = "amount") -> int:
    """Decimal major units -> integer base units; refuses more decimals than the asset has."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValidationFailed(f"{field} must be a finite decimal.", details={"fields": {field: ["not a finite decimal"]}})
    with localcontext() as ctx:
        ctx.prec = 100
        scaled = amount.scaleb(decimals)
        if scaled != scaled.to_integral_value():
            raise ValidationFailed(
                f"{field} has more than {decimals} decimal places.", details={"fields": {field: [f"at most {decimals} decimals"]}}
            )
        return int(scaled)


def confirmations_required(chain: str) -> int:
    try:
        return int(settings.CHAIN_CONFIRMATIONS[chain])
    except KeyError:
        raise UnsupportedAsset(f"No confirmation threshold for chain {chain!r}.", details={"chain": chain}) from None


class ChainProvider(ABC):
    """One chain as seen through one provider. Implementations: sandbox.SandboxChainProvider,
    evm.EvmChainProvider."""

    name = "abstract"

    def __init__(self, chain: str):
        self.chain = chain

    @abstractmethod
    def get_transaction(self, tx_hash: str) -> list[ChainTransfer] | None:
        ...

    @abstractmethod
    def get_confirmations(self, tx_hash: str) -> int:
        """Confirmations of a transaction; TransactionNotFound when the chain does not know it."""

    @abstractmethod
    def transfers_to(self, address: str, asset: str, from_block: int = 0) -> list[ChainTransfer]:
        ...

    def pending_transfers_to(self, address: str, asset: str) -> list[ChainTransfer]:
        """Broadcast transfers to `address` in `asset` not yet in a block (mempool / pending block):
        status PENDING, no block, 0 confirmations. A provider without a view of them returns []
        (the payment is then seen once mined)."""
        return []

    @abstractmethod
    def transfers_to_addresses(self, addresses: list[str], asset: str, from_block: int, to_block: int) -> list[ChainTransfer]:
        """Every successful transfer of `asset` to any of `addresses` in blocks `from_block` to
        `to_block` (inclusive; a `to_block` past the head means the head), in chain order. The
        reconciliation of receipts against settled orders (`payorders.services.reconciliation`)."""

    def reconcilable_assets(self) -> list[str]:
        """The assets whose transfers this provider can list (an EVM provider: only tokens with a
        configured contract)."""
        return self.supported_assets()

    @abstractmethod
    def get_balance(self, address: str, asset: str) -> Decimal:
        ...

    @abstractmethod
    def current_block(self) -> int:
        ...

    def confirmations_required(self, chain: str | None = None) -> int:
        return confirmations_required(chain or self.chain)

    def supported_assets(self) -> list[str]:
        return sorted(s for s, a in CHAIN_ASSETS.items() if a.chain == self.chain)

    def _asset(self, asset: str) -> ChainAsset:
        spec = chain_asset(asset)
        if spec.chain != self.chain:
            raise UnsupportedAsset(
                f"{spec.symbol} does not live on {self.chain}.", details={"asset": spec.symbol, "chain": self.chain}
            )
        return spec
