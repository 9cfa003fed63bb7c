"""Live mode and test mode (SPEC 5: objects carry `livemode`; test mode is visible on every page).

- The deployment is in test mode while the sandbox chain stands in for every chain
  (`CHAIN_PROVIDER=sandbox`): nothing it shows can be paid on a main network.
- An organization's API key can be a test key (`ApiKey.livemode = False`): what it creates is
  test mode even on a live deployment, and it sees only test-mode pay orders.
- A test-mode pay order is paid on the sandbox chain; its payment URIs carry a testnet chain id
  (settings.EVM_TEST_CHAIN_ID, Sepolia by default) and testnet Bitcoin addresses (payorders.uris).
"""

from __future__ import annotations

from django.conf import settings


def deployment_livemode() -> bool:
    """False while the sandbox chain is on."""
    return settings.CHAIN_PROVIDER != "sandbox"


def principal_livemode(principal) -> bool:
    """The mode a caller works in: a test key (an OrganizationPrincipal's `api_key`) or the
    sandbox deployment is test mode; a person or a live key on a live deployment is live."""
    key = getattr(principal, "api_key", None)
    return deployment_livemode() and (key is None or bool(key.livemode))


def request_livemode(request) -> bool:
    return principal_livemode(getattr(request, "user", None))


def object_livemode(obj) -> bool:
    """An object's `livemode` as the API shows it: its own flag (pay orders), on a live deployment."""
    return deployment_livemode() and bool(getattr(obj, "livemode", True))
