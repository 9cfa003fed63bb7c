"""Users: people who log in by email, and their second factors.

Invariants:
- `email` is unique and stored lower-case (UserManager); users are never deleted (they appear in
  the audit chain and own customers): deactivate instead.
- `failed_login_count` / `locked_until` are written only by the login service
  (accounts.identity.login), under the user's row lock.
- A TOTP secret is never stored in plain text (Fernet ciphertext, accounts.crypto); an e-mail
  code is stored only as a keyed HMAC-SHA256. A TOTP time step, once used, never verifies again
  for its device: `last_used_step` only grows, read and written under a row lock.
- A refresh-token family, once revoked, stays revoked (accounts.identity.tokens).
"""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
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
    # Failed-login throttling per account (see accounts.identity.login).
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


class RefreshTokenFamily(models.Model):
    """Every refresh token descended from one login (rotation keeps the family, in the token's
    `fam` claim). Revoking the family (logout, or a rotated token presented again: theft) kills
    all of them at once; `revoked_at` is set once and never cleared."""

    class Reason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        REUSE = "reuse", "A rotated refresh token was presented again"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="refresh_token_families")
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)

    class Meta:
        verbose_name = "refresh-token family"
        verbose_name_plural = "refresh-token families"
        indexes = [models.Index(fields=["user", "-created_at"], name="refresh_family_user")]

    def __str__(self) -> str:
        return f"refresh-token family {self.pk} of user {self.user_id}"
