"""Two-factor step-up (SPEC 6, 11): the one code check, the step-up the money path runs, and the
dry run of `POST /auth/2fa/verify-code`. Enrolment: totp.py; e-mail codes: email_codes.py; the
rules in full: docs/accounts/twofactor.md.

Invariants:
- A TOTP code verifies for its step +-1; a step is used once per device (`last_used_step` only
  grows, under SELECT ... FOR UPDATE). An e-mail code: until expiry, for
  TWO_FACTOR_EMAIL_MAX_ATTEMPTS wrong guesses, once; only a user's newest code counts.
- `twofactor_require` (amount >= the asset's threshold: TWO_FACTOR_THRESHOLDS[asset] in its
  major units, else TWO_FACTOR_THRESHOLD in the reference currency, the amount converted at the
  movement's rate, `core.reference`) spends the code in
  the CALLER'S transaction; `twofactor_verify` spends nothing. Successes are not audited here;
  failures are, and are counted in the cache (surviving a rollback): TWO_FACTOR_MAX_FAILURES
  lock the user's checks for TWO_FACTOR_LOCKOUT_SECONDS, right codes included.
- Only users step up (anything else: TypeError).

Lock order, the one for all of 2FA (enrol, confirm, send-code, verify-code, step-up):
  1. the user row, `SELECT ... FOR NO KEY UPDATE` (`twofactor_lock_user`), ALWAYS first;
  2. the TOTP device;
  3. the newest e-mail code.
Every transaction that locks or writes a TOTP device or an e-mail code takes the user row first,
even when it only wants the device: its audit row references the user, and PostgreSQL checks that
foreign key with FOR KEY SHARE on the user row (at commit, the constraint being deferred), so a
writer that locked the device first and the user last deadlocked against one that did the
reverse (issue 12 item 12). NO KEY UPDATE serialises the 2FA writers of one user without blocking
the foreign-key checks of that user's other requests (audit rows, movements). Nothing here locks
a customer or a wallet: the money path holds those first and calls `twofactor_require` last, so
its order is customer -> wallets -> user -> device -> e-mail code. docs/accounts/twofactor.md.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import pyotp
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.crypto import decrypt_secret, lookup_hash, lookup_hashes
from accounts.models import EmailOtp, TotpDevice, User
from compliance.audit import audit_record
from core.errors import CofferError
from core.money import MONEY_CONTEXT
from core.reference import RateBook, from_reference_up, reference_currency, to_reference

HEADER = "X-2FA-Code"
ISSUER = "Coffer"
TOTP_INTERVAL = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps accepted either side of the current one
EMAIL_CODE_TOPIC = "accounts.2fa.email_code"
ENROL_PATH = "/api/v1/auth/2fa/totp"
SEND_CODE_PATH = "/api/v1/auth/2fa/send-code"
CODE_RE = re.compile(r"^\d{6}$")


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def email_ttl_seconds() -> int:
    return _setting("TWO_FACTOR_EMAIL_TTL_SECONDS", 600)


def email_max_attempts() -> int:
    return _setting("TWO_FACTOR_EMAIL_MAX_ATTEMPTS", 5)


def email_resend_seconds() -> int:
    return _setting("TWO_FACTOR_EMAIL_RESEND_SECONDS", 30)


def max_failures() -> int:
    return _setting("TWO_FACTOR_MAX_FAILURES", 5)


def lockout_seconds() -> int:
    return _setting("TWO_FACTOR_LOCKOUT_SECONDS", 900)


# --- Errors -------------------------------------------------------------------------------------------


class TwoFactorRequired(CofferError):
    code, status = "2FA_REQUIRED", 403
    default_message = f"This action needs a second factor: send a current code in the {HEADER} header."


class TwoFactorVerificationFailed(CofferError):
    code, status = "2FA_VERIFICATION_FAILED", 403
    default_message = "The second-factor code is wrong, expired or already used."


_FAILURE_MESSAGES = {
    "invalid": "The second-factor code is not valid.",
    "replayed": "This authenticator code was already used: wait for the next one.",
    "used": "This e-mail code was already used: request a new one.",
    "expired": "This e-mail code has expired: request a new one.",
    "too_many_attempts": "Too many wrong second-factor codes: try again later.",
}


# --- Small pieces ---------------------------------------------------------------------------------------


def twofactor_code_from(request) -> str | None:
    """The step-up code a request carries in `X-2FA-Code`, or None when absent or blank."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class StepUpThreshold:
    """Where step-up starts for an asset: `amount` in its major units; for the default
    (TWO_FACTOR_THRESHOLD, in the reference currency) also `reference` and the `rate` it was
    converted at. `reached` compares in the threshold's own currency."""

    amount: Decimal
    reference: Decimal | None = None
    rate: Decimal | None = None

    def reached(self, amount: Decimal) -> bool:
        if self.reference is not None:
            return to_reference(amount, self.rate) >= self.reference
        return amount >= self.amount


