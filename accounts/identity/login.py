"""Password login with a failed-login lockout (the password grant and the dashboard's form).

Invariants:
- Failed logins are counted per account. From `LOGIN_LOCK_THRESHOLD` failures on, the account is
  locked for `LOGIN_LOCK_SECONDS`, doubling with each further failure, capped at an hour. While
  locked, attempts are refused without checking the password and are not counted. A successful
  login resets the counter.
- An unknown email fails exactly like a wrong password (same error, same message, and the
  password hasher still runs), so the login does not reveal who has an account.
- Logins, failed logins and lockouts land in the audit chain. The bookkeeping of a failure
  commits although the request fails: `_login_attempt` is durable, so `user_authenticate` must
  not be called inside a transaction; it raises after the commit.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.identity.services import fields_error, normalize_email
from accounts.models import User
from compliance.services import audit_record
from core.errors import AuthenticationFailed

LOCK_CAP_SECONDS = 3600
INVALID_CREDENTIALS = "Invalid email or password."
LOCKED_MESSAGE = "This account is temporarily locked after repeated failed logins. Try again later."


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
        raise fields_error({name: ["This field is required."] for name in missing})
    user, reason = _login_attempt(email=email, password=password, client_ip=client_ip)
    if user is not None:
        return user
    if reason == "locked":
        raise AuthenticationFailed(LOCKED_MESSAGE, details={"reason": "account_locked"})
    if reason == "inactive":
        raise AuthenticationFailed("This account is disabled.", details={"reason": "account_disabled"})
    raise AuthenticationFailed(INVALID_CREDENTIALS)
