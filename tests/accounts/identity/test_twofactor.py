"""2FA step-up (accounts.identity.twofactor, totp, email_codes): TOTP enrolment and confirmation, e-mail codes, the step-up
check of the money path, the HTTP endpoints, and user-only /users endpoints.

Time is driven by passing `now` into the services and computing codes with pyotp's `at(for_time)`;
nothing of ours is mocked. The HTTP tests use the real clock (the +-1 step window absorbs a step
boundary between computing a code and checking it)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pyotp
import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection, transaction
from django.test import RequestFactory, override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import EmailOtp, TotpDevice
from accounts.identity.email_codes import email_otp_send
from accounts.identity.totp import totp_confirm, totp_enrol
from accounts.identity.twofactor import (
    EMAIL_CODE_TOPIC,
    TwoFactorRequired,
    TwoFactorVerificationFailed,
    twofactor_code_from,
    twofactor_require,
    twofactor_threshold,
    twofactor_verify,
)
from compliance.models import AuditEvent
from core.errors import InvalidState, RateLimited
from core.models import OutboxMessage
from core.outbox import handlers_for, outbox_dispatch
from tests.audit_chain import audit_chain_verified
from tests.concurrency import run_in_threads
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

# A fixed instant 10 s into a 30 s TOTP step, so +-n steps are unambiguous.
T0 = datetime(2030, 1, 1, 12, 0, 10, tzinfo=dt_timezone.utc)
BIG = Decimal("5000")
SMALL = Decimal("4999.99")


def at(secret: str, when: datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(when, counter_offset=steps)


def confirmed_user(now: datetime = T0):
    """A user with a confirmed authenticator (confirmed 5 minutes before `now`); returns (user, secret)."""
    user = UserFactory()
    enrolment = totp_enrol(user=user, now=now - timedelta(minutes=5))
    totp_confirm(user=user, code=at(enrolment.secret, now - timedelta(minutes=5)), now=now - timedelta(minutes=5))
    return user, enrolment.secret


def deliver(message: OutboxMessage) -> None:
    """Run an outbox message the way production does. In a transactional test, the real
    dispatcher; inside a test's own transaction (where the dispatcher refuses to run: its claim
    could not commit) the handlers the dispatcher would run."""
    if connection.in_atomic_block:
        handlers = handlers_for(message.topic)
        assert handlers, f"no handler for {message.topic}"
        for handler in handlers:
            handler(message)
    else:
        assert outbox_dispatch(message_id=message.pk) == "dispatched"


def send_code(user, now: datetime = T0) -> str:
    """Send an e-mail code the way production does (outbox row, then the dispatcher runs its
    handler) and read the code back from the mail."""
    before = len(mail.outbox)
    otp = email_otp_send(user=user, now=now)
    message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC, key=f"email-otp-{otp.pk}")
    deliver(message)
    assert len(mail.outbox) == before + 1
    sent = mail.outbox[-1]
    assert sent.to == [user.email]
    return re.search(r"\b(\d{6})\b", sent.body).group(1)


def actions(user=None) -> list[str]:
    events = AuditEvent.objects.order_by("id")
    if user is not None:
        events = events.filter(actor_id=user.pk)
    return list(events.values_list("action", flat=True))


def failure_reasons(user) -> list[str]:
    return [e.data["reason"] for e in AuditEvent.objects.filter(actor_id=user.pk, action="2fa.verification_failed").order_by("id")]


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- TOTP enrolment and confirmation ---------------------------------------------------------------------


def test_enrol_returns_secret_and_otpauth_uri_stored_encrypted():
    user = UserFactory(email="jane@example.com")
    enrolment = totp_enrol(user=user, now=T0)
    assert re.fullmatch(r"[A-Z2-7]{32}", enrolment.secret)
    parsed = pyotp.parse_uri(enrolment.otpauth_uri)
    assert parsed.secret == enrolment.secret and parsed.issuer == "Coffer" and parsed.name == "jane@example.com"
    assert enrolment.otpauth_uri.startswith("otpauth://totp/Coffer:jane%40example.com?")
    assert not enrolment.re_enrolment
    device = TotpDevice.objects.get(user=user)
    assert device.confirmed_at is None and device.secret_encrypted == "" and not device.is_confirmed
    assert device.pending_secret_encrypted and enrolment.secret not in device.pending_secret_encrypted
    assert actions(user) == ["2fa.totp_enrolled"]


def test_confirm_with_a_current_code_activates_and_spends_that_step():
    user = UserFactory()
    enrolment = totp_enrol(user=user, now=T0)
    device = totp_confirm(user=user, code=at(enrolment.secret, T0), now=T0)
    assert device.is_confirmed and device.confirmed_at == T0 and device.pending_secret_encrypted == ""
    assert device.last_used_step == int(T0.timestamp()) // 30
    assert actions(user) == ["2fa.totp_enrolled", "2fa.totp_confirmed"]
    # The confirming code cannot also authorise a movement.
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=at(enrolment.secret, T0), now=T0 + timedelta(seconds=5))
    assert exc.value.details["reason"] == "replayed"


def test_enrolling_again_before_confirmation_replaces_the_secret():
    user = UserFactory()
    first = totp_enrol(user=user, now=T0)
    second = totp_enrol(user=user, now=T0)
    assert first.secret != second.secret and TotpDevice.objects.filter(user=user).count() == 1
    with pytest.raises(TwoFactorVerificationFailed):
        totp_confirm(user=user, code=at(first.secret, T0), now=T0)
    assert not TotpDevice.objects.get(user=user).is_confirmed
    totp_confirm(user=user, code=at(second.secret, T0), now=T0)
    assert TotpDevice.objects.get(user=user).is_confirmed


@pytest.mark.parametrize("code", ["000000", "12345", "1234567", "abcdef", ""])
def test_confirm_with_a_wrong_code_fails_and_is_audited(code):
    user = UserFactory()
    enrolment = totp_enrol(user=user, now=T0)
    if code == "000000" and at(enrolment.secret, T0) == code:  # one chance in a million
        code = "000001"
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        totp_confirm(user=user, code=code, now=T0)
    assert exc.value.code == "2FA_VERIFICATION_FAILED" and exc.value.status == 403
    assert not TotpDevice.objects.get(user=user).is_confirmed
    assert failure_reasons(user) == ["invalid"]
    assert AuditEvent.objects.get(action="2fa.verification_failed").data["purpose"] == "totp_confirm"


def test_confirm_without_enrolment_is_invalid_state():
    user = UserFactory()
    with pytest.raises(InvalidState):
        totp_confirm(user=user, code="123456", now=T0)
    user, secret = confirmed_user()
    with pytest.raises(InvalidState):  # nothing pending any more
        totp_confirm(user=user, code=at(secret, T0), now=T0)


def test_re_enrolling_a_confirmed_device_needs_a_current_code_and_keeps_the_old_secret_until_confirmed():
    user, old = confirmed_user()
    with pytest.raises(TwoFactorRequired):
        totp_enrol(user=user, now=T0)
    with pytest.raises(TwoFactorVerificationFailed):
        totp_enrol(user=user, code=other_code(at(old, T0)), now=T0)
    assert failure_reasons(user) == ["invalid"]
    assert TotpDevice.objects.get(user=user).pending_secret_encrypted == ""

    new = totp_enrol(user=user, code=at(old, T0), now=T0)
    assert new.re_enrolment and new.secret != old
    # Until confirmed, the old authenticator still works (for a later step: T0's was just spent).
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(old, T0, 1), now=T0 + timedelta(seconds=30)) == "totp"
    totp_confirm(user=user, code=at(new.secret, T0, 2), now=T0 + timedelta(seconds=60))
    later = T0 + timedelta(seconds=120)
    with pytest.raises(TwoFactorVerificationFailed):
        twofactor_require(user=user, amount=BIG, currency="USD", code=at(old, later), now=later)
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(new.secret, later), now=later) == "totp"
    assert actions(user).count("2fa.totp_confirmed") == 2


def test_re_enrolment_can_be_proven_with_an_email_code():
    user, old = confirmed_user()
    code = send_code(user)
    enrolment = totp_enrol(user=user, code=code, now=T0)
    assert enrolment.re_enrolment
    assert EmailOtp.objects.get(user=user).used_at == T0


# --- TOTP window and replay --------------------------------------------------------------------------------


@pytest.mark.parametrize("steps, accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_totp_window_is_one_step_either_side(steps, accepted):
    user, secret = confirmed_user()
    code = at(secret, T0, steps)
    if accepted:
        assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "totp"
        assert TotpDevice.objects.get(user=user).last_used_step == int(T0.timestamp()) // 30 + steps
    else:
        with pytest.raises(TwoFactorVerificationFailed) as exc:
            twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0)
        assert exc.value.details["reason"] == "invalid"


def test_the_same_totp_code_cannot_be_used_twice():
    user, secret = confirmed_user()
    code = at(secret, T0)
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "totp"
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(seconds=5))
    assert exc.value.details["reason"] == "replayed"
    assert "wait for the next" in exc.value.message
    # Still within the window 30 s later, still refused; the next step's code works.
    with pytest.raises(TwoFactorVerificationFailed):
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(seconds=30))
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0, 1), now=T0 + timedelta(seconds=30)) == "totp"


def test_an_older_step_is_refused_after_a_newer_one_was_used():
    user, secret = confirmed_user()
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0, 1), now=T0) == "totp"
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0), now=T0)
    assert exc.value.details["reason"] == "replayed"


# --- E-mail codes ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the real dispatcher, outside any transaction
def test_email_code_is_mailed_through_the_outbox_and_stored_only_hashed():
    user = UserFactory()
    code = send_code(user)
    otp = EmailOtp.objects.get(user=user)
    assert re.fullmatch(r"[0-9a-f]{64}", otp.code_hash) and code not in otp.code_hash
    assert otp.expires_at == T0 + timedelta(minutes=10) and otp.attempts == 0 and otp.used_at is None
    row = {f.name: getattr(otp, f.name) for f in EmailOtp._meta.fields}
    assert code not in repr(row)
    message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC)
    assert code not in repr(message.payload)  # the outbox carries it encrypted
    assert mail.outbox[-1].subject == "Your Coffer verification code"
    assert actions(user) == ["2fa.email_code_sent"]


def test_the_mail_is_written_in_the_outbox_only_when_the_send_commits():
    user = UserFactory()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            email_otp_send(user=user, now=T0)
            raise RuntimeError("the caller failed after asking for a code")
    assert not EmailOtp.objects.exists() and not OutboxMessage.objects.filter(topic=EMAIL_CODE_TOPIC).exists()


def test_email_code_passes_a_step_up_once():
    user = UserFactory()
    code = send_code(user)
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(minutes=1)) == "email"
    assert EmailOtp.objects.get(user=user).used_at == T0 + timedelta(minutes=1)
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(minutes=2))
    assert exc.value.details["reason"] == "used"


def test_email_code_expires_after_ten_minutes():
    user = UserFactory()
    code = send_code(user)
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(minutes=10))
    assert exc.value.details["reason"] == "expired"
    other = UserFactory()
    code = send_code(other)
    assert twofactor_require(user=other, amount=BIG, currency="USD", code=code, now=T0 + timedelta(seconds=599)) == "email"


def test_email_code_is_dead_after_five_wrong_attempts_even_if_the_cache_is_flushed():
    user = UserFactory()
    code = send_code(user)
    for attempt in range(5):
        with pytest.raises(TwoFactorVerificationFailed) as exc:
            twofactor_verify(user=user, code=other_code(code), now=T0)
        assert exc.value.details["email_code_attempts_left"] == 4 - attempt
    assert EmailOtp.objects.get(user=user).attempts == 5
    cache.clear()  # the per-user lockout is gone; the code's own attempt count is not
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0)
    assert exc.value.details["reason"] == "too_many_attempts"
    assert EmailOtp.objects.get(user=user).used_at is None


def test_sends_are_throttled_to_one_per_30_seconds_and_a_new_code_replaces_the_old():
    user = UserFactory()
    first = send_code(user)
    with pytest.raises(RateLimited) as exc:
        email_otp_send(user=user, now=T0 + timedelta(seconds=20))
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "10" and exc.value.details["retry_after"] == 10
    assert EmailOtp.objects.filter(user=user).count() == 1
    second = send_code(user, now=T0 + timedelta(seconds=30))
    if second == first:  # one chance in a million: the old code would verify as the new one
        pytest.skip("the two random codes collided")
    with pytest.raises(TwoFactorVerificationFailed):
        twofactor_require(user=user, amount=BIG, currency="USD", code=first, now=T0 + timedelta(seconds=31))
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=second, now=T0 + timedelta(seconds=32)) == "email"


def test_delivery_skips_a_code_that_was_replaced_or_expired():
    user = UserFactory()
    first = email_otp_send(user=user, now=T0 - timedelta(minutes=1))
    email_otp_send(user=user, now=T0)
    first_message = OutboxMessage.objects.get(key=f"email-otp-{first.pk}")
    deliver(first_message)
    assert mail.outbox == []
    stale = UserFactory()  # the handler runs on the real clock
    old = email_otp_send(user=stale, now=timezone.now() - timedelta(minutes=11))
    deliver(OutboxMessage.objects.get(key=f"email-otp-{old.pk}"))
    assert mail.outbox == []


# --- Step-up ----------------------------------------------------------------------------------------------


def test_below_the_threshold_no_code_is_needed_and_nothing_is_written():
    user = UserFactory()
    assert twofactor_require(user=user, amount=SMALL, currency="USD", code=None, now=T0) is None
    assert twofactor_require(user=user, amount=SMALL, currency="USD", code="garbage", now=T0) is None
    assert not AuditEvent.objects.exists()


def test_at_the_threshold_without_a_code_is_2fa_required_with_how_to_get_one():
    user = UserFactory()
    with pytest.raises(TwoFactorRequired) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=None, now=T0)
    error = exc.value
    assert error.code == "2FA_REQUIRED" and error.status == 403
    assert error.details["methods"] == [] and error.details["threshold"] == "5000" and error.details["header"] == "X-2FA-Code"
    assert "/api/v1/auth/2fa/totp" in error.message and "/api/v1/auth/2fa/send-code" in error.message
    with pytest.raises(TwoFactorRequired):
        twofactor_require(user=user, amount=BIG, currency="USD", code="  ", now=T0)

    enrolled, _ = confirmed_user()
    with pytest.raises(TwoFactorRequired) as exc:
        twofactor_require(user=enrolled, amount=Decimal("1000000"), currency="EUR", code=None, now=T0)
    assert exc.value.details["methods"] == ["totp"] and "authenticator" in exc.value.message
    send_code(enrolled)
    with pytest.raises(TwoFactorRequired) as exc:
        twofactor_require(user=enrolled, amount=BIG, currency="EUR", code=None, now=T0)
    assert exc.value.details["methods"] == ["totp", "email"]


def test_valid_code_passes_wrong_code_fails_replay_refused():
    user, secret = confirmed_user()
    code = at(secret, T0)
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=other_code(code), now=T0)
    assert exc.value.code == "2FA_VERIFICATION_FAILED" and exc.value.details["reason"] == "invalid"
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "totp"
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0)
    assert exc.value.details["reason"] == "replayed"
    failure = AuditEvent.objects.filter(action="2fa.verification_failed").first()
    assert failure.data["purpose"] == "step_up" and failure.data["amount"] == "5000" and failure.data["currency"] == "USD"
    assert code not in repr([e.data for e in AuditEvent.objects.all()])
    assert audit_chain_verified()["valid"]


def test_a_code_spent_in_a_movement_that_rolls_back_is_not_spent():
    user, secret = confirmed_user()
    code = at(secret, T0)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "totp"
            raise RuntimeError("the posting failed")
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "totp"


def test_thresholds_are_per_asset_in_major_units_with_overrides():
    user = UserFactory()
    # the default is USD 5,000 (the reference currency): worth 5000 / 65000 BTC at the sandbox rate
    assert twofactor_threshold("USD") == Decimal("5000")
    assert twofactor_threshold("BTC").quantize(Decimal("1e-8")) == Decimal("0.07692308")
    with override_settings(TWO_FACTOR_THRESHOLDS={"BTC": "0.1", "ETH": 2.5}):
        assert twofactor_threshold("btc") == Decimal("0.1") and twofactor_threshold("ETH") == Decimal("2.5")
        assert twofactor_require(user=user, amount=Decimal("0.09999999"), currency="BTC", code=None, now=T0) is None
        with pytest.raises(TwoFactorRequired) as exc:
            twofactor_require(user=user, amount=Decimal("0.1"), currency="BTC", code=None, now=T0)
        assert exc.value.details["threshold"] == "0.1" and exc.value.details["currency"] == "BTC"
        with pytest.raises(TwoFactorRequired):
            twofactor_require(user=user, amount=BIG, currency="USD", code=None, now=T0)
    with override_settings(TWO_FACTOR_THRESHOLD=Decimal("100")):
        with pytest.raises(TwoFactorRequired):
            twofactor_require(user=user, amount=Decimal("100.00"), currency="EUR", code=None, now=T0)


def test_money_must_be_decimal_and_callers_must_be_users():
    user = UserFactory()
    with pytest.raises(TypeError):
        twofactor_require(user=user, amount=5000.0, currency="USD", code=None, now=T0)
    with pytest.raises(TypeError):
        twofactor_require(user=user, amount=5000, currency="USD", code=None, now=T0)
    from accounts.orgs.authentication import OrganizationPrincipal

    with pytest.raises(TypeError):
        twofactor_require(user=OrganizationPrincipal(), amount=BIG, currency="USD", code=None, now=T0)


def test_repeated_failures_lock_verification_even_when_the_callers_transaction_rolls_back():
    """A money service raises the error out of its own savepoint, which takes the audit rows and
    attempt counts with it; the cache counter still locks the user after 5 failures."""
    user, secret = confirmed_user()
    wrong = other_code(at(secret, T0))
    for _ in range(5):
        with pytest.raises(TwoFactorVerificationFailed):
            with transaction.atomic():
                twofactor_require(user=user, amount=BIG, currency="USD", code=wrong, now=T0)
    assert failure_reasons(user) == []  # rolled back with the callers' savepoints
    with pytest.raises(TwoFactorVerificationFailed) as exc:
        twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0), now=T0)
    assert exc.value.details["reason"] == "too_many_attempts"
    assert exc.value.details["retry_after"] == 900 and exc.value.headers["Retry-After"] == "900"
    with pytest.raises(TwoFactorVerificationFailed):  # confirm and verify-code are locked too
        twofactor_verify(user=user, code=at(secret, T0), now=T0 + timedelta(seconds=10))
    # Refused attempts during the lock do not extend it; after the window a right code passes.
    later = T0 + timedelta(seconds=901)
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, later), now=later) == "totp"


def test_a_success_resets_the_failure_count():
    user, secret = confirmed_user()
    for i in range(4):
        with pytest.raises(TwoFactorVerificationFailed):
            twofactor_require(user=user, amount=BIG, currency="USD", code=other_code(at(secret, T0)), now=T0)
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0), now=T0) == "totp"
    later = T0 + timedelta(seconds=30)
    for i in range(4):
        with pytest.raises(TwoFactorVerificationFailed) as exc:
            twofactor_require(user=user, amount=BIG, currency="USD", code=other_code(at(secret, later)), now=later)
        assert exc.value.details["reason"] == "invalid"
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, later), now=later) == "totp"


def test_verify_consumes_nothing():
    user, secret = confirmed_user()
    code = send_code(user)
    assert twofactor_verify(user=user, code=code, now=T0).method == "email"
    assert twofactor_verify(user=user, code=code, now=T0).method == "email"
    assert twofactor_verify(user=user, code=at(secret, T0), now=T0).method == "totp"
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=at(secret, T0), now=T0) == "totp"
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0) == "email"


def test_code_header_helper():
    factory = RequestFactory()
    assert twofactor_code_from(factory.post("/", HTTP_X_2FA_CODE=" 123456 ")) == "123456"
    assert twofactor_code_from(factory.post("/", HTTP_X_2FA_CODE="   ")) is None
    assert twofactor_code_from(factory.post("/")) is None


# --- Concurrency (PostgreSQL) ------------------------------------------------------------------------------


def _race(n: int, func) -> list:
    return run_in_threads(n, lambda i: func(), timeout=30)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_with_the_same_totp_code_exactly_one_succeeds():
    user, secret = confirmed_user()
    code = at(secret, T0)
    results = _race(2, lambda: twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0))
    assert results.count("totp") == 1, results
    loser = next(r for r in results if r != "totp")
    assert isinstance(loser, TwoFactorVerificationFailed) and loser.details["reason"] == "replayed"
    step = int(T0.timestamp()) // 30
    assert TotpDevice.objects.get(user=user).last_used_step == step


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_threads_with_the_same_email_code_exactly_one_succeeds():
    user = UserFactory()
    code = send_code(user)
    results = _race(8, lambda: twofactor_require(user=user, amount=BIG, currency="USD", code=code, now=T0 + timedelta(seconds=5)))
    assert results.count("email") == 1, results
    losers = [r for r in results if r != "email"]
    assert all(isinstance(r, TwoFactorVerificationFailed) for r in losers), results
    # The checks run one at a time under the user's row lock (the 2FA lock order), the lockout
    # included: the first 5 losers find the code used, and their 5 failures lock the rest out.
    assert sorted(r.details["reason"] for r in losers) == ["too_many_attempts"] * 2 + ["used"] * 5
    assert audit_chain_verified()["valid"]


# --- HTTP ---------------------------------------------------------------------------------------------------


def user_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_http_enrol_confirm_and_status():
    user = UserFactory()
    client = user_client(user)
    assert client.get("/api/v1/auth/2fa").json()["totp"] == {"confirmed": False, "confirmed_at": None, "pending_confirmation": False}
    response = client.post("/api/v1/auth/2fa/totp", {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg", "re_enrolment", "confirmed"}
    assert body["qr_svg"].startswith("data:image/svg+xml") and response["Cache-Control"] == "no-store"
    assert "issuer=Coffer" in body["otpauth_uri"] and body["confirmed"] is False

    wrong = client.post("/api/v1/auth/2fa/totp/confirm", {"code": other_code(pyotp.TOTP(body["secret"]).now())}, format="json")
    assert wrong.status_code == 403 and error_of(wrong)["code"] == "2FA_VERIFICATION_FAILED"
    assert failure_reasons(user) == ["invalid"]  # committed although the request failed
    missing = client.post("/api/v1/auth/2fa/totp/confirm", {}, format="json")
    assert missing.status_code == 400 and "code" in error_of(missing)["details"]["fields"]

    ok = client.post("/api/v1/auth/2fa/totp/confirm", {"code": pyotp.TOTP(body["secret"]).now()}, format="json")
    assert ok.status_code == 200 and ok.json()["confirmed"] is True
    status = client.get("/api/v1/auth/2fa").json()
    assert status["totp"]["confirmed"] is True and status["totp"]["pending_confirmation"] is False

    again = client.post("/api/v1/auth/2fa/totp", {}, format="json")
    assert again.status_code == 403 and error_of(again)["code"] == "2FA_REQUIRED"
    nothing = client.post("/api/v1/auth/2fa/totp/confirm", {"code": "123456"}, format="json")
    assert nothing.status_code == 409 and error_of(nothing)["code"] == "INVALID_STATE"


def test_http_re_enrol_with_the_code_in_the_header():
    user = UserFactory()
    client = user_client(user)
    secret = client.post("/api/v1/auth/2fa/totp", {}, format="json").json()["secret"]
    totp = pyotp.TOTP(secret)
    # Confirm with the previous step's code, so a later one is still unspent for re-enrolment.
    previous = totp.at(time.time(), counter_offset=-1)
    assert client.post("/api/v1/auth/2fa/totp/confirm", {"code": previous}, format="json").status_code == 200
    response = client.post("/api/v1/auth/2fa/totp", {}, format="json", HTTP_X_2FA_CODE=totp.at(time.time(), counter_offset=1))
    assert response.status_code == 200, response.content
    assert response.json()["re_enrolment"] is True and response.json()["secret"] != secret


def test_http_send_and_verify_code():
    user = UserFactory()
    client = user_client(user)
    response = client.post("/api/v1/auth/2fa/send-code")
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"sent", "expires_at", "resend_available_at"}
    message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC)
    deliver(message)
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    assert code not in response.content.decode()

    again = client.post("/api/v1/auth/2fa/send-code")
    assert again.status_code == 429 and error_of(again)["code"] == "RATE_LIMITED"
    assert 1 <= int(again["Retry-After"]) <= 30

    wrong = client.post("/api/v1/auth/2fa/verify-code", {"code": other_code(code)}, format="json")
    assert wrong.status_code == 403
    error = error_of(wrong)
    assert error["code"] == "2FA_VERIFICATION_FAILED" and error["details"] == {"reason": "invalid", "email_code_attempts_left": 4}
    assert EmailOtp.objects.get(user=user).attempts == 1  # committed although the request failed

    ok = client.post("/api/v1/auth/2fa/verify-code", {"code": code}, format="json")
    assert ok.status_code == 200 and ok.json()["valid"] is True and ok.json()["method"] == "email"
    assert EmailOtp.objects.get(user=user).used_at is None  # checked, not spent
    assert twofactor_require(user=user, amount=BIG, currency="USD", code=code) == "email"


def test_http_2fa_endpoints_are_for_users_only(db):
    from accounts.orgs.services import api_key_create
    from tests.factories.accounts import OrganizationFactory

    _, secret = api_key_create(organization=OrganizationFactory(), name="k")
    key_client = APIClient()
    key_client.credentials(HTTP_X_API_KEY=secret)
    for method, path in [("get", "/api/v1/auth/2fa"), ("post", "/api/v1/auth/2fa/totp"), ("post", "/api/v1/auth/2fa/totp/confirm"),
                         ("post", "/api/v1/auth/2fa/send-code"), ("post", "/api/v1/auth/2fa/verify-code")]:
        response = getattr(key_client, method)(path, {"code": "123456"} if method == "post" else None, format="json")
        assert response.status_code == 403 and error_of(response)["code"] == "PERMISSION_DENIED", (path, response.content)
        anonymous = getattr(APIClient(), method)(path)
        assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "AUTHENTICATION_FAILED"
    assert not TotpDevice.objects.exists() and not EmailOtp.objects.exists()


def test_users_endpoints_refuse_organization_credentials(db):
    """The bug: /users/me and /users/{id} answered an API key with {"id": null}."""
    from accounts.orgs.services import api_key_create
    from tests.factories.accounts import OrganizationFactory

    user = UserFactory()
    _, secret = api_key_create(organization=OrganizationFactory(), name="k")
    key_client = APIClient()
    key_client.credentials(HTTP_X_API_KEY=secret)
    for path in ["/api/v1/users/me", f"/api/v1/users/{user.pk}"]:
        response = key_client.get(path)
        assert response.status_code == 403, response.content
        assert error_of(response)["code"] == "PERMISSION_DENIED"
        assert user_client(user).get(path).json()["id"] == user.pk
    change = key_client.post("/api/v1/users/me/password", {"current_password": "x", "new_password": "y"}, format="json")
    assert change.status_code == 403 and error_of(change)["code"] == "PERMISSION_DENIED"


def test_openapi_schema_lists_the_2fa_endpoints(api_client):
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200, response.content[:500]
    paths = json.loads(response.content)["paths"]
    for path in ["/api/v1/auth/2fa", "/api/v1/auth/2fa/totp", "/api/v1/auth/2fa/totp/confirm", "/api/v1/auth/2fa/send-code", "/api/v1/auth/2fa/verify-code"]:
        assert path in paths, path
    assert paths["/api/v1/auth/2fa/verify-code"]["post"]["responses"]["403"]


# --- One lock order (issue 12 item 12) ----------------------------------------------------------------------


def _enrol_and_confirm_over_http(user) -> list[int]:
    """One client's enrol then confirm (with a current code of the secret it was handed), twice;
    the statuses it got. A 500 (a deadlock, say) comes back as the exception or the status."""
    client = user_client(user)
    statuses = []
    for _ in range(2):
        enrol = client.post("/api/v1/auth/2fa/totp", {}, format="json")
        statuses.append(enrol.status_code)
        if enrol.status_code == 200:
            code = pyotp.TOTP(enrol.json()["secret"]).now()
            statuses.append(client.post("/api/v1/auth/2fa/totp/confirm", {"code": code}, format="json").status_code)
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_users_concurrent_enrols_and_confirms_never_deadlock():
    """The bug: enrol locked the user then the device, confirm the device then (through the audit
    row's foreign key to the user) the user: 83 of 160 requests were 500 (deadlock detected).
    Every 2FA writer now takes the user row first; each request is a 200, a 403 (the pending
    secret was replaced or the device was confirmed by a racing request) or a 409 (nothing left to
    confirm), never a 500."""
    for round_ in range(3):
        user = UserFactory()
        results = run_in_threads(12, lambda i: _enrol_and_confirm_over_http(user), timeout=120)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        statuses = [status for result in results for status in result]
        assert set(statuses) <= {200, 403, 409}, statuses
        assert 200 in statuses
    # (Which request confirms is the race's business: racing enrolments replace each other's
    # pending secret, and five failed confirmations lock the user's checks, so none may have.)


def _any_2fa_call_over_http(user, i: int) -> list[int]:
    """Thread i's share of a mix of every 2FA writer of one user: enrol + confirm, send-code,
    verify-code (and a step-up, which is a verify that spends)."""
    client = user_client(user)
    statuses = []
    for round_ in range(2):
        kind = (i + round_) % 3
        if kind == 0:
            statuses.extend(_enrol_and_confirm_over_http(user)[:2])
        elif kind == 1:
            statuses.append(client.post("/api/v1/auth/2fa/send-code").status_code)
        else:
            statuses.append(client.post("/api/v1/auth/2fa/verify-code", {"code": "123456"}, format="json").status_code)
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_users_concurrent_2fa_writers_of_every_kind_never_deadlock():
    """Enrol, confirm, send-code and verify-code of one user at once: all take the user row
    first, so none is a 500."""
    user = UserFactory()
    results = run_in_threads(12, lambda i: _any_2fa_call_over_http(user, i), timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    statuses = [status for result in results for status in result]
    assert set(statuses) <= {200, 202, 403, 409, 429}, statuses
    assert 202 in statuses and 200 in statuses