def _decimal_setting(value) -> Decimal:
    if isinstance(value, float):
        value = str(value)  # a JSON number from the environment: its shortest repr, never binary noise
    return Decimal(value)


def twofactor_step_up_threshold(currency: str, *, exponent: int | None = None, rates: RateBook | None = None) -> StepUpThreshold:
    """The step-up threshold for an asset (module docstring): a TWO_FACTOR_THRESHOLDS entry for
    the asset, in its major units; else TWO_FACTOR_THRESHOLD in the reference currency, worth
    `amount` of the asset at its rate (rounded up to `exponent` when given); an asset the price
    provider cannot price falls back to TWO_FACTOR_THRESHOLD in its own units."""
    code = (currency or "").upper()
    overrides = getattr(settings, "TWO_FACTOR_THRESHOLDS", None) or {}
    if code in overrides:
        return StepUpThreshold(amount=_decimal_setting(overrides[code]))
    default = _decimal_setting(settings.TWO_FACTOR_THRESHOLD)
    rate = (rates or RateBook()).rate(code)
    if rate is None:
        return StepUpThreshold(amount=default)
    with localcontext(MONEY_CONTEXT):
        amount = default / rate
    if exponent is not None:
        amount = from_reference_up(default, rate, exponent)
    return StepUpThreshold(amount=amount, reference=default, rate=rate)


def _plain(value: Decimal) -> str:
    """5000 -> "5000", 0.07692308 -> "0.07692308": no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def twofactor_threshold(currency: str) -> Decimal:
    """The step-up threshold for an asset, in its major units (see `twofactor_step_up_threshold`)."""
    return twofactor_step_up_threshold(currency).amount


def normalize_code(code: str | None) -> str:
    return re.sub(r"[\s-]", "", code or "")


def _email_code_text(user_id: int, code: str) -> str:
    return f"2fa-email-otp:v1:{user_id}:{code}"


def email_code_hash(user_id: int, code: str) -> str:
    return lookup_hash(_email_code_text(user_id, code))


def _step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_INTERVAL


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def matching_steps(secret: str, code: str, now: datetime) -> list[int]:
    """The time steps within the window whose code equals `code` (compared in constant time)."""
    totp = _totp(secret)
    current = _step(now)
    return [
        step
        for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1)
        if hmac.compare_digest(totp.generate_otp(step), code)
    ]


def otpauth_uri(secret: str, user: User) -> str:
    return _totp(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


# --- Brute-force guard (cache: survives a caller's rollback) ----------------------------------------


def _failures_key(user_id: int) -> str:
    return f"2fa:failures:{user_id}"


def _locked_key(user_id: int) -> str:
    return f"2fa:locked-until:{user_id}"


def locked_for(user_id: int, now: datetime) -> int:
    """Seconds the user's verifications stay refused, 0 when not locked."""
    until = cache.get(_locked_key(user_id))
    if until is None:
        return 0
    remaining = int(until - now.timestamp())
    return max(remaining, 0)


def _count_failure(user_id: int, now: datetime) -> int:
    """Count one failure; lock the user's verifications once the count reaches the maximum.
    Returns the new count."""
    window = lockout_seconds()
    key = _failures_key(user_id)
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        count = 1
    if count >= max_failures():
        cache.set(_locked_key(user_id), now.timestamp() + window, timeout=window)
    return count


def clear_failures(user_id: int) -> None:
    cache.delete(_failures_key(user_id))


# --- The one verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    """What checking a code found. `method` is "totp" or "email" when `ok`; `reason` says why not."""

    ok: bool
    method: str = ""
    reason: str = ""
    retry_after: int = 0
    email_expires_at: datetime | None = None
    email_attempts_left: int | None = None


def twofactor_lock_user(user: User) -> None:
    """Take the first lock of the 2FA lock order (module docstring): the user's row, FOR NO KEY
    UPDATE, held until the caller's transaction ends. Call it before locking a device or a code."""
    User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk", flat=True).first()


