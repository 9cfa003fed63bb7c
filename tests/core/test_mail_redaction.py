"""E-mailed 2FA codes never reach a log (issue 12 item 4): the development backend, the default
when no sending backend is configured, writes mail to the console with the code and the address
redacted; the whole send -> outbox -> mail path logs neither, at any level."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.mail import EmailMessage, get_connection

from accounts.crypto import decrypt_secret
from accounts.identity.email_codes import email_otp_send
from accounts.identity.twofactor import EMAIL_CODE_TOPIC
from core.logging import RedactingFilter
from core.models import OutboxMessage
from core.outbox import handlers_for
from tests.factories.accounts import UserFactory

ROOT = Path(__file__).resolve().parents[2]
BACKEND = "core.mail.RedactingConsoleEmailBackend"


def test_local_settings_default_to_the_redacting_console_backend():
    env = {k: v for k, v in os.environ.items() if k not in ("EMAIL_URL", "EMAIL_BACKEND")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.EMAIL_BACKEND)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == BACKEND


def test_the_development_backend_redacts_codes_and_addresses():
    stream = io.StringIO()
    connection = get_connection(BACKEND, stream=stream)
    sent = EmailMessage(
        subject="Your Coffer verification code",
        body="Your Coffer verification code is 493817.\nOr enter code: 820 144 on the page. Amount 1234.50, order 42.",
        to=["jane.doe@example.com"], connection=connection,
    ).send()
    written = stream.getvalue()
    assert sent == 1
    assert "Subject: Your Coffer verification code" in written
    assert "493817" not in written and "820 144" not in written
    assert "jane.doe@example.com" not in written and "j***@example.com" in written
    assert "[REDACTED]" in written
    assert "1234.50" in written and "order 42" in written  # amounts and short numbers stay readable


@pytest.mark.django_db
def test_an_emailed_code_appears_in_no_log_and_no_console_output(settings, capfd, caplog):
    settings.EMAIL_BACKEND = BACKEND
    caplog.set_level(logging.DEBUG)  # every record, before any redaction: none may carry the code
    user = UserFactory(email="step.up.owner@example.com")
    otp = email_otp_send(user=user)
    message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC, key=f"email-otp-{otp.pk}")
    code = decrypt_secret(message.payload["code"])
    for handler in handlers_for(message.topic):
        handler(message)
    out, err = capfd.readouterr()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Your Coffer verification code" in out  # the mail was written...
    for text in (out, err, logged):
        assert code not in text  # ...without its code
        assert user.email not in text


def test_the_log_filter_masks_codes_in_prose():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "mail to %s: your verification code is %s", ("a.b@example.com", "123456"), None)
    RedactingFilter().filter(record)
    assert "123456" not in record.getMessage() and "a.b@example.com" not in record.getMessage()
