"""One-time codes by e-mail, the other second factor.

Invariants:
- A code is 6 digits from `secrets`, stored only as a keyed HMAC-SHA256 bound to the user; a new
  code replaces the previous one. At most one send per TWO_FACTOR_EMAIL_RESEND_SECONDS per user
  (429 RATE_LIMITED), decided under the user's row lock (the first lock of the 2FA lock order,
  accounts.identity.twofactor).
- The mail is an outbox row (topic `accounts.2fa.email_code`) written in the send's transaction,
  carrying the code Fernet-encrypted; `email_otp_deliver` sends it after commit, unless the code
  expired, was used or was replaced meanwhile. The code never appears in a log.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.crypto import decrypt_secret, encrypt_secret
from accounts.identity.twofactor import (
    EMAIL_CODE_TOPIC,
    TOTP_DIGITS,
    email_code_hash,
    email_otp_live,
    email_resend_seconds,
    email_ttl_seconds,
    latest_email_otp,
    twofactor_lock_user,
)
from accounts.models import EmailOtp, User
from compliance.audit import audit_record
from core.errors import RateLimited
from core.models import OutboxMessage
from core.outbox import outbox_emit


def email_otp_send(*, user: User, now: datetime | None = None) -> EmailOtp:
    """Create a new e-mail code (replacing any earlier one) and queue its mail in the outbox.
    A second send within TWO_FACTOR_EMAIL_RESEND_SECONDS -> 429 RATE_LIMITED with Retry-After."""
    now = now or timezone.now()
    with transaction.atomic():
        twofactor_lock_user(user)  # the 2FA lock order's first lock: one send decision at a time per user
        latest = latest_email_otp(user, lock=False)
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
            code_hash=email_code_hash(user.pk, code),
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
    if otp is None or not email_otp_live(otp, now):
        return
    latest = latest_email_otp(otp.user, lock=False)
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
