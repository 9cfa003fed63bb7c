"""The models of `accounts` (one app label, `accounts`; tables as in the migrations): users and
their second factors, organizations with members and API keys, customers, webhooks."""

from accounts.models.customers import Customer
from accounts.models.orgs import ApiKey, Membership, Organization
from accounts.models.users import EmailOtp, RefreshTokenFamily, TotpDevice, User, UserManager
from accounts.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Customer",
    "EmailOtp",
    "Membership",
    "Organization",
    "RefreshTokenFamily",
    "TotpDevice",
    "User",
    "UserManager",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
