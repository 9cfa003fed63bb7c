"""Chain providers behind one interface (`base.ChainProvider`).

`get_chain_provider(chain)` returns the provider for "bitcoin" or "ethereum" according to
settings.CHAIN_PROVIDER:
- "sandbox" (default): the stored sandbox chain stands in for every chain (no network);
- "evm": Ethereum over JSON-RPC at settings.EVM_RPC_URL. Bitcoin has no live provider yet, so
  asking for it is `ChainUnavailable` (503) rather than a silent sandbox.
A test-mode order (`livemode=False`, core.livemode) is never on the main network, whatever
CHAIN_PROVIDER says: on a live deployment it is on settings.TEST_CHAIN_PROVIDER, the sandbox chain
(default) or "evm", a test network's node at settings.EVM_TEST_RPC_URL with the tokens of
settings.EVM_TEST_TOKENS (`chain_provider_name`).
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
    "chain_provider_name",
    "get_chain_provider",
    "sandbox_enabled",
]


def sandbox_enabled() -> bool:
    return settings.CHAIN_PROVIDER == "sandbox"


def chain_provider_name(*, livemode: bool = True) -> str:
    """Which provider pays an order of mode `livemode`: everything is on the sandbox while it is
    the deployment's chain; on a live deployment, a live order on CHAIN_PROVIDER and a test-mode
    one on TEST_CHAIN_PROVIDER (never the main network's node)."""
    if sandbox_enabled():
        return "sandbox"
    return settings.CHAIN_PROVIDER if livemode else settings.TEST_CHAIN_PROVIDER


def get_chain_provider(chain: str, *, livemode: bool = True) -> ChainProvider:
    if chain not in CHAINS:
        raise UnsupportedAsset(f"Unknown chain {chain!r}.", details={"chain": chain, "supported": list(CHAINS)})
    name = chain_provider_name(livemode=livemode)
    setting = "CHAIN_PROVIDER" if livemode else "TEST_CHAIN_PROVIDER"
    if name == "sandbox":
        from payorders.chains.sandbox import SandboxChainProvider

        return SandboxChainProvider(chain)
    if name == "evm":
        if chain != "ethereum":
            raise ChainUnavailable(f"No provider for {chain} ({setting}=evm serves ethereum).", details={"chain": chain})
        from payorders.chains.evm import EvmChainProvider

        if livemode:
            return EvmChainProvider(chain)
        if not settings.EVM_TEST_RPC_URL:
            raise ImproperlyConfigured("TEST_CHAIN_PROVIDER=evm needs EVM_TEST_RPC_URL (a test network's node, never the main network's)")
        return EvmChainProvider(chain, url=settings.EVM_TEST_RPC_URL, tokens=settings.EVM_TEST_TOKENS)
    raise ImproperlyConfigured(f"Unknown {setting} {name!r}: use 'sandbox' or 'evm'")
