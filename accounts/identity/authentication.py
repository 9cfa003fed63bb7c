"""How a person authenticates to the API: `Authorization: Bearer <access JWT>` from
`POST /auth/token` (DRF authentication class, first in DEFAULT_AUTHENTICATION_CLASSES).

Invariants:
- An organization's token (`token_use=org`, accounts.orgs.authentication) never authenticates a
  user: this class leaves it to the next one.
- The user row is read through the cache for USER_CACHE_SECONDS; any change to a user drops it,
  at once and again after commit (`user_cache_forget`, connected in AccountsConfig.ready), and
  simplejwt's checks (inactive user, revoked-by-password claim) run on the cached row too.
- The cache being down never fails a request: the database is read instead.
- A token's signature and claims are verified once per process: the validated token is kept
  (VALIDATED_TOKENS_MAX, keyed by the exact token bytes) and only its expiry is checked again.
  Access tokens carry no revocable state of their own (revocation is by refresh-token family,
  by password change and by deactivation, all checked on the user row above).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from django.db import transaction
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed as JWTAuthenticationFailed
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import User

logger = logging.getLogger("coffer.auth")

ORG_TOKEN_USE = "org"  # the `token_use` claim of an organization's client-credentials token

USER_CACHE_SECONDS = 60
VALIDATED_TOKENS_MAX = 10_000
_validated: dict[bytes, Any] = {}


def _user_cache_key(user_id: Any) -> str:
    return f"auth:user:{user_id}"


def user_cache_forget(sender=None, instance=None, **_: Any) -> None:
    """Any change to a user (deactivated, password changed, renamed) drops its cached copy, now
    and again after commit (a request that re-read it in between read the old row)."""
    key = _user_cache_key(instance.pk)

    def forget() -> None:
        try:
            cache.delete(key)
        except Exception as exc:  # the cache is down: nothing is served from it either
            logger.warning("could not drop a cached user (%s)", exc.__class__.__name__)

    forget()
    transaction.on_commit(forget, robust=True)


class UserJWTAuthentication(JWTAuthentication):
    """simplejwt's user authentication, which leaves organization tokens to the next class. The
    user row is read through the cache (USER_CACHE_SECONDS, dropped on any change to the user:
    `user_cache_forget`), so an authenticated money request spends no statement on it."""

    def __init__(self) -> None:  # DRF builds one per request: skip simplejwt's get_user_model() lookup
        self.user_model = User

    def get_user(self, validated_token):
        user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
        key = _user_cache_key(user_id)
        try:
            user = cache.get(key) if user_id is not None else None
        except Exception:  # the cache is down: read the database
            user = None
        if user is None:
            user = super().get_user(validated_token)
            try:
                cache.set(key, user, USER_CACHE_SECONDS)
            except Exception as exc:
                logger.warning("could not cache a user (%s)", exc.__class__.__name__)
            return user
        # simplejwt's own checks, on the cached row
        if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise JWTAuthenticationFailed("User is inactive", code="user_inactive")
        if jwt_settings.CHECK_REVOKE_TOKEN and validated_token.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
            raise JWTAuthenticationFailed("The user's password has been changed.", code="password_changed")
        return user

    def get_validated_token(self, raw_token: bytes):
        token = _validated.get(raw_token)
        if token is not None:
            leeway = token.get_token_backend().get_leeway().total_seconds()
            if token.payload.get("exp", 0) > time.time() - leeway:
                return token
            del _validated[raw_token]
        token = super().get_validated_token(raw_token)  # signature, type, expiry; raises if bad
        if len(_validated) >= VALIDATED_TOKENS_MAX:
            _validated.clear()
        _validated[bytes(raw_token)] = token
        return token

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        validated = self.get_validated_token(raw_token)
        if validated.get("token_use") == ORG_TOKEN_USE:
            return None
        return self.get_user(validated), validated


class _UserJWTScheme(OpenApiAuthenticationExtension):
    target_class = UserJWTAuthentication
    name = "userJWT"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A user's access token from POST /api/v1/auth/token."}
