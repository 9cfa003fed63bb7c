"""Tokens of users: the OAuth2-style token endpoint's grants, and refresh.

Invariants:
- `POST /auth/token` dispatches on `grant_type` through `TOKEN_GRANT_HANDLERS`: `password` is
  built in; other grants plug in with `token_grant_register(name, handler)` (the organizations'
  `client_credentials`, accounts.orgs.oauth, from AccountsConfig.ready). A handler is called as
  `handler(data=<request data>, client_ip=<str>)` and returns the token response dict.
- Refresh tokens carry a fingerprint of the password hash: changing the password makes every
  earlier refresh token useless (access tokens are short-lived and simply expire).
- A disabled or deleted user's refresh token is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.identity.login import user_authenticate
from accounts.models import User
from core.errors import AuthenticationFailed, ValidationFailed

PASSWORD_FINGERPRINT_CLAIM = "pwf"


def _password_fingerprint(user: User) -> str:
    return salted_hmac("coffer.accounts.refresh-token", user.password or "", algorithm="sha256").hexdigest()[:32]


def token_pair_for_user(*, user: User) -> dict[str, Any]:
    """{access_token, token_type, expires_in, refresh_token} for an active user."""
    refresh = RefreshToken.for_user(user)
    refresh[PASSWORD_FINGERPRINT_CLAIM] = _password_fingerprint(user)
    access = refresh.access_token
    return {
        "access_token": str(access),
        "token_type": "bearer",
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        "refresh_token": str(refresh),
    }


def _grant_password(*, data: Mapping[str, Any], client_ip: str = "") -> dict[str, Any]:
    user = user_authenticate(email=str(data.get("username") or data.get("email") or ""), password=str(data.get("password") or ""), client_ip=client_ip)
    return token_pair_for_user(user=user)


TokenGrantHandler = Callable[..., dict[str, Any]]
TOKEN_GRANT_HANDLERS: dict[str, TokenGrantHandler] = {"password": _grant_password}


def token_grant_register(grant_type: str, handler: TokenGrantHandler) -> None:
    """Plug in another OAuth2 grant for `POST /auth/token` (see the module docstring)."""
    TOKEN_GRANT_HANDLERS[grant_type] = handler


def token_grant(*, grant_type: str | None, data: Mapping[str, Any], client_ip: str = "") -> dict[str, Any]:
    grant_type = (grant_type or "password").strip()
    handler = TOKEN_GRANT_HANDLERS.get(grant_type)
    if handler is None:
        raise ValidationFailed(
            f"Unsupported grant_type '{grant_type[:40]}'.",
            details={"fields": {"grant_type": ["unsupported_grant_type"]}, "error": "unsupported_grant_type"},
        )
    return handler(data=data, client_ip=client_ip)


def token_refresh(*, refresh_token: str) -> dict[str, Any]:
    """Exchange a refresh token for a new pair. Refused (401) when the token is invalid or
    expired, the user is gone or disabled, or the password changed since it was issued."""
    if not refresh_token:
        raise ValidationFailed("Invalid input: refresh_token: This field is required.", details={"fields": {"refresh_token": ["This field is required."]}})
    try:
        refresh = RefreshToken(refresh_token)
    except TokenError as exc:
        raise AuthenticationFailed("The refresh token is invalid or expired.") from exc
    user = User.objects.filter(pk=refresh.payload.get(jwt_settings.USER_ID_CLAIM)).first()
    if user is None or not user.is_active:
        raise AuthenticationFailed("The refresh token is invalid or expired.")
    fingerprint = str(refresh.payload.get(PASSWORD_FINGERPRINT_CLAIM, ""))
    if not constant_time_compare(fingerprint, _password_fingerprint(user)):
        raise AuthenticationFailed("The refresh token is no longer valid: the password has changed.")
    return token_pair_for_user(user=user)
