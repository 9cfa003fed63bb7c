"""Password login with lockouts (the password grant and the dashboard's form).

Invariants:
- Failures lock per (account, client address): from LOGIN_LOCK_THRESHOLD failures of the pair
  on, that address is refused for LOGIN_LOCK_SECONDS, doubling per further failure, capped at an
  hour (cache counters, kept a day). One address never locks the owner out of another.
- Every failure also counts against the account (`User.failed_login_count`, reset by a success):
  each LOGIN_ACCOUNT_CEILING-th locks it for every address for LOGIN_ACCOUNT_LOCK_SECONDS,
  doubling, capped at a day, and e-mails the owner (outbox topic `accounts.login.locked`).
- While locked, attempts are refused without checking the password and are not counted.
- A successful login marks its address as known to the account for KNOWN_ADDRESS_SECONDS; the
  per-account `auth` throttle does not hold known addresses (accounts.identity.throttles).
- An unknown email behaves exactly like an account (answers, lock timing, hashing), audited by
  digest. All is audited; `_login_attempt` is durable: never call `user_authenticate` in a txn.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.identity.services import normalize_email
from accounts.models import User
from compliance.audit import audit_record
from core.errors import AuthenticationFailed, fields_error
from core.models import OutboxMessage
from core.outbox import outbox_emit

LOCK_CAP_SECONDS = 3600
ACCOUNT_LOCK_CAP_SECONDS = 24 * 3600
PAIR_WINDOW_SECONDS = 24 * 3600
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600
LOGIN_LOCKED_TOPIC = "accounts.login.locked"
INVALID_CREDENTIALS = "Invalid email or password."
LOCKED_MESSAGE = "This account is temporarily locked after repeated failed logins. Try again later."


def _lock_seconds(failures: int) -> int:
    """The lock of an (account, address) pair after its `failures`-th failure, 0 below the threshold."""
    threshold = max(int(settings.LOGIN_LOCK_THRESHOLD), 1)
    if failures < threshold:
        return 0
    doublings = min(failures - threshold, 32)
    return min(int(settings.LOGIN_LOCK_SECONDS) * (2**doublings), LOCK_CAP_SECONDS)


def _account_lock_seconds(failures: int) -> int:
    """The account-wide lock after its `failures`-th failure: at every ceiling, doubling."""
    ceiling = max(int(settings.LOGIN_ACCOUNT_CEILING), 1)
    if failures < ceiling or failures % ceiling:
        return 0
    doublings = min(failures // ceiling - 1, 32)
    return min(int(settings.LOGIN_ACCOUNT_LOCK_SECONDS) * (2**doublings), ACCOUNT_LOCK_CAP_SECONDS)


def _email_digest(email: str) -> str:
    # Unknown addresses are recorded by digest: the chain is immutable, so keep typos and
    # strangers' addresses out of it.
    return hashlib.sha256(email.encode()).hexdigest()[:16]


# --- Counters in the cache: per (account, address), and per unknown account ------------------------


def _pair_key(email: str, client_ip: str, what: str) -> str:
    return f"accounts:login:{what}:{_email_digest(normalize_email(email))}:{client_ip}"


def _count(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)
    try:
        count = int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        count = 1
    cache.touch(key, window)
    return count


def _lock(key: str, seconds: int) -> None:
    cache.set(key, time.time() + seconds, timeout=seconds)


def _remaining(key: str) -> float:
    until = cache.get(key)
    return max(float(until) - time.time(), 0.0) if until is not None else 0.0


def login_lock_seconds(*, email: str, client_ip: str) -> float:
    """Seconds the (account, address) pair stays locked; 0 when it is not."""
    return _remaining(_pair_key(email, client_ip, "pair-lock"))


def login_lock_clear(*, email: str, client_ip: str, counter: bool = True) -> None:
    """End the pair's lock (and forget its failures, with `counter`): a success does this."""
    cache.delete(_pair_key(email, client_ip, "pair-lock"))
    if counter:
        cache.delete(_pair_key(email, client_ip, "pair-failures"))


def login_address_known(*, email: str, client_ip: str) -> bool:
    """Whether this account logged in with its password from this address lately."""
    return bool(client_ip) and cache.get(_pair_key(email, client_ip, "known")) is not None


def _pair_failure(email: str, client_ip: str) -> int:
    """Count a failure of the pair; lock it when due. Returns the lock's seconds, 0 for none."""
    seconds = _lock_seconds(_count(_pair_key(email, client_ip, "pair-failures"), PAIR_WINDOW_SECONDS))
    if seconds:
        _lock(_pair_key(email, client_ip, "pair-lock"), seconds)
    return seconds