def email_otp_live(otp: EmailOtp | None, now: datetime) -> bool:
    return otp is not None and otp.used_at is None and otp.expires_at > now and otp.attempts < email_max_attempts()


def latest_email_otp(user: User, *, lock: bool) -> EmailOtp | None:
    queryset = EmailOtp.objects.filter(user=user).order_by("-created_at", "-id")
    if lock:
        queryset = queryset.select_for_update()
    return queryset.first()


def _confirmed_device(user: User, *, lock: bool) -> TotpDevice | None:
    queryset = TotpDevice.objects.filter(user=user)
    if lock:
        queryset = queryset.select_for_update()
    device = queryset.first()
    return device if device is not None and device.is_confirmed else None


def record_failure(*, user: User, purpose: str, reason: str, now: datetime, data: dict[str, Any] | None = None) -> CodeCheck:
    # Attempts refused during a lockout are audited but not counted: hammering must not push the
    # lock ever further out (the same rule as the login lockout).
    count = cache.get(_failures_key(user.pk), 0) if reason == "too_many_attempts" else _count_failure(user.pk, now)
    locked = locked_for(user.pk, now)
    audit_record(
        actor=user,
        action="2fa.verification_failed",
        target=user,
        data={"purpose": purpose, "reason": reason, "failures": count, "locked": bool(locked), **(data or {})},
    )
    return CodeCheck(ok=False, reason=reason, retry_after=locked)


def check_code(*, user: User, code: str | None, now: datetime, consume: bool, purpose: str, data: dict[str, Any] | None = None) -> CodeCheck:
    """Check a step-up code (TOTP, then the newest e-mail code) and, with `consume`, spend it.
    Runs in the current transaction (its own when there is none); failures are recorded (audit,
    e-mail attempts, cache counter) and returned, never raised, so a caller can commit them."""
    with transaction.atomic(savepoint=False):
        twofactor_lock_user(user)
        locked = locked_for(user.pk, now)
        if locked:
            return record_failure(user=user, purpose=purpose, reason="too_many_attempts", now=now, data=data)
        code = normalize_code(code)
        well_formed = bool(CODE_RE.match(code))

        replayed = False
        device = _confirmed_device(user, lock=True)
        if device is not None and well_formed:
            steps = matching_steps(decrypt_secret(device.secret_encrypted), code, now)
            fresh = [step for step in steps if device.last_used_step is None or step > device.last_used_step]
            if fresh:
                if consume:
                    device.last_used_step = max(fresh)
                    device.save(update_fields=["last_used_step", "updated_at"])
                clear_failures(user.pk)
                return CodeCheck(ok=True, method="totp")
            replayed = bool(steps)

        otp = latest_email_otp(user, lock=True)
        email_reason = ""
        if otp is not None and well_formed and not replayed:
            # Under any configured field key: a code sent before a new key was put in front still counts.
            matches = any(hmac.compare_digest(otp.code_hash, candidate) for candidate in lookup_hashes(_email_code_text(user.pk, code)))
            if otp.attempts >= email_max_attempts():
                email_reason = "too_many_attempts"
            elif matches and otp.used_at is not None:
                email_reason = "used"
            elif matches and otp.expires_at <= now:
                email_reason = "expired"
            elif matches:
                if consume:
                    otp.used_at = now
                    otp.save(update_fields=["used_at"])
                clear_failures(user.pk)
                return CodeCheck(ok=True, method="email", email_expires_at=otp.expires_at)
        if email_otp_live(otp, now) and not replayed:  # a wrong guess at a live e-mail code spends an attempt
            otp.attempts += 1
            otp.save(update_fields=["attempts"])

        reason = "replayed" if replayed else (email_reason or "invalid")
        failure = record_failure(user=user, purpose=purpose, reason=reason, now=now, data=data)
        if otp is not None and otp.used_at is None and otp.expires_at > now:
            failure = CodeCheck(ok=False, reason=failure.reason, retry_after=failure.retry_after,
                                email_attempts_left=max(email_max_attempts() - otp.attempts, 0))
        return failure


def verification_failed(check: CodeCheck) -> TwoFactorVerificationFailed:
    details: dict[str, Any] = {"reason": check.reason}
    headers: dict[str, str] = {}
    if check.retry_after:
        details["retry_after"] = check.retry_after
        headers["Retry-After"] = str(check.retry_after)
    if check.email_attempts_left is not None:
        details["email_code_attempts_left"] = check.email_attempts_left
    return TwoFactorVerificationFailed(_FAILURE_MESSAGES.get(check.reason, TwoFactorVerificationFailed.default_message), details=details, headers=headers)


