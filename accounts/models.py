"""People and parties: users (log in by email), organizations (merchants and ledger-API clients)
with their members, and customers (the subject of KYC: a user's own profile, or a record an
organization upserts by its own external id)."""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> "User":
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Failed-login throttling per account (see accounts.services.user_authenticate).
    failed_login_count = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    members = models.ManyToManyField(User, through="Membership", related_name="organizations")
    # The money path's controls for this organization's customers (SPEC 4): limits by KYC
    # level, and the risk rules. Sanctions screening of external beneficiaries and refund
    # destinations applies whatever these say.
    limits_enabled = models.BooleanField(default=True, help_text="Apply the KYC-level limits to this organization's customers.")
    risk_rules_enabled = models.BooleanField(default=True, help_text="Screen this organization's customers' movements with the risk rules.")
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "external_id"],
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


# --- Organization API access: keys and webhooks ----------------------------------------------------
# Invariants: an API key's secret is never stored in plain text (`secret_hash` is a keyed
# HMAC-SHA256 for the X-API-Key lookup; `secret_encrypted` is Fernet ciphertext, needed because
# the signature schemes verify with the secret itself). A webhook endpoint's signing secret is
# kept encrypted the same way. Webhook deliveries are the outbox of webhook events: written in the
# same database transaction as the change they announce, delivered after commit.


class ApiKey(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    key_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    secret_encrypted = models.TextField()
    secret_prefix = models.CharField(max_length=12, help_text="The first characters of the secret, to recognise it.")
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


class WebhookEndpoint(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text='Event names, "<namespace>.*", or "*" for all.')
    description = models.CharField(max_length=500, blank=True)
    secret_encrypted = models.TextField()
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Deleting keeps the row (its deliveries and attempts stay as history) but hides it everywhere.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, event_type: str) -> bool:
        for pattern in self.events:
            if pattern == "*" or pattern == event_type:
                return True
            if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
                return True
        return False


class WebhookDelivery(models.Model):
    """One event for one endpoint. `id` is the stable `webhook-id` of every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due"),
            models.Index(fields=["organization", "-created_at"], name="webhook_delivery_org"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.endpoint_id} ({self.status})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    url = models.URLField(max_length=2000)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, help_text="At most 1 KB of the response body.")
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"attempt {self.pk} of {self.delivery_id}"


# --- Two-factor step-up (accounts.twofactor) ---------------------------------------------------------
# Invariants: a TOTP secret is never stored in plain text (Fernet ciphertext, accounts.crypto); an
# e-mail code is stored only as a keyed HMAC-SHA256. A TOTP time step, once used, never verifies
# again for that device: `last_used_step` only grows, and it is read and written under a row lock.


class TotpDevice(models.Model):
    """A user's authenticator app. `secret_encrypted` is the confirmed secret (empty until the
    first confirmation); `pending_secret_encrypted` is a secret handed out by enrolment and not yet
    confirmed. Re-enrolling a confirmed device keeps the old secret working until the new one is
    confirmed, so an abandoned re-enrolment never leaves the user without their second factor."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="totp_device")
    secret_encrypted = models.TextField(blank=True, default="")
    pending_secret_encrypted = models.TextField(blank=True, default="")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_step = models.BigIntegerField(null=True, blank=True, help_text="The newest TOTP time step accepted; older and equal steps are refused.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "TOTP device"

    def __str__(self) -> str:
        return f"TOTP device of user {self.user_id}"

    @property
    def is_confirmed(self) -> bool:
        return bool(self.secret_encrypted) and self.confirmed_at is not None


class EmailOtp(models.Model):
    """A one-time code sent by e-mail. Only the newest code of a user counts; it is valid until
    `expires_at`, for at most `TWO_FACTOR_EMAIL_MAX_ATTEMPTS` wrong guesses, and once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_otps")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "e-mail one-time code"
        indexes = [models.Index(fields=["user", "-created_at"], name="email_otp_user_latest")]

    def __str__(self) -> str:
        return f"e-mail code {self.pk} of user {self.user_id}"
