"""Throttles (SPEC 5): `auth` on signup and token, per client address AND per account; `money`
per caller on money movement. 429 RATE_LIMITED with Retry-After comes from the envelope handler.

Rates are read from `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]` on every request (DRF's own
`SimpleRateThrottle` freezes them when the class is imported), so an `override_settings` in a
test, or a settings change, takes effect at once.

The client address is REMOTE_ADDR unless `REST_FRAMEWORK["NUM_PROXIES"]` says how many proxies
sit in front: DRF's default trusts a client-supplied X-Forwarded-For, which would let anyone
dodge the per-address limit by inventing one.
"""

import hashlib

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.identity.login import login_address_known
from core import ratelimit


def client_address(request) -> str:
    """The client's address as every auth limit sees it: REMOTE_ADDR, or with NUM_PROXIES set
    the address that many proxies in from the right of X-Forwarded-For (DRF's reading)."""
    if api_settings.NUM_PROXIES is None:
        return request.META.get("REMOTE_ADDR", "")
    return BaseThrottle().get_ident(request)


class _RuntimeRateThrottle(SimpleRateThrottle):
    """DRF's rate notation and cache keys, counted by `core.ratelimit` (one atomic round trip)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.verdict = ratelimit.hit(key, limit=self.num_requests, window=self.duration)
        return self.verdict.allowed

    def wait(self):
        return self.verdict.retry_after

    def get_ident(self, request):
        return client_address(request)


class AuthAddressThrottle(_RuntimeRateThrottle):
    """`auth` scope, per client address."""

    scope = "auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": f"{self.scope}-addr", "ident": self.get_ident(request)}


class AuthAccountThrottle(_RuntimeRateThrottle):
    """`auth` scope, per account: the email (or API key id) the request is about, whichever
    address it comes from; except from an address this account logged in from with its password
    (accounts.identity.login), which only its per-address rate holds, so that one address
    spending the account's rate cannot keep the owner out."""

    scope = "auth"
    account_fields = ("username", "email", "client_id")

    def get_cache_key(self, request, view):
        # A malformed body raises here (400/415 in the envelope). Never swallow it: DRF caches an
        # empty body after a parse error, and the view would then see no data at all.
        data = request.data
        account = ""
        if hasattr(data, "get"):
            for name in self.account_fields:
                value = data.get(name)
                if isinstance(value, str) and value.strip():
                    account = value.strip().lower()
                    break
        if not account or login_address_known(email=account, client_ip=self.get_ident(request)):
            return None
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        return self.cache_format % {"scope": f"{self.scope}-account", "ident": digest}


class MoneyThrottle(_RuntimeRateThrottle):
    """`money` scope, per caller: the organization for API-key callers, else the user."""

    scope = "money"

    def get_cache_key(self, request, view):
        organization_id = getattr(getattr(request, "organization", None), "pk", None)
        if organization_id is None:
            organization_id = getattr(request.auth, "organization_id", None)
        if organization_id is not None:
            ident = f"org-{organization_id}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
