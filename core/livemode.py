"""Live mode and test mode (SPEC 5: objects carry `livemode`; test mode is visible on every page).
The one place the mode is decided; every app asks here.

- The deployment is in test mode while the sandbox chain stands in for every chain
  (`CHAIN_PROVIDER=sandbox`): nothing it shows can be paid on a main network, and everything it
  stores is test mode for good (`stored_livemode`: a row written on the sandbox keeps
  `livemode=False` if the deployment later goes live, since its money was never real).
- An organization's API key can be a test key (`ApiKey.livemode = False`, secret `sk_test_...`):
  on a live deployment, everything it creates is stored as test mode (customers, wallets, ledger
  transactions, holds, schedules, webhook endpoints, pay orders) and it sees and touches only
  test-mode objects; a live key (or a person) sees and touches only live ones. The other mode's
  objects are 404 (`mode_q`), and a ledger transaction mixing the two is refused
  (`ledger.errors.LivemodeMismatch`, 400 LIVEMODE_MISMATCH). Custom assets are definitions,
  not money: both modes see them.
- A stored row's mode is `livemode`; the API shows `object_livemode` (false on the sandbox
  whatever the row says). Platform accounts (issuance, fee, FX, settlement shards) exist once per
  mode, so test money never lands in a live platform account; usage counters are per customer,
  and a test customer is its own row, so test movements never count toward live limits.
- A test-mode pay order is paid on the sandbox chain; its payment URIs carry a testnet chain id
  (settings.EVM_TEST_CHAIN_ID, Sepolia by default) and testnet Bitcoin addresses (payorders.uris).
  A test key's order on a live deployment never reaches the ledger.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q


def deployment_livemode() -> bool:
    """False while the sandbox chain is on. Also the stored default of every moded row: a row
    written without a caller (a platform account, a system task) takes the deployment's mode,
    and the migrations that added `livemode` gave existing rows the deployment's mode then."""
    return settings.CHAIN_PROVIDER != "sandbox"


def principal_livemode(principal) -> bool:
    """The mode a caller works in, and the `livemode` stored on what it creates: a test key (an
    OrganizationPrincipal's `api_key`) or the sandbox deployment is test mode; a person or a live
    key on a live deployment is live."""
    key = getattr(principal, "api_key", None)
    return deployment_livemode() and (key is None or bool(key.livemode))


def request_livemode(request) -> bool:
    return principal_livemode(getattr(request, "user", None))


def object_livemode(obj) -> bool:
    """An object's `livemode` as the API shows it: its own flag, on a live deployment."""
    return deployment_livemode() and bool(getattr(obj, "livemode", True))


def mode_q(livemode: bool, field: str = "livemode") -> Q:
    """The filter that keeps a caller of mode `livemode` to its own mode's rows (`field` is the
    lookup path to the row's `livemode`). With the sandbox on, the whole deployment is one test
    world: every row is test mode and no filter applies."""
    return Q(**{field: bool(livemode)}) if deployment_livemode() else Q()


def mode_sql(livemode: bool, column: str) -> tuple[str, list]:
    """`mode_q` for a written-out statement: (" AND column = %s", [livemode]) on a live
    deployment, ("", []) with the sandbox on."""
    return (f" AND {column} = %s", [bool(livemode)]) if deployment_livemode() else ("", [])
