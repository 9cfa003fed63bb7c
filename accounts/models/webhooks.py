"""Webhook endpoints, deliveries and attempts of organizations (the engine: accounts.webhooks).

Invariants:
- An endpoint's signing secret is kept Fernet-encrypted, never in plain text. A deleted endpoint
  keeps its row (`deleted_at`) so its deliveries and attempts stay as history.
- A disabled endpoint says when (`disabled_at`) and why (`disabled_reason`: the organization did
  it, or the receiver answered 410 Gone; `disabled_detail` in words); enabling clears all three.
- A delivery is one event for one endpoint, written in the same database transaction as the
  change it announces and delivered after commit; its `id` is the `webhook-id` of every attempt.
- Every attempt is a row (WebhookAttempt); attempts are history, never edited.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models.orgs import Organization
from accounts.models.users import User
from core.livemode import deployment_livemode


class WebhookEndpoint(models.Model):
    class DisabledReason(models.TextChoices):
        ORGANIZATION = "organization", "Disabled by the organization"
        GONE = "gone", "The endpoint answered 410 Gone"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text='Event names, "<namespace>.*", or "*" for all.')
    description = models.CharField(max_length=500, blank=True)
    secret_encrypted = models.TextField()
    is_enabled = models.BooleanField(default=True)
    # Test mode (core.livemode): a test key's endpoints get the test-mode events, a live key's the live ones.
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode endpoint: it receives only test-mode events.")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True, default="")
    disabled_detail = models.CharField(max_length=500, blank=True, default="")
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
