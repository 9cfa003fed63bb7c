"""Writers for users and their credentials: signup, login (token grants), refresh, password change.

Invariants:
- Every user signs up with their own `Customer` (kyc_level none), in the same transaction.
- Failed logins are counted per account. From `LOGIN_LOCK_THRESHOLD` failures on, the account is
  locked for `LOGIN_LOCK_SECONDS`, doubling with each further failure, capped at an hour. While
  locked, attempts are refused without checking the password and are not counted (an attacker
  cannot push the lock ever further out by hammering it; the throttles cap the hammering). A
  successful login resets the counter.
- An unknown email fails exactly like a wrong password (same error, same message, and the
  password hasher still runs), so the token endpoint does not reveal who has an account.
- Refresh tokens carry a fingerprint of the password hash: changing the password makes every
  earlier refresh token useless (access tokens are short-lived and simply expire).
- Signups, logins, failed logins, lockouts and password changes land in the audit chain. The
  bookkeeping of a failure commits even though the request fails (it runs in its own
  transaction, and the error is raised after it).

Token grants: `POST /auth/token` dispatches on `grant_type` through `TOKEN_GRANT_HANDLERS`.
`password` is built in; other grants (the organization engineer's `client_credentials` in
`accounts/oauth.py`) plug in with `token_grant_register("client_credentials", handler)`, e.g.
from `AccountsConfig.ready()`. A handler is called as `handler(data=<request data>,
client_ip=<str>)` and returns the token response dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import Customer, User
from compliance.services import audit_record
from core.errors import AuthenticationFailed, ValidationFailed

LOCK_CAP_SECONDS = 3600
PASSWORD_FINGERPRINT_CLAIM = "pwf"
INVALID_CREDENTIALS = "Invalid email or password."
LOCKED_MESSAGE = "This account is temporarily locked after repeated failed logins. Try again later."


def _fields_error(fields: dict[str, list[str]], message: str | None = None) -> ValidationFailed:
    first_field, errors = next(iter(fields.items()))
    return ValidationFailed(message or f"Invalid input: {first_field}: {errors[0]}", details={"fields": fields})


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


# --- Signup --------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, email: str, password: str, first_name: str = "", last_name: str = "", client_ip: str = "") -> User:
    """Sign a person up: the user (password checked by Django's validators, hashed with Argon2)
    and their own Customer profile, in one transaction."""
    email = normalize_email(email)
    candidate = User(email=email, first_name=first_name, last_name=last_name)
    try:
        password_validation.validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise _fields_error({"password": list(exc.messages)}) from exc
    duplicate = _fields_error({"email": ["A user with this email already exists."]})
    if User.objects.filter(email__iexact=email).exists():
        raise duplicate
    try:
        with transaction.atomic():  # a savepoint: a concurrent signup may win the unique index
            user = User.objects.create_user(email=email, password=password, first_name=first_name, last_name=last_name)
    except IntegrityError as exc:
        raise duplicate from exc
    Customer.objects.create(user=user, name=user.full_name, email=email, kyc_level=Customer.KycLevel.NONE)
    audit_record(actor=user, action="user.signup", target=user, data={"client_ip": client_ip})
    return user


# --- Tokens --------------------------------------------------------------------------------------


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


def _lock_seconds(failures: int) -> int:
    threshold = max(int(settings.LOGIN_LOCK_THRESHOLD), 1)
    if failures < threshold:
        return 0
    doublings = min(failures - threshold, 32)
    return min(int(settings.LOGIN_LOCK_SECONDS) * (2**doublings), LOCK_CAP_SECONDS)


def _email_digest(email: str) -> str:
    # Unknown addresses are recorded by digest: the chain is immutable, so keep typos and
    # strangers' addresses out of it.
    return hashlib.sha256(email.encode()).hexdigest()[:16]


def _unknown_email_failures(email: str) -> int:
    """Count failures for an address with no account (in the cache), so that it "locks" after
    the same number of attempts as a real one and lockouts do not reveal who has an account."""
    key = f"accounts:login-failures:{_email_digest(email)}"
    cache.add(key, 0, timeout=LOCK_CAP_SECONDS)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=LOCK_CAP_SECONDS)
        return 1


@transaction.atomic(durable=True)
def _login_attempt(*, email: str, password: str, client_ip: str) -> tuple[User | None, str]:
    """Check one login and record its outcome. Returns (user, "") on success, else (None,
    reason) with reason one of unknown_email, locked, wrong_password, inactive. Durable: the
    failure bookkeeping must commit although the request fails, so it never runs inside
    someone else's transaction; the caller raises afterwards."""
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    now = timezone.now()
    if user is None:
        User().set_password(password)  # spend the hasher's time as for a real account
        failures = _unknown_email_failures(email)
        audit_record(action="user.login_failed", data={"reason": "unknown_email", "email_sha256": _email_digest(email), "client_ip": client_ip})
        return None, "locked" if _lock_seconds(failures) else "unknown_email"
    if user.locked_until and user.locked_until > now:
        User().set_password(password)  # the same hashing time as an unknown address: no timing oracle
        audit_record(actor=user, action="user.login_failed", target=user, data={"reason": "locked", "client_ip": client_ip})
        return None, "locked"
    if not user.check_password(password):
        user.failed_login_count += 1
        lock_for = _lock_seconds(user.failed_login_count)
        user.locked_until = now + timedelta(seconds=lock_for) if lock_for else None
        user.save(update_fields=["failed_login_count", "locked_until"])
        audit_record(
            actor=user, action="user.login_failed", target=user,
            data={"reason": "wrong_password", "failed_login_count": user.failed_login_count, "client_ip": client_ip},
        )
        if lock_for:
            audit_record(
                actor=user, action="user.locked", target=user,
                data={"seconds": lock_for, "locked_until": user.locked_until, "failed_login_count": user.failed_login_count},
            )
            return None, "locked"
        return None, "wrong_password"
    if not user.is_active:
        audit_record(actor=user, action="user.login_failed", target=user, data={"reason": "inactive", "client_ip": client_ip})
        return None, "inactive"
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login = now
    user.save(update_fields=["failed_login_count", "locked_until", "last_login"])
    audit_record(actor=user, action="user.login", target=user, data={"client_ip": client_ip})
    return user, ""


def user_authenticate(*, email: str, password: str, client_ip: str = "") -> User:
    """The password grant's check: the active user, or AuthenticationFailed (401). Must not be
    called inside a transaction (see `_login_attempt`)."""
    email = normalize_email(email)
    missing = [name for name, value in (("username", email), ("password", password)) if not value]
    if missing:
        raise _fields_error({name: ["This field is required."] for name in missing})
    user, reason = _login_attempt(email=email, password=password, client_ip=client_ip)
    if user is not None:
        return user
    if reason == "locked":
        raise AuthenticationFailed(LOCKED_MESSAGE, details={"reason": "account_locked"})
    if reason == "inactive":
        raise AuthenticationFailed("This account is disabled.", details={"reason": "account_disabled"})
    raise AuthenticationFailed(INVALID_CREDENTIALS)


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


# --- Password ---------------------------------------------------------------------------------------


@transaction.atomic
def user_change_password(*, user: User, current_password: str, new_password: str) -> User:
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.check_password(current_password or ""):
        raise _fields_error({"current_password": ["The current password is not correct."]})
    if current_password == new_password:
        raise _fields_error({"new_password": ["The new password must differ from the current one."]})
    try:
        password_validation.validate_password(new_password, user=user)
    except DjangoValidationError as exc:
        raise _fields_error({"new_password": list(exc.messages)}) from exc
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit_record(actor=user, action="user.password_changed", target=user)
    return user
