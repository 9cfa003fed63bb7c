"""Errors of pay orders (rendered by core.exceptions as {"error": {"code", "message", "details"}})."""

from core.errors import CofferError, InvalidState, NotFound, ValidationFailed

__all__ = [
    "DepositKeyMissing",
    "GapLimitReached",
    "PayOrderNotFound",
    "PayOrderInvalidState",
    "QuoteNotFound",
    "PaymentMismatch",
    "TransactionAlreadyUsed",
    "TransactionUnknown",
    "RefundNotFound",
    "NothingToRefund",
]


class DepositKeyMissing(CofferError):
    code, status = "DEPOSIT_KEY_MISSING", 409
    default_message = "The organization has no extended public key registered for this chain."


class GapLimitReached(CofferError):
    """Every address the merchant's wallet would still scan is unused and none can be reused yet."""

    code, status = "GAP_LIMIT_REACHED", 409
    default_message = "No deposit address can be issued within the wallet's gap limit right now; try again later."

    def __init__(self, message: str | None = None, *, key_id: int, **kwargs):
        super().__init__(message, **kwargs)
        self.key_id = key_id


class PayOrderNotFound(NotFound):
    default_message = "No such pay order."


class PayOrderInvalidState(InvalidState):
    default_message = "This is not allowed in the pay order's current state."


class QuoteNotFound(NotFound):
    default_message = "No such quote for this pay order."


class TransactionUnknown(CofferError):
    """The chain does not know the hash (yet): 404 so the caller can retry once it propagates."""

    code, status = "TRANSACTION_NOT_FOUND", 404
    default_message = "The chain does not know this transaction."


class PaymentMismatch(ValidationFailed):
    """The transaction exists but does not pay this order (recipient, asset or status)."""

    code, status = "PAYMENT_MISMATCH", 422
    default_message = "This transaction does not pay this order."


class TransactionAlreadyUsed(CofferError):
    code, status = "TRANSACTION_ALREADY_USED", 409
    default_message = "This transaction has already been used for a payment."


class RefundNotFound(NotFound):
    default_message = "No such refund for this pay order."


class NothingToRefund(InvalidState):
    default_message = "There is nothing to refund on this pay order."
