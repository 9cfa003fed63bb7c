"""Chain providers behind one interface (`base.ChainProvider`).

`get_chain_provider(chain)` returns the provider for "bitcoin" or "ethereum" according to
settings.CHAIN_PROVIDER:
- "sandbox" (default): the stored sandbox chain stands in for every chain (no network);
- "evm": Ethereum over JSON-RPC at settings.EVM_RPC_URL. Bitcoin has no live provider yet, so
  asking for it is `ChainUnavailable` (503) rather than a silent sandbox.
A test-mode order (`livemode=False`, core.livemode) is always on the sandbox chain, whatever
CHAIN_PROVIDER says: test mode cannot reach a main network.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from payorders.chains.base import (
    CHAIN_ASSETS,
    CHAINS,
    ChainProvider,
    ChainTransfer,
    ChainUnavailable,
    TransactionNotFound,
    TransferStatus,
    UnsupportedAsset,
    confirmations_required,
)

__all__ = [
    "CHAIN_ASSETS",
    "CHAINS",
    "ChainProvider",
    "ChainTransfer",
    "ChainUnavailable",
    "TransactionNotFound",
    "TransferStatus",
    "UnsupportedAsset",
    "confirmations_required",
    "get_chain_provider",
    "sandbox_enabled",
]


def sandbox_enabled() -> bool:
    return settings.CHAIN_PROVIDER == "sandbox"


def get_chain_provider(chain: str, *, livemode: bool = True) -> ChainProvider:
    if chain not in CHAINS:
        raise UnsupportedAsset(f"Unknown chain {chain!r}.", details={"chain": chain, "supported": list(CHAINS)})
    name = settings.CHAIN_PROVIDER if livemode else "sandbox"
    if name == "sandbox":
        from payorders.chains.sandbox import SandboxChainProvider

        return SandboxChainProvider(chain)
    if name == "evm":
        if chain != "ethereum":
            raise ChainUnavailable(f"No live provider for {chain} (CHAIN_PROVIDER=evm serves ethereum).", details={"chain": chain})
        from payorders.chains.evm import EvmChainProvider

        return EvmChainProvider(chain)
    raise ImproperlyConfigured(f"Unknown CHAIN_PROVIDER {name!r}: use 'sandbox' or 'evm'")
