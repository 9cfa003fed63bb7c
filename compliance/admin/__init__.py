"""The compliance back office (SPEC 8): the audit log (read-only, "Verify chain", every row's
actor: a user, an API key or the system, filterable), fee/limit rules, risk rules edited as one
form per kind with a 7-day preview, sanctions lists (OFAC SDN, OpenSanctions, CSV; screening hits,
the whitelist), the review queue as a work queue with approve/reject on the case page and
four-eyes, and customers' KYC levels changed with a reason and kept as a history.

Writers are services: review decisions go through `review_approve` / `review_reject` (which call
the ledger's posting engine), KYC changes through `customer_kyc_set`, sanctions through
`compliance.sanctions`; rule edits are ordinary admin saves, audited by `AuditedAdmin`."""

# Each module registers its models with the admin site; importing this package (Django's admin
# autodiscovery) registers them all. `customers` extends the customer admin `accounts` registered.
from compliance.admin import audit, customers, reviews, rules, sanctions
from compliance.admin.audit import audit_actor_display

__all__ = ["audit", "audit_actor_display", "customers", "reviews", "rules", "sanctions"]
