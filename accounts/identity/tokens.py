"""Tokens of users: the OAuth2-style token endpoint's grants, refresh with rotation, logout.

Invariants:
- `POST /auth/token` dispatches on `grant_type` through `TOKEN_GRANT_HANDLERS`: `password` is
  built in; other grants plug in with `token_grant_register(name, handler)` (the organizations'
  `client_credentials`, accounts.orgs.oauth, from AccountsConfig.ready). A handler is called as
  `handler(data=<request data>, client_ip=<str>)` and returns the token response dict.
- Every login starts a refresh-token family (`fam` claim, RefreshTokenFamily row). A refresh
  token works once: refreshing blacklists it (simplejwt's token_blacklist) and issues the next
  one of the same family. A blacklisted token presented again is theft: the family is revoked,
  so every token of it dies, and `user.refresh_token_reused` is audited. Logout revokes the
  family. Two refreshes racing with one token count as reuse (one rotation, then theft).
- Refresh tokens carry a fingerprint of the password hash: a password change kills them all.
  Access tokens are not revocable: they expire within ACCESS_TOKEN_LIFETIME.
- Refresh and logout lock the user row (the only lock they take), commit their bookkeeping in
  their own durable transaction, and raise afterwards: never call them inside a transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken, Token

from accounts.identity.login import user_authenticate
from accounts.models import RefreshTokenFamily, User
from compliance.audit import audit_record
from core.errors import AuthenticationFailed, ValidationFailed

PASSWORD_FINGERPRINT_CLAIM = "pwf"
FAMILY_CLAIM = "fam"
INVALID_REFRESH = "The refresh token is invalid or expired."
_REFUSALS = {
    "invalid": INVALID_REFRESH,
    "password_changed": "The refresh token is no longer valid: the password has changed.",
    "session_revoked": "This session has ended (logged out, or its refresh token was used twice): log in again.",
    "refresh_token_reused": "This refresh token was already used: the session is ended for safety, log in again.",
}


def _password_fingerprint(user: User) -> str:
    return salted_hmac("coffer.accounts.refresh-token", user.password or "", algorithm="sha256").hexdigest()[:32]


def _issue(*, user: User, family: RefreshTokenFamily) -> dict[str, Any]:
    refresh = RefreshToken.for_user(user)  # registers the jti as outstanding (token_blacklist)
    refresh[PASSWORD_FINGERPRINT_CLAIM] = _password_fingerprint(user)
    refresh[FAMILY_CLAIM] = str(family.pk)
    access = refresh.access_token
    return {
        "access_token": str(access),
        "token_type": "bearer",
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        "refresh_token": str(refresh),
    }


def token_pair_for_user(*, user: User) -> dict[str, Any]:
    """{access_token, token_type, expires_in, refresh_token} for an active user: a new login,
    so a new refresh-token family."""
    return _issue(user=user, family=RefreshTokenFamily.objects.create(user=user))


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


def _required_refresh_token(refresh_token: str) -> None:
    if not refresh_token:
        raise ValidationFailed("Invalid input: refresh_token: This field is required.", details={"fields": {"refresh_token": ["This field is required."]}})


def _verified(refresh_token: str) -> RefreshToken:
    """The refresh token, its signature, expiry, id and type checked; NOT its blacklisting,
    which the callers decide on under the user's lock (a blacklisted token is a reuse)."""
    try:
        refresh = RefreshToken(refresh_token, verify=False)
        refresh.token_backend.decode(refresh_token, verify=True)
        Token.verify(refresh)  # the base checks, without the blacklist mixin's
    except (TokenError, TokenBackendError):
        raise AuthenticationFailed(INVALID_REFRESH) from None
    return refresh


def _refused(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(_REFUSALS[reason], details={"reason": reason} if reason != "invalid" else {})


def _family_of(refresh: RefreshToken, user: User) -> RefreshTokenFamily | None:
    try:
        family_id = uuid.UUID(str(refresh.payload[FAMILY_CLAIM]))
    except (KeyError, ValueError):
        return None
    return RefreshTokenFamily.objects.filter(pk=family_id, user=user).first()


def _is_blacklisted(refresh: RefreshToken) -> bool:
    return BlacklistedToken.objects.filter(token__jti=refresh[jwt_settings.JTI_CLAIM]).exists()


def _revoke(family: RefreshTokenFamily, reason: str) -> None:
    family.revoked_at = timezone.now()
    family.revoked_reason = reason
    family.save(update_fields=["revoked_at", "revoked_reason"])


@transaction.atomic(durable=True)
def _rotate(*, refresh: RefreshToken, client_ip: str) -> tuple[dict[str, Any] | None, str]:
    """(new pair, "") or (None, refusal reason). Durable: a theft's revocation and audit commit
    although the request fails."""
    user = User.objects.select_for_update().filter(pk=refresh.payload.get(jwt_settings.USER_ID_CLAIM)).first()
    if user is None:
        return None, "invalid"
    has_family = FAMILY_CLAIM in refresh.payload
    family = _family_of(refresh, user) if has_family else None
    if has_family and family is None:
        return None, "invalid"
    if family is not None and family.revoked_at is not None:
        return None, "session_revoked"
    if _is_blacklisted(refresh):
        if family is not None:
            _revoke(family, RefreshTokenFamily.Reason.REUSE)
        audit_record(
            actor=user, action="user.refresh_token_reused", target=user,
            data={"family": str(family.pk) if family else "", "jti": refresh[jwt_settings.JTI_CLAIM], "client_ip": client_ip},
        )
        return None, "refresh_token_reused"
    if not user.is_active:
        return None, "invalid"
    if not constant_time_compare(str(refresh.payload.get(PASSWORD_FINGERPRINT_CLAIM, "")), _password_fingerprint(user)):
        return None, "password_changed"
    if family is None:  # issued before families existed: adopted by a new one
        family = RefreshTokenFamily.objects.create(user=user)
    refresh.blacklist()
    family.rotated_at = timezone.now()
    family.save(update_fields=["rotated_at"])
    return _issue(user=user, family=family), ""


def token_refresh(*, refresh_token: str, client_ip: str = "") -> dict[str, Any]:
    """Exchange a refresh token for the next pair of its family (see the module docstring).
    Refused (401) when the token is invalid or expired, already used (then its family is
    revoked), of a revoked family, the user is gone or disabled, or the password changed."""
    _required_refresh_token(refresh_token)
    tokens, reason = _rotate(refresh=_verified(refresh_token), client_ip=client_ip)
    if tokens is None:
        raise _refused(reason)
    return tokens


@transaction.atomic(durable=True)
def token_revoke(*, refresh_token: str, client_ip: str = "") -> None:
    """Logout: blacklist the refresh token and revoke its family. Idempotent; 401 only for what
    is not a valid refresh token."""
    _required_refresh_token(refresh_token)
    refresh = _verified(refresh_token)
    user = User.objects.select_for_update().filter(pk=refresh.payload.get(jwt_settings.USER_ID_CLAIM)).first()
    if user is None:
        raise _refused("invalid")
    family = _family_of(refresh, user)
    ended = not _is_blacklisted(refresh) if family is None else family.revoked_at is None
    refresh.blacklist()
    if family is not None and family.revoked_at is None:
        _revoke(family, RefreshTokenFamily.Reason.LOGOUT)
    if ended:
        audit_record(actor=user, action="user.logout", target=user, data={"family": str(family.pk) if family else "", "client_ip": client_ip})
