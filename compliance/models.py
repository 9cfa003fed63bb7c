"""The audit chain: an append-only, hash-chained log of everything that matters.

Invariants (SPEC 4.5, 8):
- Rows are only ever inserted, by `compliance.services.audit_record` (or its private helper);
  the database refuses UPDATE and DELETE (a trigger installed by migration 0002).
- `hash` = SHA-256 over the canonical JSON of the event's fields and `prev_hash`
  (`compliance.services.audit_event_hash`); the first event links to `GENESIS_HASH`.
- Chain order is id order: appends are serialised (an advisory lock on PostgreSQL, IMMEDIATE
  transactions on SQLite), so ids are allocated in the order events join the chain.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # PROTECT: a user who appears in the chain cannot be deleted (deactivate them instead);
    # nulling the column would be an UPDATE, which the chain refuses anyway.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=254, blank=True, default="")
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True, default="", db_index=True)
    target_id = models.CharField(max_length=100, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="auditevent_target_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor_label or 'system'}"
