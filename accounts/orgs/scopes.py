"""API-key scopes: what an organization's key may do (SPEC 5, least privilege).

Invariants:
- Every request authenticated by a key (X-API-Key, either signature, or a client-credentials
  token) is checked here, in the authentication step, against the key's scopes as stored now:
  reads need `read`; a write needs the scope its route names in ROUTE_SCOPES. A write route
  without an entry is refused to every key (fail closed); `test_every_api_route_has_a_scope_decision`
  makes each new route take a decision. Listing keys needs `keys:manage` too.
- New keys get DEFAULT_SCOPES (`read`) unless scopes are chosen. A key grants, and revokes
  keys, only within the scopes it holds; an owner (a member user) is not held so. Keys made before scopes exist were migrated to
  LEGACY_SCOPES: every scope but `keys:manage` (docs/accounts/api-keys.md).
- Member users are governed by their role (accounts.orgs.tenancy), never by scopes.
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework import exceptions

from core.errors import CofferError

READ = "read"
SCOPES: dict[str, str] = {
    READ: "Read what the organization can see: customers, wallets, transactions, pay orders, webhooks; quotes.",
    "customers:write": "Create and update customers (PUT /customers/{external_id}).",
    "ledger:write": "Post and reverse transactions, authorize, capture and void holds, create, pause, resume and cancel schedules, import reconciliations, open, suspend, activate and close wallets, define assets.",
    "payorders:write": "Create and drive pay orders (quote, payment details, process, cancel, refund), xpub keys, the sandbox chain.",
    "webhooks:write": "Add, disable, enable and delete webhook endpoints; redeliver events.",
    "keys:manage": "List, create and revoke API keys (within its own scopes).",
}
ALL_SCOPES: tuple[str, ...] = tuple(SCOPES)
DEFAULT_SCOPES: tuple[str, ...] = (READ,)
# What an integration does: everything but managing keys. The first key of a new organization
# (create_organization, seed_demo) gets it, and so did every key that existed before scopes.
INTEGRATION_SCOPES: tuple[str, ...] = tuple(s for s in ALL_SCOPES if s != "keys:manage")
LEGACY_SCOPES = INTEGRATION_SCOPES

# The scope a write (any method but GET, HEAD, OPTIONS) needs, by URL name.
ROUTE_SCOPES: dict[str, str] = {
    "customer-detail": "customers:write",
    "asset-list": "ledger:write",
    "transaction-list": "ledger:write",
    "transaction-reverse": "ledger:write",
    "hold-list": "ledger:write",
    "hold-capture": "ledger:write",
    "hold-void": "ledger:write",
    "schedule-list": "ledger:write",
    "schedule-pause": "ledger:write",
    "schedule-resume": "ledger:write",
    "schedule-cancel": "ledger:write",
    "reconciliation-list": "ledger:write",
    "wallet-list": "ledger:write",
    "wallet-detail": "ledger:write",
    "wallet-suspend": "ledger:write",
    "wallet-activate": "ledger:write",
    "wallet-close": "ledger:write",
    "pay-orders": "payorders:write",
    "pay-order-cancel": "payorders:write",
    "pay-order-quote": "payorders:write",
    "pay-order-payment-details": "payorders:write",
    "pay-order-process": "payorders:write",
    "pay-order-refund": "payorders:write",
    "pay-order-refund-transaction": "payorders:write",
    "xpub-keys": "payorders:write",
    "sandbox-chain-transactions": "payorders:write",
    "sandbox-chain-mine": "payorders:write",
    "webhook-endpoints": "webhooks:write",
    "webhook-endpoint-detail": "webhooks:write",
    "webhook-endpoint-disable": "webhooks:write",
    "webhook-endpoint-enable": "webhooks:write",
    "webhook-delivery-redeliver": "webhooks:write",
    "api-keys": "keys:manage",
    "api-key-revoke": "keys:manage",
    "fee-quote": READ,  # POSTs that compute and write nothing
    "limit-check": READ,
}
# Reads that need more than `read`.
READ_ROUTE_SCOPES: dict[str, str] = {"api-keys": "keys:manage"}
# Routes whose writes no key makes: read-only routes, and routes for people or the public (a
# key's reads there need `read`, then meet the route's own permission).
NO_KEY_WRITE_ROUTES: frozenset[str] = frozenset({
    "auth-signup", "auth-token", "auth-token-refresh", "auth-logout",
    "user-me", "user-password-change", "user-detail",
    "2fa-status", "2fa-totp-enrol", "2fa-totp-confirm", "2fa-send-code", "2fa-verify-code",
    "deposit-create", "transfer-create", "withdrawal-list", "withdrawal-detail", "exchange-quote", "exchange-create",
    "audit-log-list", "audit-log-verify", "limit-list",
    "transaction-detail", "transaction-entries", "wallet-entries", "hold-detail", "schedule-detail", "schedule-occurrences",
    "pay-order-detail", "customers", "webhook-deliveries", "webhook-delivery-detail", "webhook-event-types",
    "wallet-balance", "wallet-statement", "customer-statement", "reconciliation-detail",
})
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiKeyScopeMissing(CofferError, exceptions.PermissionDenied):
    """403 PERMISSION_DENIED: the key lacks the scope. A DRF exception too, so that raised while
    authenticating, DRF leaves the request unauthenticated before the envelope renders it."""

    code, status = "PERMISSION_DENIED", 403


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    """Known scopes, each once, in the canonical order of SCOPES; ValueError names unknown ones."""
    wanted = list(scopes)
    unknown = sorted({s for s in wanted if s not in SCOPES}, key=str)
    if unknown:
        raise ValueError(f"Unknown scope(s): {', '.join(map(str, unknown))}.")
    return [s for s in ALL_SCOPES if s in wanted]


def required_scope(request) -> str | None:
    """The scope the request needs, or None when no key may make it (an undecided write)."""
    match = getattr(request, "resolver_match", None)
    name = match.url_name if match is not None else None
    if request.method in _SAFE_METHODS:
        return READ_ROUTE_SCOPES.get(name, READ)
    return ROUTE_SCOPES.get(name)


def scope_check(request, api_key) -> None:
    """Raise ApiKeyScopeMissing unless `api_key`'s scopes allow `request`."""
    needed = required_scope(request)
    held = list(api_key.scopes or [])
    if needed is not None and needed in held:
        return
    if needed is None:
        message = "API keys cannot use this endpoint."
    else:
        message = f"This API key lacks the scope {needed!r} this request needs."
    raise ApiKeyScopeMissing(message, details={"reason": "scope_missing", "required_scope": needed, "key_scopes": held})
