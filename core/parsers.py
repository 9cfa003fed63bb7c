"""JSON parsing that keeps numbers exact and refuses hostile bodies before they cost anything.

- JSON numbers become `Decimal`, never `float`; NaN and Infinity are refused.
- A body nested deeper than `MAX_JSON_DEPTH` arrays/objects is refused before `json.loads` runs
  (a 10,000-deep body would otherwise exhaust the interpreter's recursion limit): a 400
  `VALIDATION_ERROR`. `RecursionError` is caught as well, whatever gets past the count.
- A body longer than `settings.DATA_UPLOAD_MAX_MEMORY_SIZE` is refused while it is read, so a
  chunked upload with no Content-Length cannot grow past the limit either: a 413
  `PAYLOAD_TOO_LARGE` (`core.middleware.ApiBodyLimitMiddleware` refuses a declared length first).
"""

import json
import re
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.errors import PayloadTooLarge

# Deep enough for any body the API takes (metadata included), far below the recursion limit.
MAX_JSON_DEPTH = 32

# A JSON string (escapes included): brackets inside strings do not nest anything.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON value")


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `text` opens more than `limit` arrays/objects inside one another (linear scan)."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def read_limited(stream, limit: int) -> bytes:
    """The whole body, or `PayloadTooLarge` as soon as it is longer than `limit` bytes."""
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(limit_bytes=limit)
    return data


def json_loads_capped(text: str | bytes, **kwargs):
    """`json.loads` for request bodies outside DRF (e.g. the checkout page's script): nesting past
    `MAX_JSON_DEPTH` is a `ValueError` like any other malformed JSON, never a RecursionError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if json_depth_exceeds(text):
        raise ValueError(f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError(f"the body is nested more than {MAX_JSON_DEPTH} levels deep") from None


def _nesting_error() -> ParseError:
    return ParseError(f"JSON parse error: the body is nested more than {MAX_JSON_DEPTH} levels deep.")


class DecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = read_limited(stream, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error: {exc}") from exc
        if json_depth_exceeds(text):
            raise _nesting_error()
        try:
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except RecursionError:
            raise _nesting_error() from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error: {exc}") from exc
