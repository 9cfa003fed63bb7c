"""Two-factor step-up (SPEC 6 "2FA step-up", SPEC 11): TOTP authenticator apps and one-time codes
by e-mail, and the step-up check the money endpoints run.

TOTP (RFC 6238 through pyotp: SHA-1, 6 digits, 30 s steps)
- `totp_enrol` hands out a new secret and its otpauth URI (issuer "Coffer") as a *pending* secret;
  `totp_confirm` with a current code of that secret activates it. Enrolling again before any
  confirmation replaces the pending secret. Once a device is confirmed, enrolling again needs a
  current code (TOTP or e-mail, exactly as for a step-up), and the old secret keeps working until
  the new one is confirmed. Secrets are stored Fernet-encrypted (accounts.crypto).
- A code verifies for its own time step and one step either side (+-30 s of clock drift), never
  +-2. A time step is used at most once: the device keeps `last_used_step`, only a LATER step
  verifies (RFC 6238 section 5.2), and it is read and advanced under SELECT ... FOR UPDATE, so two
  requests racing with one code cannot both pass.

E-mail codes
- `email_otp_send`: 6 digits from `secrets`, stored only as HMAC-SHA256 under a key derived from
  the settings (accounts.crypto.lookup_hash, keyed by FIELD_ENCRYPTION_KEY or SECRET_KEY), bound
  to the user. Valid TWO_FACTOR_EMAIL_TTL_SECONDS (600), for at most
  TWO_FACTOR_EMAIL_MAX_ATTEMPTS (5) wrong guesses, once. Only the newest code of a user counts (a
  new code replaces the previous one). At most one send per TWO_FACTOR_EMAIL_RESEND_SECONDS (30)
  per user: 429 RATE_LIMITED with Retry-After, decided in the database under the user's row lock.
- The mail is a side effect that leaves the database, so it is an outbox row (topic
  `accounts.2fa.email_code`) written in the send's transaction and delivered after commit through
  Django's mail backend by `email_otp_deliver`. The row carries the code Fernet-encrypted, never in
  plain text; a code that expired, was used or was replaced before delivery is not sent.

Step-up (`twofactor_require`), for outgoing money movements by users
- Threshold: TWO_FACTOR_THRESHOLD (default 5000) in major units of the movement's OWN asset,
  compared as is (5,000 USD, 5,000 EUR, 5,000 BTC), the same reading as SPEC 11's per-asset limits;
  no currency conversion. TWO_FACTOR_THRESHOLDS ({"BTC": "0.1"}, strings) overrides it per asset
  code. `amount >= threshold` needs a code.
- No code (header `X-2FA-Code`, read with `twofactor_code_from`): 403 2FA_REQUIRED, with details
  naming the methods the user can use now and how to get one (enrol, or request an e-mail code).
- A code: it is tried as a TOTP code (if the user has a confirmed device) and as the newest e-mail
  code. The first that verifies is consumed (TOTP step advanced / e-mail code marked used) in the
  CALLER'S transaction: if the movement rolls back, the code is not spent. Wrong, expired,
  replayed or exhausted: 403 2FA_VERIFICATION_FAILED with `details.reason`.
- It returns the method used ("totp" / "email"), or None below the threshold. It does not audit a
  success itself: the caller audits the movement (and can put the method in its data), which keeps
  the audit chain's lock (taken by audit_record until commit) out of the middle of the money path.
- Organization credentials are not subject to step-up; passing anything but a User is a
  programming error (TypeError).

`POST /auth/2fa/verify-code` (`twofactor_verify`) is a dry run of exactly the same check: it says
whether a code would pass a step-up right now (TOTP or e-mail), WITHOUT consuming it, so a client
can validate what the user typed before sending the money request that spends it. Its failures
count exactly like step-up failures (the e-mail code's attempts, the lockout below), so it is no
guessing oracle.

Failures and brute force
- Every failed verification is audited (`2fa.verification_failed`, with purpose and reason; never
  the code) and, when it guessed at a live e-mail code, counts against that code's attempts. These
  writes happen in the current transaction; the API services here commit them before raising.
- A money service that calls `twofactor_require` inside a savepoint rolls those writes back with
  the savepoint when the error propagates. So the brute-force guard does not rely on them: every
  failure also increments a per-user counter in the cache (not transactional). From
  TWO_FACTOR_MAX_FAILURES (5) failures within TWO_FACTOR_LOCKOUT_SECONDS (900) on, every
  verification of that user (step-up, verify-code, confirm, re-enrol) is refused with reason
  `too_many_attempts` until the lock expires, even with a right code. A success clears the counter.

Lock order: the user row (enrol, send) -> the TOTP device -> the newest e-mail code. The money path
holds its customer and wallet locks before it calls `twofactor_require`; nothing here locks a
customer or a wallet, so no cycle is possible.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyotp
import segno
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.crypto import decrypt_secret, encrypt_secret, lookup_hash
from accounts.models import EmailOtp, TotpDevice, User
from compliance.services import audit_record
from core.errors import CofferError, InvalidState, RateLimited
from core.models import OutboxMessage
from core.outbox import outbox_emit, register_handler

HEADER = "X-2FA-Code"
ISSUER = "Coffer"
TOTP_INTERVAL = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps accepted either side of the current one
EMAIL_CODE_TOPIC = "accounts.2fa.email_code"
ENROL_PATH = "/api/v1/auth/2fa/totp"
SEND_CODE_PATH = "/api/v1/auth/2fa/send-code"
_CODE_RE = re.compile(r"^\d{6}$")


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


def twofactor_threshold(currency: str) -> Decimal:
    """The step-up threshold for an asset, in its major units (see the module docstring)."""
    overrides = getattr(settings, "TWO_FACTOR_THRESHOLDS", None) or {}
    value = overrides.get((currency or "").upper(), settings.TWO_FACTOR_THRESHOLD)
    if isinstance(value, float):
        value = str(value)  # a JSON number from the environment: its shortest repr, never binary noise
    return Decimal(value)


def _normalize_code(code: str | None) -> str:
    return re.sub(r"[\s-]", "", code or "")


def _email_code_hash(user_id: int, code: str) -> str:
    return lookup_hash(f"2fa-email-otp:v1:{user_id}:{code}")


def _step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_INTERVAL


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def _matching_steps(secret: str, code: str, now: datetime) -> list[int]:
    """The time steps within the window whose code equals `code` (compared in constant time)."""
    totp = _totp(secret)
    current = _step(now)
    return [
        step
        for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1)
        if hmac.compare_digest(totp.generate_otp(step), code)
    ]


def _otpauth_uri(secret: str, user: User) -> str:
    return _totp(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


# --- Brute-force guard (cache: survives a caller's rollback) ----------------------------------------


def _failures_key(user_id: int) -> str:
    return f"2fa:failures:{user_id}"


def _locked_key(user_id: int) -> str:
    return f"2fa:locked-until:{user_id}"


def _locked_for(user_id: int, now: datetime) -> int:
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


def _clear_failures(user_id: int) -> None:
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


def _live(otp: EmailOtp | None, now: datetime) -> bool:
    return otp is not None and otp.used_at is None and otp.expires_at > now and otp.attempts < email_max_attempts()


def _latest_email_otp(user: User, *, lock: bool) -> EmailOtp | None:
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


def _record_failure(*, user: User, purpose: str, reason: str, now: datetime, data: dict[str, Any] | None = None) -> CodeCheck:
    # Attempts refused during a lockout are audited but not counted: hammering must not push the
    # lock ever further out (the same rule as the login lockout).
    count = cache.get(_failures_key(user.pk), 0) if reason == "too_many_attempts" else _count_failure(user.pk, now)
    locked = _locked_for(user.pk, now)
    audit_record(
        actor=user,
        action="2fa.verification_failed",
        target=user,
        data={"purpose": purpose, "reason": reason, "failures": count, "locked": bool(locked), **(data or {})},
    )
    return CodeCheck(ok=False, reason=reason, retry_after=locked)


def _check_code(*, user: User, code: str | None, now: datetime, consume: bool, purpose: str, data: dict[str, Any] | None = None) -> CodeCheck:
    """Check a step-up code (TOTP, then the newest e-mail code) and, with `consume`, spend it.
    Runs in the current transaction (its own when there is none); failures are recorded (audit,
    e-mail attempts, cache counter) and returned, never raised, so a caller can commit them."""
    with transaction.atomic(savepoint=False):
        locked = _locked_for(user.pk, now)
        if locked:
            return _record_failure(user=user, purpose=purpose, reason="too_many_attempts", now=now, data=data)
        code = _normalize_code(code)
        well_formed = bool(_CODE_RE.match(code))

        replayed = False
        device = _confirmed_device(user, lock=True)
        if device is not None and well_formed:
            steps = _matching_steps(decrypt_secret(device.secret_encrypted), code, now)
            fresh = [step for step in steps if device.last_used_step is None or step > device.last_used_step]
            if fresh:
                if consume:
                    device.last_used_step = max(fresh)
                    device.save(update_fields=["last_used_step", "updated_at"])
                _clear_failures(user.pk)
                return CodeCheck(ok=True, method="totp")
            replayed = bool(steps)

        otp = _latest_email_otp(user, lock=True)
        email_reason = ""
        if otp is not None and well_formed and not replayed:
            matches = hmac.compare_digest(otp.code_hash, _email_code_hash(user.pk, code))
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
                _clear_failures(user.pk)
                return CodeCheck(ok=True, method="email", email_expires_at=otp.expires_at)
        if _live(otp, now) and not replayed:  # a wrong guess at a live e-mail code spends an attempt
            otp.attempts += 1
            otp.save(update_fields=["attempts"])

        reason = "replayed" if replayed else (email_reason or "invalid")
        failure = _record_failure(user=user, purpose=purpose, reason=reason, now=now, data=data)
        if otp is not None and otp.used_at is None and otp.expires_at > now:
            failure = CodeCheck(ok=False, reason=failure.reason, retry_after=failure.retry_after,
                                email_attempts_left=max(email_max_attempts() - otp.attempts, 0))
        return failure


def _failed(check: CodeCheck) -> TwoFactorVerificationFailed:
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
    if _live(_latest_email_otp(user, lock=False), now):
        methods.append("email")
    return methods


def _required(user: User, now: datetime, message: str, extra: dict[str, Any] | None = None) -> TwoFactorRequired:
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


def twofactor_required_for(*, amount: Decimal, currency: str) -> bool:
    if isinstance(amount, float) or not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    return amount >= twofactor_threshold(currency)


def twofactor_require(*, user: User, amount: Decimal, currency: str, code: str | None, now: datetime | None = None) -> str | None:
    """The step-up of the money path. Returns None below the threshold, else the method whose
    code was accepted and spent ("totp" or "email"); raises TwoFactorRequired /
    TwoFactorVerificationFailed. Call it inside the movement's transaction, after the locks and
    limits (SPEC 4 "The money path"); see the module docstring for what commits when."""
    if not isinstance(user, User):
        raise TypeError("2FA step-up applies to users; organization credentials are not subject to it")
    if not twofactor_required_for(amount=amount, currency=currency):
        return None
    now = now or timezone.now()
    threshold = twofactor_threshold(currency)
    if not _normalize_code(code):
        raise _required(
            user,
            now,
            f"A movement of {threshold} {currency} or more needs a second factor:",
            {"threshold": str(threshold), "currency": currency},
        )
    check = _check_code(user=user, code=code, now=now, consume=True, purpose="step_up",
                        data={"amount": amount, "currency": currency})
    if not check.ok:
        raise _failed(check)
    return check.method


def twofactor_verify(*, user: User, code: str, now: datetime | None = None) -> CodeCheck:
    """Dry run of the step-up check (`POST /auth/2fa/verify-code`): would this code pass now?
    Consumes nothing on success; a failure counts and is committed, then raised."""
    now = now or timezone.now()
    check = _check_code(user=user, code=code, now=now, consume=False, purpose="verify_code")
    if not check.ok:
        raise _failed(check)
    return check


# --- TOTP enrolment --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    re_enrolment: bool

    @property
    def qr_svg_data_uri(self) -> str:
        return segno.make(self.otpauth_uri, error="m").svg_data_uri(scale=4)


def totp_enrol(*, user: User, code: str | None = None, now: datetime | None = None) -> TotpEnrolment:
    """Hand out a new pending secret (see the module docstring). A confirmed device needs a
    current code (TOTP or e-mail) first: none -> TwoFactorRequired, a wrong one ->
    TwoFactorVerificationFailed (recorded and committed before it is raised)."""
    now = now or timezone.now()
    failure: CodeCheck | None = None
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # serialises enrolments of one user
        # Locked, so a confirmation racing this enrolment cannot slip in between the "is it
        # confirmed?" decision and the write (which would re-enrol a confirmed device codelessly).
        device, _ = TotpDevice.objects.select_for_update().get_or_create(user=user)
        re_enrolment = device.is_confirmed
        if re_enrolment:
            if not _normalize_code(code):
                raise _required(user, now, "Replacing a confirmed authenticator needs a current code:")
            check = _check_code(user=user, code=code, now=now, consume=True, purpose="totp_re_enrol")
            if not check.ok:
                failure = check
        if failure is None:
            secret = pyotp.random_base32()
            device.refresh_from_db()  # _check_code advanced last_used_step on its own instance
            device.pending_secret_encrypted = encrypt_secret(secret)
            device.save(update_fields=["pending_secret_encrypted", "updated_at"])
            audit_record(actor=user, action="2fa.totp_enrolled", target=user, data={"device_id": device.pk, "re_enrolment": re_enrolment})
    if failure is not None:
        raise _failed(failure)
    return TotpEnrolment(secret=secret, otpauth_uri=_otpauth_uri(secret, user), re_enrolment=re_enrolment)


def totp_confirm(*, user: User, code: str, now: datetime | None = None) -> TotpDevice:
    """Activate the pending secret with a current code of it (+-1 step). The step used is spent:
    `last_used_step` becomes at least that step, so the confirming code cannot also pass a
    step-up. No pending secret -> 409 INVALID_STATE."""
    now = now or timezone.now()
    failure: CodeCheck | None = None
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is None or not device.pending_secret_encrypted:
            raise InvalidState("There is no authenticator enrolment to confirm: enrol first (POST /api/v1/auth/2fa/totp).")
        locked = _locked_for(user.pk, now)
        normalized = _normalize_code(code)
        steps = [] if locked or not _CODE_RE.match(normalized) else _matching_steps(decrypt_secret(device.pending_secret_encrypted), normalized, now)
        if not steps:
            failure = _record_failure(user=user, purpose="totp_confirm", reason="too_many_attempts" if locked else "invalid", now=now)
        else:
            re_enrolment = bool(device.secret_encrypted)
            device.secret_encrypted = device.pending_secret_encrypted
            device.pending_secret_encrypted = ""
            device.confirmed_at = now
            device.last_used_step = max([*steps, device.last_used_step or 0])
            device.save(update_fields=["secret_encrypted", "pending_secret_encrypted", "confirmed_at", "last_used_step", "updated_at"])
            _clear_failures(user.pk)
            audit_record(actor=user, action="2fa.totp_confirmed", target=user, data={"device_id": device.pk, "re_enrolment": re_enrolment})
    if failure is not None:
        raise _failed(failure)
    return device


# --- E-mail codes ----------------------------------------------------------------------------------------


def email_otp_send(*, user: User, now: datetime | None = None) -> EmailOtp:
    """Create a new e-mail code (replacing any earlier one) and queue its mail in the outbox.
    A second send within TWO_FACTOR_EMAIL_RESEND_SECONDS -> 429 RATE_LIMITED with Retry-After."""
    now = now or timezone.now()
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one send decision at a time per user
        latest = _latest_email_otp(user, lock=False)
        if latest is not None:
            wait = email_resend_seconds() - int((now - latest.created_at).total_seconds())
            if wait > 0:
                raise RateLimited(
                    f"A code was sent moments ago: wait {wait} s before requesting another.",
                    details={"retry_after": wait},
                    headers={"Retry-After": str(wait)},
                )
        code = f"{secrets.randbelow(10**TOTP_DIGITS):0{TOTP_DIGITS}d}"
        otp = EmailOtp.objects.create(
            user=user,
            code_hash=_email_code_hash(user.pk, code),
            created_at=now,
            expires_at=now + timedelta(seconds=email_ttl_seconds()),
        )
        outbox_emit(topic=EMAIL_CODE_TOPIC, payload={"email_otp_id": otp.pk, "code": encrypt_secret(code)}, key=f"email-otp-{otp.pk}")
        audit_record(actor=user, action="2fa.email_code_sent", target=user, data={"email_otp_id": otp.pk, "expires_at": otp.expires_at})
    return otp


def email_otp_deliver(message: OutboxMessage) -> None:
    """Outbox handler: mail the code of one EmailOtp, unless it can no longer be used (expired,
    used, exhausted or replaced by a newer code)."""
    otp = EmailOtp.objects.select_related("user").filter(pk=message.payload.get("email_otp_id")).first()
    now = timezone.now()
    if otp is None or not _live(otp, now):
        return
    latest = _latest_email_otp(otp.user, lock=False)
    if latest is None or latest.pk != otp.pk:
        return
    code = decrypt_secret(message.payload["code"])
    minutes = max(email_ttl_seconds() // 60, 1)
    send_mail(
        subject="Your Coffer verification code",
        message=(
            f"Your Coffer verification code is {code}.\n\n"
            f"It is valid for {minutes} minutes and can be used once. If you did not ask for it, "
            "someone may be trying to move money from your account: change your password."
        ),
        from_email=None,
        recipient_list=[otp.user.email],
    )


register_handler(EMAIL_CODE_TOPIC, email_otp_deliver)


# --- Reads ----------------------------------------------------------------------------------------------


def twofactor_status(*, user: User, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    device = TotpDevice.objects.filter(user=user).first()
    otp = _latest_email_otp(user, lock=False)
    live = _live(otp, now)
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
        "locked_for_seconds": _locked_for(user.pk, now),
        "header": HEADER,
    }
