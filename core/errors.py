"""The one error base class. Apps raise subclasses; `core.exceptions` renders them as
`{"error": {"code", "message", "details"}}` with the status of SPEC section 5."""

from typing import Any


class CofferError(Exception):
    code = "VALIDATION_ERROR"
    status = 400
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(CofferError):
    code, status = "VALIDATION_ERROR", 400


class AuthenticationFailed(CofferError):
    code, status = "AUTHENTICATION_FAILED", 401
    default_message = "Authentication credentials were missing or not valid."


class PermissionDenied(CofferError):
    code, status = "PERMISSION_DENIED", 403
    default_message = "You are not allowed to do this."


class NotFound(CofferError):
    code, status = "NOT_FOUND", 404
    default_message = "Not found."


class InvalidState(CofferError):
    code, status = "INVALID_STATE", 409
    default_message = "This transition is not allowed from the current state."


class QuoteExpired(CofferError):
    """An exchange quote (wallets) or a pay order's quote or payment window (payorders) has passed."""

    code, status = "QUOTE_EXPIRED", 409
    default_message = "This quote has expired: ask for a new one."


class RateLimited(CofferError):
    code, status = "RATE_LIMITED", 429
    default_message = "Too many requests."


class IdempotencyKeyRequired(CofferError):
    code, status = "IDEMPOTENCY_KEY_REQUIRED", 400
    default_message = "This request moves money: send an Idempotency-Key header."


class IdempotencyKeyReused(CofferError):
    code, status = "IDEMPOTENCY_KEY_REUSED", 422
    default_message = "This Idempotency-Key was used with a different request."


class IdempotencyKeyInProgress(CofferError):
    code, status = "IDEMPOTENCY_KEY_IN_PROGRESS", 409
    default_message = "A request with this Idempotency-Key is still being processed."


class PayloadTooLarge(CofferError):
    code, status = "PAYLOAD_TOO_LARGE", 413

    def __init__(self, *, limit_bytes: int):
        super().__init__(
            f"The request body is larger than the limit of {limit_bytes} bytes.",
            details={"limit_bytes": limit_bytes},
        )


class ServiceUnavailable(CofferError):
    """The database, cache or broker cannot be reached: retry after `retry_after` seconds."""

    code, status = "SERVICE_UNAVAILABLE", 503

    def __init__(self, *, service: str, retry_after: int):
        super().__init__(
            f"The {service} is unavailable; retry in {retry_after} seconds.",
            details={"service": service, "retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def field_error(name: str, message: str, cls: type[CofferError] = ValidationFailed) -> CofferError:
    """The one field-error helper: an error about one input field, `"<name>: <message>"`, with
    `details.fields` naming it (400 VALIDATION_ERROR unless `cls` says otherwise)."""
    return cls(f"{name}: {message}", details={"fields": {name: [message]}})


def fields_error(fields: dict[str, list[str]], message: str | None = None) -> ValidationFailed:
    """Errors about several input fields (a form's), the message naming the first."""
    first_field, errors = next(iter(fields.items()))
    return ValidationFailed(message or f"Invalid input: {first_field}: {errors[0]}", details={"fields": fields})
