"""Webhook endpoints, deliveries and attempts of organizations (the engine: accounts.webhooks).

Invariants:
- An endpoint's signing secret is kept Fernet-encrypted, never in plain text. A deleted endpoint
  keeps its row (`deleted_at`) so its deliveries and attempts stay as history.
- A disabled endpoint says when (`disabled_at`) and why (`disabled_reason`: the organization did
  it, or the receiver answered 410 Gone; `disabled_detail` in words); enabling clears all three.
- A delivery is one event for one endpoint, written in the same database transaction as the
  change it announces and delivered after commit; its `id` is the `webhook-id` of every attempt.
- Every attempt is a row (WebhookAttempt); attempts are history, never edited.

Partitioned by month on PostgreSQL (issue 15 item 3; migration 0011, docs/deploy.md
"Partitioned history"; on SQLite two plain tables):
- `accounts_webhookdelivery` by RANGE (created_at), primary key (id, created_at); its id is a
  UUIDv7 (`delivery_id_at`) carrying `created_at` to the microsecond, and `created_at` is set from
  it on insert (`DeliveryCreatedAtField`), so the id alone names the delivery's month:
  `WebhookDelivery.objects.of_id(id)` reads one partition. Ids of before the partitioning are
  UUIDv4 (kept as they were): those are looked up in every partition.
- `accounts_webhookattempt` by RANGE (delivery_created_at), the month of its delivery, not of the
  attempt: a delivery and its attempts live and go in the same month. The reference is a
  composite foreign key (delivery_id, delivery_created_at) -> (id, created_at) ON DELETE CASCADE
  declared by the migration; Django's ForeignKey stays for the ORM (`db_constraint=False`).
- Django's UPDATE of a saved delivery names its month (`_do_update`); a month past
  WEBHOOK_DELIVERY_RETENTION_DAYS is dropped whole (accounts.webhooks.retention).
"""

import os
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

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


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def delivery_id_at(moment: datetime) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) for a delivery created at `moment`: 48 bits of Unix milliseconds, the
    version, 12 bits holding the microseconds within the millisecond (0-999: RFC 9562 6.2 method
    3, the finer clock), the variant and 62 random bits. Time-ordered like any UUIDv7, and exact
    to the microsecond, as PostgreSQL's timestamps are: `delivery_created_at` gives `moment` back."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    millis, within = divmod(micros, 1000)
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=(millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | within << 64 | 0b10 << 62 | random_bits)


def new_delivery_id() -> uuid.UUID:
    return delivery_id_at(timezone.now())


def delivery_created_at(delivery_id) -> datetime | None:
    """The creation time a delivery's id carries (`delivery_id_at`); None for an id that carries
    none (a UUIDv4 of before the partitioning, or not a UUID at all)."""
    try:
        value = delivery_id if isinstance(delivery_id, uuid.UUID) else uuid.UUID(str(delivery_id))
    except ValueError:
        return None
    within = (value.int >> 64) & 0xFFF
    if value.version != 7 or within >= 1000:
        return None
    return _EPOCH + timedelta(milliseconds=value.int >> 80, microseconds=within)


class DeliveryCreatedAtField(models.DateTimeField):
    """A delivery's `created_at`: on insert, the instant its id carries, so the id names the
    delivery's partition (an explicit id without one, e.g. a UUIDv4: the given value, else now).
    Never changed afterwards."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("editable", False)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def pre_save(self, model_instance, add):
        if not add:
            return super().pre_save(model_instance, add)
        value = delivery_created_at(model_instance.pk) or getattr(model_instance, self.attname) or timezone.now()
        setattr(model_instance, self.attname, value)
        return value


class WebhookDeliveryQuerySet(models.QuerySet):
    def of_id(self, delivery_id, created_at: datetime | None = None) -> "WebhookDeliveryQuerySet":
        """The delivery `delivery_id` in its month's partition only: by `created_at` when the
        caller has it, else the time its id carries. An id of before the partitioning (UUIDv4)
        is looked up in every partition (one index probe each)."""
        created_at = created_at or delivery_created_at(delivery_id)
        found = self.filter(pk=delivery_id)
        return found if created_at is None else found.filter(created_at=created_at)


class WebhookDelivery(models.Model):
    """One event for one endpoint. `id` is the stable `webhook-id` of every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=new_delivery_id, editable=False)
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
    created_at = DeliveryCreatedAtField()  # the partition key (PostgreSQL): the instant the id carries
    updated_at = models.DateTimeField(auto_now=True)

    objects = WebhookDeliveryQuerySet.as_manager()

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

    def attempts_in_partition(self) -> models.QuerySet:
        """Its attempts, read from its month's partition only (`self.attempts` filters by the
        delivery's id alone: one probe per month on PostgreSQL)."""
        return self.attempts.filter(delivery_created_at=self.created_at)

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        # Django's save() updates WHERE id = ...; with the partition key too, PostgreSQL touches
        # one month's partition instead of probing each (created_at never changes after insert).
        if self.created_at is not None:
            base_qs = base_qs.filter(created_at=self.created_at)
        return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)


class WebhookAttempt(models.Model):
    # The database's reference is (delivery_id, delivery_created_at) -> the delivery's (id,
    # created_at), ON DELETE CASCADE (migration 0011, PostgreSQL): a single-column constraint
    # cannot point at a table whose rows are unique only with their month.
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts", db_constraint=False)
    delivery_created_at = models.DateTimeField(editable=False, help_text="The delivery's created_at: the partition key (PostgreSQL).")
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

    def save(self, *args, **kwargs):
        if self.delivery_created_at is None and self.delivery_id is not None:
            self.delivery_created_at = self.delivery.created_at
        super().save(*args, **kwargs)
