"""Development e-mail: written to the console with every secret redacted.

The default backend when no sending backend is configured (`EMAIL_URL`, `EMAIL_BACKEND`): a
local run shows that a mail went out, to whom (masked) and about what, but never the one-time
codes, tokens or full addresses in it, because the console is the web and worker log. The text is
rebuilt from the message's fields (not its MIME bytes, which may be quoted-printable or base64)
and passed through `core.logging.redact`, then every bare 6-8 digit number (a one-time code) is
masked as well. Production refuses this backend (config/settings/production.py)."""

import re
import sys
import threading

from django.core.mail.backends.base import BaseEmailBackend

from core.logging import MASK, redact

_CODE = re.compile(r"(?<![\d.,])\d{6,8}(?![\d.,]\d)")


def redact_mail_text(text: str) -> str:
    return _CODE.sub(MASK, redact(text))


class RedactingConsoleEmailBackend(BaseEmailBackend):
    def __init__(self, *args, stream=None, **kwargs):
        self.stream = stream or sys.stdout
        self._lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def _render(self, message) -> str:
        lines = [
            f"From: {message.from_email}",
            f"To: {', '.join(message.to)}",
            *([f"Cc: {', '.join(message.cc)}"] if message.cc else []),
            f"Subject: {message.subject}",
            "",
            message.body,
            *(f"[alternative {mimetype}: not shown]" for _, mimetype in getattr(message, "alternatives", [])),
            *("[attachment: not shown]" for _ in message.attachments),
        ]
        return redact_mail_text("\n".join(lines))

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        with self._lock:
            for message in email_messages:
                self.stream.write(f"{self._render(message)}\n{'-' * 79}\n")
                self.stream.flush()
        return len(email_messages)
