"""Plumbing tables every app shares.

`IdempotencyRecord`
    The stored outcome of a money-moving request (SPEC 5, invariant 6). One row per
    (caller scope, endpoint, key). The guard against running a request twice, whatever Redis
    says, is the database: the key's advisory lock and a lookup made after it (core.idempotency),
    with UNIQUE (scope, endpoint, key, period) behind them within a month. On PostgreSQL the table
    is partitioned by month (`period`, core 0003) and a month is dropped whole once every record in
    it has expired. The row is written in the same database transaction as the money the request
    moved, so either both exist or neither does. Only 2xx and 4xx outcomes are stored; a 5xx rolls
    everything back and the client may retry.

`OutboxMessage`
    A side effect that leaves the database (webhook delivery, payout send or status check,
    e-mail, settlement kick), written in the transaction that caused it and run after commit by
    the one dispatcher of `core.outbox`: claimed with a lease (`lease_owner`, `lease_expires_at`,
    committed), handled with no database transaction open, then recorded in a new short
    transaction: `done`, or retried at `next_attempt_at` (one backoff policy), or `dead` after the
    maximum attempts or age (the admin re-queues it). While a message is leased,
    `next_attempt_at` is the lease's expiry, so a killed worker's message simply falls due again.
    A handler can run more than once (a crash between its outside call and the record), so
    every handler is idempotent.
    On PostgreSQL the table is partitioned by month of `created_at` (core migration 0004,
    `ledger.partitions`): its primary key is (id, created_at), `id` still unique (one sequence),
    and the (topic, key) guard lives in `OutboxKey`. Django keeps `id` as the model's primary key
    and `outbox_message_unique_key` in the model's state: that index exists on SQLite only.

`OutboxKey`
    The claim of a keyed message's (topic, key), unpartitioned so the guard stays global across
    months (a partitioned unique index would have to contain `created_at`). PostgreSQL only: a
    BEFORE INSERT trigger on the messages writes it in the message's own INSERT and skips the
    message (no row, no error) when the key is taken; an AFTER DELETE trigger removes it with its
    message (the purge), and dropping a month deletes that month's keys (core.outbox). Keyed
    messages are written by `outbox_emit` / `outbox_message`, which read the skip as "exists": an
    ORM `create()` of a taken key gets no row back and fails (TypeError), not IntegrityError. On
    SQLite the table stays empty and the plain unique index guards.
"""

from datetime import date

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


def this_month() -> date:
    """The first day of the current UTC month (`IdempotencyRecord.period`)."""
    now = timezone.now()
    return date(now.year, now.month, 1)


class IdempotencyRecord(models.Model):
    scope = models.CharField(max_length=100, help_text="The caller: 'user:<id>' or 'org:<id>'.")
    endpoint = models.CharField(max_length=100, help_text="Logical endpoint name, e.g. 'deposits.create'.")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and canonical body.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField(help_text="The response body exactly as first sent (JSON).")
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    # The month of created_at (UTC): the partition key on PostgreSQL (core 0003). Within a month
    # the unique constraint below is the last guard; across months it is the claim's advisory
    # lock and fresh-snapshot lookup (core.idempotency, "Concurrency").
    period = models.DateField(default=this_month, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "endpoint", "key", "period"], name="idempotency_record_unique_key_month"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.endpoint} {self.key} -> {self.response_status}"


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        DEAD = "dead", "Dead (gave up)"

    topic = models.CharField(max_length=200, db_index=True)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbox_messages"
    )
    # Optional de-duplication key: a second emit with the same (topic, key) returns the first row.
    key = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(help_text="When a dispatcher may claim it next (the lease expiry while leased).")
    attempts = models.PositiveIntegerField(default=0, help_text="Claims so far (a claim whose worker died counts).")
    last_error = models.TextField(blank=True, default="")
    lease_owner = models.CharField(max_length=100, blank=True, default="", help_text="The dispatcher running it now.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True, help_text="Gave up after the maximum attempts or age.")

    class Meta:
        ordering = ["id"]
        constraints = [
            # On PostgreSQL this index does not exist (the table is partitioned): OutboxKey guards.
            models.UniqueConstraint(fields=["topic", "key"], condition=~Q(key=""), name="outbox_message_unique_key"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="outbox_message_due"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} #{self.pk} ({self.status})"


class OutboxKey(models.Model):
    pk = models.CompositePrimaryKey("topic", "key")
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)
    message_id = models.BigIntegerField(help_text="The OutboxMessage that holds the key.")
    message_created_at = models.DateTimeField(help_text="Its created_at: its partition.")

    def __str__(self) -> str:
        return f"{self.topic} {self.key} -> #{self.message_id}"
