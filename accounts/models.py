"""People and parties: users (log in by email), organizations (merchants and ledger-API clients)
with their members, and customers (the subject of KYC: a user's own profile, or a record an
organization upserts by its own external id)."""

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
