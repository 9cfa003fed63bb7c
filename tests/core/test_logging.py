"""Redaction, tested through the handler the settings install: a real logger, the configured
`console` handler with its `redact` filter, its real formatter, and the line it writes."""

import io
import logging

import pytest

from core.logging import RedactingFilter, redact


@pytest.fixture
def console_line():
    """Log through the configured console handler and return what it wrote."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.get_name() == "console")
    assert any(isinstance(f, RedactingFilter) for f in handler.filters), "console handler must carry the redaction filter"
    stream = io.StringIO()
    old_stream = handler.setStream(stream)
    logger = logging.getLogger("coffer.tests.redaction")
    old_level = root.level
    root.setLevel(logging.INFO)

    def emit(msg, *args, **kwargs):
        stream.truncate(0)
        stream.seek(0)
        logger.info(msg, *args, **kwargs)
        return stream.getvalue()

    yield emit
    handler.setStream(old_stream)
    root.setLevel(old_level)


def test_console_handler_is_installed_on_root_and_django():
    assert "console" in [h.get_name() for h in logging.getLogger().handlers]
    assert "console" in [h.get_name() for h in logging.getLogger("django").handlers]


@pytest.mark.parametrize(
    "message, secret",
    [
        ("login password=hunter2-secret ok", "hunter2-secret"),
        ('body {"email_x": 1, "password": "two words secret"}', "two words secret"),
        ("{'new_password': 'my new pass', 'current_password': 'old pass'}", "my new pass"),
        ("{'new_password': 'my new pass', 'current_password': 'old pass'}", "old pass"),
        ('raw "{\\"password\\": \\"escaped secret\\"}"', "escaped secret"),
        ("headers Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("got token eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl in a sentence", "eyJhbGciOiJIUzI1NiJ9"),
        ("refresh_token=eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2ln", "eyJ1c2VyX2lkIjoxfQ"),
        ("api key sk_live_4eC39HqLyjWDarjtT1zdp7dc used", "4eC39HqLyjWDarjtT1zdp7dc"),
        ("X-API-Key: coffer_abcdef123456", "coffer_abcdef123456"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+ab/cd== rotated", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+ab/cd== rotated", "+ab/cd=="),
        ("client_secret=abc123xyz&grant_type=client_credentials", "abc123xyz"),
        ("X-2FA-Code: 654321", "654321"),
        ("{'HTTP_COOKIE': 'sessionid=s3ss10n; csrftoken=abc'}", "s3ss10n"),
    ],
)
def test_secrets_never_reach_the_log_line(console_line, message, secret):
    line = console_line(message)
    assert secret not in line
    assert "[REDACTED]" in line
    assert "coffer.tests.redaction" in line  # the formatter ran: this is the real line


def test_ibans_keep_country_and_last_four(console_line):
    line = console_line("payout to DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432 done")
    assert "3704 0044" not in line and "WEST1234569876" not in line
    assert "DE****************3000 and" in line
    assert "GB****************5432 done" in line


def test_emails_are_masked(console_line):
    line = console_line("signup for jane.doe@example.com from %s", "203.0.113.9")
    assert "jane.doe@example.com" not in line and "jane.doe" not in line
    assert "j***@example.com" in line and "203.0.113.9" in line


def test_arguments_are_redacted_not_just_the_format_string(console_line):
    line = console_line("user %s sent %s", "jane@example.com", {"password": "argument secret"})
    assert "argument secret" not in line and "jane@example.com" not in line


def test_exception_tracebacks_are_redacted(console_line):
    logger = logging.getLogger("coffer.tests.redaction")
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    old = handler.setStream(stream)
    try:
        try:
            raise ValueError("bad login for bob@example.com with password=tr4ceback")
        except ValueError:
            logger.exception("failed")
    finally:
        handler.setStream(old)
    text = stream.getvalue()
    assert "Traceback" in text and "ValueError" in text
    assert "tr4ceback" not in text and "bob@example.com" not in text


def test_ordinary_lines_are_untouched(console_line):
    line = console_line("transfer %s of %s USD from wallet %d", "tx_123", "100.50", 7)
    assert "transfer tx_123 of 100.50 USD from wallet 7" in line
    assert redact("tokens_count=5 passes=3") == "tokens_count=5 passes=3"


def test_redaction_is_idempotent():
    once = redact('password="a b" jane@example.com DE89370400440532013000 Bearer xyz')
    assert redact(once) == once
