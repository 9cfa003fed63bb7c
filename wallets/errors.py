"""Errors of the customer wallets API (SPEC 5 codes)."""

from core.errors import CofferError


class InvalidIban(CofferError):
    code, status = "INVALID_IBAN", 400
    default_message = "The IBAN is not valid (ISO 13616 length or mod-97 check)."


class InvalidBeneficiary(CofferError):
    code, status = "INVALID_BENEFICIARY", 400
    default_message = "The beneficiary is incomplete."
