"""A logging filter that masks secrets in every record: passwords, tokens, API and webhook
secrets, full IBANs and email addresses. Installed on the root handler by `config.settings`.

The message is rendered once (`record.getMessage()`), masked, and stored back with no args, so
neither the format string nor its arguments can leak a secret to any handler."""

import logging
import re

MASK = _MASK = "[REDACTED]"

_SECRET_KEY_NAMES = (
    r"pass(?:word|wd|phrase)?|secret|token|api[_-]?key|authorization|otp|2fa[_-]?code|"
    r"signature|private[_-]?key|cookie|session(?:id)?"
)

_PATTERNS: list[tuple[re.Pattern[str], object]] = [
    # key=value, "key": "value", 'key': 'value' and \"key\": \"value\" (JSON inside a string)
    # whose key names a secret (also with a prefix: new_password, client_secret, HTTP_X_API_KEY).
    # A quoted value is masked up to its closing quote, spaces included.
    (
        re.compile(
            r"""(?ix)
            (?P<key>(?P<kq>\\?["']?)[\w-]*(?:"""
            + _SECRET_KEY_NAMES
            + r""")(?P=kq)\s*[:=]\s*)
            (?P<val>
                \\"(?:[^"\\]|\\[^"])*\\"
              | "(?:[^"\\]|\\.)*"
              | '(?:[^'\\]|\\.)*'
              | (?:(?:Bearer|Basic|Token)\s+)?[^\s"',;}&]+
            )
            """
        ),
        lambda m: f"{m.group('key')}{_mask_value(m.group('val'))}",
    ),
    # one-time codes in prose: "your verification code is 123456", "code: 123 456"
    (re.compile(r"(?i)\b(code\s*(?:is\s*|[:=]\s*))\d(?:[\d -]{2,14})\d\b"), lambda m: f"{m.group(1)}{_MASK}"),
    # bearer tokens and JWTs wherever they appear
    (re.compile(r"(?i)\bBearer\s+[A-Za-z0-9\-_.=+/~]+"), f"Bearer {_MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), _MASK),
    # our own secret formats (sk_live_..., whsec_<base64>)
    (re.compile(r"\b(sk|whsec)_[A-Za-z0-9_\-+/=]{8,}"), lambda m: f"{m.group(1)}_{_MASK}"),
    # IBANs: keep the country code and the last four characters
    (
        re.compile(r"\b([A-Z]{2})(\d{2}(?:\s?[A-Z0-9]){10,30})\b"),
        lambda m: _mask_iban(m.group(1), m.group(2)),
    ),
    # emails: keep the first character and the domain
    (re.compile(r"\b([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})\b"), r"\1***@\2"),
]


def _mask_value(value: str) -> str:
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return f"{quote}{_MASK}{quote}"
    return _MASK


def _mask_iban(country: str, rest: str) -> str:
    compact = "".join(rest.split())
    return f"{country}{'*' * (len(compact) - 4)}{compact[-4:]}"


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
