"""Enrolling an authenticator app (TOTP, RFC 6238 through pyotp: SHA-1, 6 digits, 30 s steps).

Invariants:
- `totp_enrol` hands out a new secret as a *pending* secret (Fernet-encrypted); `totp_confirm`
  with a current code of it activates it and spends that code's step.
- Replacing a confirmed device needs a current code (TOTP or e-mail, exactly as a step-up); the
  old secret keeps working until the new one is confirmed.
- Failures are recorded and committed before they are raised (accounts.identity.twofactor).
- Lock order: the user row -> the TOTP device, in enrolment AND confirmation (the one order of
  all 2FA writers, accounts.identity.twofactor's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from django.db import transaction
from django.utils import timezone

from accounts.crypto import decrypt_secret, encrypt_secret
from accounts.identity.twofactor import (
    CODE_RE,
    CodeCheck,
    check_code,
    clear_failures,
    locked_for,
    matching_steps,
    normalize_code,
    otpauth_uri,
    record_failure,
    second_factor_required,
    twofactor_lock_user,
    verification_failed,
)
from accounts.models import TotpDevice, User
from compliance.audit import audit_record
from core.errors import InvalidState


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
        twofactor_lock_user(user)  # first, as every 2FA writer: serialises enrolments of one user
        # Locked, so a confirmation racing this enrolment cannot slip in between the "is it
        # confirmed?" decision and the write (which would re-enrol a confirmed device codelessly).
        device, _ = TotpDevice.objects.select_for_update().get_or_create(user=user)
        re_enrolment = device.is_confirmed
        if re_enrolment:
            if not normalize_code(code):
                raise second_factor_required(user, now, "Replacing a confirmed authenticator needs a current code:")
            check = check_code(user=user, code=code, now=now, consume=True, purpose="totp_re_enrol")
            if not check.ok:
                failure = check
        if failure is None:
            secret = pyotp.random_base32()
            device.refresh_from_db()  # check_code advanced last_used_step on its own instance
            device.pending_secret_encrypted = encrypt_secret(secret)
            device.save(update_fields=["pending_secret_encrypted", "updated_at"])
            audit_record(actor=user, action="2fa.totp_enrolled", target=user, data={"device_id": device.pk, "re_enrolment": re_enrolment})
    if failure is not None:
        raise verification_failed(failure)
    return TotpEnrolment(secret=secret, otpauth_uri=otpauth_uri(secret, user), re_enrolment=re_enrolment)


def totp_confirm(*, user: User, code: str, now: datetime | None = None) -> TotpDevice:
    """Activate the pending secret with a current code of it (+-1 step). The step used is spent:
    `last_used_step` becomes at least that step, so the confirming code cannot also pass a
    step-up. No pending secret -> 409 INVALID_STATE."""
    now = now or timezone.now()
    failure: CodeCheck | None = None
    with transaction.atomic():
        # The user first, although only the device changes: the audit row below references the
        # user, and a confirmation locking the device before the user deadlocked with an enrolment.
        twofactor_lock_user(user)
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is None or not device.pending_secret_encrypted:
            raise InvalidState("There is no authenticator enrolment to confirm: enrol first (POST /api/v1/auth/2fa/totp).")
        locked = locked_for(user.pk, now)
        normalized = normalize_code(code)
        steps = [] if locked or not CODE_RE.match(normalized) else matching_steps(decrypt_secret(device.pending_secret_encrypted), normalized, now)
        if not steps:
            failure = record_failure(user=user, purpose="totp_confirm", reason="too_many_attempts" if locked else "invalid", now=now)
        else:
            re_enrolment = bool(device.secret_encrypted)
            device.secret_encrypted = device.pending_secret_encrypted
            device.pending_secret_encrypted = ""
            device.confirmed_at = now
            device.last_used_step = max([*steps, device.last_used_step or 0])
            device.save(update_fields=["secret_encrypted", "pending_secret_encrypted", "confirmed_at", "last_used_step", "updated_at"])
            clear_failures(user.pk)
            audit_record(actor=user, action="2fa.totp_confirmed", target=user, data={"device_id": device.pk, "re_enrolment": re_enrolment})
    if failure is not None:
        raise verification_failed(failure)
    return device