def _unknown_account_failure(email: str) -> int:
    """The account-wide count of an address with no account, kept as a real one's would be (in
    the cache), so that the ceiling does not reveal who has an account. Returns the lock's seconds."""
    failures = _count(f"accounts:login-failures:{_email_digest(email)}", ACCOUNT_LOCK_CAP_SECONDS)
    seconds = _account_lock_seconds(failures)
    if seconds:
        _lock(f"accounts:login-locked:{_email_digest(email)}", seconds)
    return seconds


def _unknown_account_locked(email: str) -> bool:
    return _remaining(f"accounts:login-locked:{_email_digest(email)}") > 0


# --- The attempt ------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def _login_attempt(*, email: str, password: str, client_ip: str) -> tuple[User | None, str]:
    """Check one login and record its outcome. Returns (user, "") on success, else (None,
    reason) with reason one of unknown_email, locked, wrong_password, inactive. Durable: the
    failure bookkeeping must commit although the request fails, so it never runs inside
    someone else's transaction; the caller raises afterwards."""
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    now = timezone.now()
    pair_locked = login_lock_seconds(email=email, client_ip=client_ip) > 0
    if user is None:
        User().set_password(password)  # spend the hasher's time as for a real account
        data = {"email_sha256": _email_digest(email), "client_ip": client_ip}
        if pair_locked or _unknown_account_locked(email):
            audit_record(action="user.login_failed", data={"reason": "locked", **data})
            return None, "locked"
        locked = _pair_failure(email, client_ip) | _unknown_account_failure(email)
        audit_record(action="user.login_failed", data={"reason": "unknown_email", **data})
        return None, "locked" if locked else "unknown_email"
    account_locked = bool(user.locked_until and user.locked_until > now)
    if account_locked or pair_locked:
        User().set_password(password)  # the same hashing time as an unknown address: no timing oracle
        audit_record(
            actor=user, action="user.login_failed", target=user,
            data={"reason": "locked", "lock": "account" if account_locked else "address", "client_ip": client_ip},
        )
        return None, "locked"
    if not user.check_password(password):
        return None, _wrong_password(user, email=email, client_ip=client_ip, now=now)
    if not user.is_active:
        audit_record(actor=user, action="user.login_failed", target=user, data={"reason": "inactive", "client_ip": client_ip})
        return None, "inactive"
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login = now
    user.save(update_fields=["failed_login_count", "locked_until", "last_login"])
    login_lock_clear(email=email, client_ip=client_ip)
    cache.set(_pair_key(email, client_ip, "known"), 1, timeout=KNOWN_ADDRESS_SECONDS)
    audit_record(actor=user, action="user.login", target=user, data={"client_ip": client_ip})
    return user, ""


def _wrong_password(user: User, *, email: str, client_ip: str, now) -> str:
    user.failed_login_count += 1
    account_lock = _account_lock_seconds(user.failed_login_count)
    if account_lock:
        user.locked_until = now + timedelta(seconds=account_lock)
    user.save(update_fields=["failed_login_count", "locked_until"])
    pair_lock = _pair_failure(email, client_ip)
    audit_record(
        actor=user, action="user.login_failed", target=user,
        data={"reason": "wrong_password", "failed_login_count": user.failed_login_count, "client_ip": client_ip},
    )
    if pair_lock:
        audit_record(
            actor=user, action="user.locked", target=user,
            data={"seconds": pair_lock, "client_ip": client_ip, "failed_login_count": user.failed_login_count},
        )
    if account_lock:
        audit_record(
            actor=user, action="user.account_locked", target=user,
            data={"seconds": account_lock, "locked_until": user.locked_until, "failed_login_count": user.failed_login_count},
        )
        outbox_emit(
            topic=LOGIN_LOCKED_TOPIC, key=f"login-locked-{user.pk}-{user.failed_login_count}",
            payload={"user_id": user.pk, "failed_login_count": user.failed_login_count, "locked_until": user.locked_until.isoformat()},
        )
    return "locked" if pair_lock or account_lock else "wrong_password"


def login_locked_notify(message: OutboxMessage) -> None:
    """Outbox handler: tell the owner their account was locked by failed logins from many places."""
    user = User.objects.filter(pk=message.payload.get("user_id")).first()
    if user is None:
        return
    send_mail(
        subject="Your Coffer account is temporarily locked",
        message=(
            f"There were {message.payload['failed_login_count']} failed attempts to log in to your Coffer account "
            f"since your last login, from several places. To protect it, logging in is paused until "
            f"{message.payload['locked_until']} (UTC).\n\n"
            "If this was not you, someone is guessing your password: once you are back in, change it and turn "
            "on an authenticator app. If it was you, wait until then and try again."
        ),
        from_email=None,
        recipient_list=[user.email],
    )


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