def _available_methods(user: User, now: datetime) -> list[str]:
    methods = []
    if _confirmed_device(user, lock=False) is not None:
        methods.append("totp")
    if email_otp_live(latest_email_otp(user, lock=False), now):
        methods.append("email")
    return methods


def second_factor_required(user: User, now: datetime, message: str, extra: dict[str, Any] | None = None) -> TwoFactorRequired:
    methods = _available_methods(user, now)
    if methods == ["totp", "email"]:
        how = f"send a code from your authenticator app, or the one we e-mailed you, in the {HEADER} header."
    elif methods == ["totp"]:
        how = f"send a current code from your authenticator app in the {HEADER} header (or request an e-mail code: POST {SEND_CODE_PATH})."
    elif methods == ["email"]:
        how = f"send the code we e-mailed you in the {HEADER} header."
    else:
        how = f"enrol an authenticator app (POST {ENROL_PATH}) or request an e-mail code (POST {SEND_CODE_PATH}), then send its code in the {HEADER} header."
    details = {"header": HEADER, "methods": methods, "enrol_url": ENROL_PATH, "send_code_url": SEND_CODE_PATH, **(extra or {})}
    return TwoFactorRequired(f"{message} {how}", details=details)


# --- Step-up --------------------------------------------------------------------------------------------


def twofactor_required_for(*, amount: Decimal, currency: str, rates: RateBook | None = None) -> bool:
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    return twofactor_step_up_threshold(currency, rates=rates).reached(amount)


def twofactor_require(
    *, user: User, amount: Decimal, currency: str, code: str | None, now: datetime | None = None,
    exponent: int | None = None, rates: RateBook | None = None,
) -> str | None:
    """The step-up of the money path. Returns None below the threshold, else the method whose
    code was accepted and spent ("totp" or "email"); raises TwoFactorRequired /
    TwoFactorVerificationFailed. Call it inside the movement's transaction, after the locks and
    limits (SPEC 4 "The money path"); see the module docstring for what commits when."""
    if not isinstance(user, User):
        raise TypeError("2FA step-up applies to users; organization credentials are not subject to it")
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    step_up = twofactor_step_up_threshold(currency, exponent=exponent, rates=rates)
    if not step_up.reached(amount):
        return None
    now = now or timezone.now()
    threshold = step_up.amount
    if not normalize_code(code):
        extra: dict[str, Any] = {"threshold": _plain(threshold), "currency": currency}
        worth = ""
        if step_up.reference is not None:
            ref = reference_currency()
            extra.update(reference_threshold=_plain(step_up.reference), reference_currency=ref, rate=_plain(step_up.rate))
            worth = f" (worth {_plain(step_up.reference)} {ref})"
        raise second_factor_required(
            user,
            now,
            f"A movement of {_plain(threshold)} {currency}{worth} or more needs a second factor:",
            extra,
        )
    check = check_code(user=user, code=code, now=now, consume=True, purpose="step_up",
                        data={"amount": amount, "currency": currency})
    if not check.ok:
        raise verification_failed(check)
    return check.method


def twofactor_verify(*, user: User, code: str, now: datetime | None = None) -> CodeCheck:
    """Dry run of the step-up check (`POST /auth/2fa/verify-code`): would this code pass now?
    Consumes nothing on success; a failure counts and is committed, then raised."""
    now = now or timezone.now()
    check = check_code(user=user, code=code, now=now, consume=False, purpose="verify_code")
    if not check.ok:
        raise verification_failed(check)
    return check


# --- Reads ----------------------------------------------------------------------------------------------


def twofactor_status(*, user: User, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    device = TotpDevice.objects.filter(user=user).first()
    otp = latest_email_otp(user, lock=False)
    live = email_otp_live(otp, now)
    return {
        "totp": {
            "confirmed": bool(device and device.is_confirmed),
            "confirmed_at": device.confirmed_at if device and device.is_confirmed else None,
            "pending_confirmation": bool(device and device.pending_secret_encrypted),
        },
        "email": {
            "code_active": live,
            "code_expires_at": otp.expires_at if live else None,
            "resend_available_at": (otp.created_at + timedelta(seconds=email_resend_seconds())) if otp else None,
        },
        "locked_for_seconds": locked_for(user.pk, now),
        "header": HEADER,
    }
