"""Customers: the subject of KYC and limits.

Invariants:
- Exactly one of `user` (a person's own profile, created with the user at signup) or
  `organization` + `external_id` (a record the organization upserts by its own id); the
  database checks it, and `external_id` is unique per organization and mode.
- An organization's customers are per mode (core.livemode): `external_id` is unique per
  (organization, livemode).
- Customers are never deleted (ledger rows, reviews and pay orders point at them).
"""

from django.db import models
from django.db.models import Q

from accounts.models.orgs import Organization
from accounts.models.users import User
from core.livemode import deployment_livemode


class Customer(models.Model):
    """The subject of KYC and limits. Exactly one of `user` (a person's own profile) or
    `organization` + `external_id` (a record an organization keeps by its own id)."""

    class KycLevel(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "Basic"
        VERIFIED = "verified", "Verified"
        ENHANCED = "enhanced", "Enhanced"

    class RiskStatus(models.TextChoices):
        NORMAL = "normal", "Normal"
        WATCH = "watch", "Watch"
        BLOCKED = "blocked", "Blocked"

    user = models.OneToOneField(User, null=True, blank=True, on_delete=models.PROTECT, related_name="customer")
    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=200, blank=True, default="")
    name = models.CharField(max_length=300, blank=True)
    email = models.EmailField(blank=True)
    kyc_level = models.CharField(max_length=16, choices=KycLevel.choices, default=KycLevel.NONE)
    risk_status = models.CharField(max_length=16, choices=RiskStatus.choices, default=RiskStatus.NORMAL)
    metadata = models.JSONField(default=dict, blank=True)
    # Test mode (core.livemode): a test key's customers are their own rows, apart from the live
    # ones (the same external id may name one of each), so their usage never counts toward live limits.
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode customer (a test key's, or any on the sandbox).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "livemode", "external_id"],
                condition=Q(organization__isnull=False),
                name="customer_external_id_unique_per_org",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=False, organization__isnull=True)
                | Q(user__isnull=True, organization__isnull=False),
                name="customer_belongs_to_user_or_org",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id or f"customer {self.pk}"
