"""Organizations (merchants and ledger-API clients), their members and their API keys.

Invariants:
- One membership per (organization, user); its role (owner, developer, viewer) decides what a
  member may do (accounts.orgs.tenancy).
- An API key's secret is never stored in plain text: `secret_hash` is a keyed HMAC-SHA256 for
  the X-API-Key lookup; `secret_encrypted` is Fernet ciphertext, needed because the signature
  schemes verify with the secret itself. A revoked key (`revoked_at` set) never authenticates.
- A key's `scopes` (a list of accounts.orgs.scopes.SCOPES names) bound every request made with it.
- Keys are written only by accounts.orgs.services (which audits every creation and revocation).
"""

from django.db import models

from accounts.models.users import User


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    members = models.ManyToManyField(User, through="Membership", related_name="organizations")
    # The money path's controls for this organization's customers (SPEC 4): limits by KYC
    # level, and the risk rules. Sanctions screening of external beneficiaries and refund
    # destinations applies whatever these say.
    limits_enabled = models.BooleanField(default=True, help_text="Apply the KYC-level limits to this organization's customers.")
    risk_rules_enabled = models.BooleanField(default=True, help_text="Screen this organization's customers' movements with the risk rules.")
    # What the merchant is paid in: the dashboard's new-order form prices in it by default, and
    # the overview opens on it.
    settlement_currency = models.CharField(
        max_length=16, default="USD",  # a platform currency: checked by the admin form (accounts.admin), not here (models sit below the ledger)
        help_text="The currency this organization settles in (a platform currency code, e.g. USD).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        DEVELOPER = "developer", "Developer"
        VIEWER = "viewer", "Viewer"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")]


def default_api_key_scopes() -> list[str]:
    return ["read"]  # accounts.orgs.scopes.DEFAULT_SCOPES


class ApiKey(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    key_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    secret_encrypted = models.TextField()
    secret_prefix = models.CharField(max_length=12, help_text="The first characters of the secret, to recognise it.")
    scopes = models.JSONField(default=default_api_key_scopes, help_text="What the key may do (accounts.orgs.scopes); least privilege by default.")
    livemode = models.BooleanField(
        default=True, help_text="False for a test key: it creates and sees only test-mode pay orders (sandbox chain, testnet URIs)."
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.key_id

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
