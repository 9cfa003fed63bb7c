"""Withdrawal payouts and currency-exchange quotes of the customer wallets API.

Invariants:
- A `Payout` belongs to exactly one ledger transaction (one-to-one) of type `withdrawal`, left
  `pending` with its amount + fee on hold by `ledger.posting.ledger_hold_pending` in the same
  database transaction that creates the payout and its `payout.send` outbox row. Its status
  machine (django-fsm, `ConcurrentTransitionMixin`, rows locked FOR UPDATE by the services) is
      pending -> sending -> sent -> completed | failed;  sending -> failed;  in_review -> pending | cancelled
  `sending` is the committed claim of a send: the provider is called after it, with no database
  transaction open, and the result is recorded in a new short transaction (a crash in between
  leaves it `sending`, and the outbox sends it again with the same reference).
  and the ledger follows it exactly once: `completed` posts the held transaction
  (`ledger_complete_pending`), `failed` releases the holds (`ledger_fail_pending`). `reference`
  is unique and is the idempotency key towards the payout provider, so a resent payout cannot
  pay twice.
- The beneficiary (name, IBAN or account) of a payout or a schedule is stored only encrypted under
  the field keys, beside a masked form to show and keyed hashes to look it up
  (wallets.beneficiaries); the plain text goes to the payout provider, to a scheduled withdrawal
  and to sanctions screening, nowhere else.
- An `ExchangeQuote` is executed at most once: `open -> executed` under a row lock, with the
  one-to-one `transaction` as the database's last word. It is honoured only until `expires_at`.
  Amounts are stored exactly (NUMERIC(38, 18)); `destination_amount` is already rounded DOWN to
  the destination asset's exponent (the platform's favour).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.livemode import deployment_livemode


def _amount(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


class Payout(ConcurrentTransitionMixin, models.Model):
    class Status(models.TextChoices):
        IN_REVIEW = "in_review", "Held for compliance review"
        PENDING = "pending", "Pending (not yet handed to the provider)"
        SENDING = "sending", "Sending (being handed to the provider)"
        SENT = "sent", "Sent (provider accepted it)"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled (rejected in review)"

    class DestinationType(models.TextChoices):
        IBAN = "IBAN", "IBAN (bank account)"
        EXTERNAL = "EXTERNAL", "External (other payout rail)"

    transaction = models.OneToOneField("ledger.Transaction", on_delete=models.PROTECT, related_name="payout")
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="payouts")
    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="payouts")
    amount = _amount()
    fee = _amount()
    currency = models.CharField(max_length=16)
    destination_type = models.CharField(max_length=16, choices=DestinationType.choices)
    # The beneficiary, encrypted at rest with masked and keyed-hash companions (wallets.beneficiaries).
    beneficiary_name_encrypted = models.TextField(help_text="Fernet, field keys.")
    beneficiary_name_masked = models.CharField(max_length=200, help_text='What is shown: "J*** S****".')
    beneficiary_hash = models.CharField(max_length=64, db_index=True, help_text="Keyed HMAC of the normalised name, for lookups.")
    destination_encrypted = models.TextField(help_text="Fernet, field keys: the beneficiary as given (IBAN normalised), JSON.")
    destination_masked = models.JSONField(default=dict, help_text='What is shown: the IBAN as "DE89 **** **** **** 3000".')
    account_hash = models.CharField(max_length=64, db_index=True, help_text="Keyed HMAC of the IBAN or account, for lookups.")
    reference = models.CharField(max_length=64, unique=True, help_text="Our idempotency key towards the provider.")
    provider = models.CharField(max_length=32, default="sandbox")
    provider_reference = models.CharField(max_length=128, blank=True, default="")
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True)
    attempts = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True, help_text="When the worker next asks the provider.")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "next_check_at"], name="payout_due")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="payout_fee_non_negative"),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk} {self.amount} {self.currency} ({self.status})"

    @transition(field=status, source=Status.IN_REVIEW, target=Status.PENDING)
    def approve(self) -> None:
        """State only; the service emits the send."""

    @transition(field=status, source=Status.IN_REVIEW, target=Status.CANCELLED)
    def cancel(self) -> None:
        """State only."""

    @transition(field=status, source=Status.PENDING, target=Status.SENDING)
    def claim_send(self) -> None:
        """State only; `payout_send` saves and commits it before calling the provider."""

    @transition(field=status, source=Status.SENDING, target=Status.SENT)
    def mark_sent(self) -> None:
        """State only; `payout_send` saves."""

    @transition(field=status, source=Status.SENT, target=Status.COMPLETED)
    def complete(self) -> None:
        """State only; `payout_settle` posts and saves."""

    @transition(field=status, source=[Status.PENDING, Status.SENDING, Status.SENT], target=Status.FAILED)
    def fail(self) -> None:
        """State only; `payout_settle` / `payout_send` release the holds and save."""


class ExchangeQuote(ConcurrentTransitionMixin, models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        EXECUTED = "executed", "Executed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exchange_quotes")
    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="exchange_quotes")
    source_wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="+")
    destination_wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="+")
    source_currency = models.CharField(max_length=16)
    destination_currency = models.CharField(max_length=16)
    source_amount = _amount(help_text="What leaves the source wallet, fee included.")
    fee = _amount(help_text="In the source currency, part of source_amount.")
    rate = models.DecimalField(max_digits=40, decimal_places=20, help_text="Destination units per source unit (the bid).")
    destination_amount = _amount(help_text="(source_amount - fee) * rate, rounded down to the destination exponent.")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True)
    transaction = models.OneToOneField(
        "ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="exchange_quote"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    executed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(source_amount__gt=0) & Q(destination_amount__gt=0), name="quote_amounts_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="quote_fee_non_negative"),
        ]

    def __str__(self) -> str:
        return f"quote {self.pk} {self.source_amount} {self.source_currency} -> {self.destination_currency} ({self.status})"

    @transition(field=status, source=Status.OPEN, target=Status.EXECUTED)
    def execute(self) -> None:
        """State only; `exchange_execute` posts and saves."""


class Schedule(ConcurrentTransitionMixin, models.Model):
    """A recurring payment (`wallets.schedules`): `amount` from `source_wallet` on every instance
    of the RFC 5545 `rule` from `start_at` (to `end_at`), to a wallet or an IBAN beneficiary (stored
    encrypted, masked and hashed as a payout's: wallets.beneficiaries).

        active <-> paused;  active | paused -> cancelled | completed (the rule is exhausted)

    `next_run_at` is the next instance to pay (NULL when not active); the beat task finds due
    schedules by the partial index `schedule_due`. Owned by exactly one of a user (their own
    wallets) or an organization (its wallets)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        COMPLETED = "completed", "Completed (the rule has no further occurrence)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="schedules")
    organization = models.ForeignKey("accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="schedules")
    source_wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="schedules")
    destination_wallet = models.ForeignKey("ledger.Wallet", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # An IBAN or EXTERNAL beneficiary (as withdrawals take it), sealed as a payout's is
    # (wallets.beneficiaries): empty when the schedule pays a wallet.
    beneficiary_name_encrypted = models.TextField(blank=True, default="", help_text="Fernet, field keys.")
    beneficiary_name_masked = models.CharField(max_length=200, blank=True, default="", help_text='What is shown: "J*** S****".')
    beneficiary_hash = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                        help_text="Keyed HMAC of the normalised name, for lookups.")
    destination_encrypted = models.TextField(
        blank=True, default="", help_text="Fernet, field keys: the beneficiary as given (type, name, IBAN normalised), JSON.")
    destination_masked = models.JSONField(null=True, blank=True, help_text='What is shown: the IBAN as "DE89 **** **** **** 3000".')
    account_hash = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                    help_text="Keyed HMAC of the IBAN or account, for lookups.")
    asset = models.ForeignKey("ledger.Asset", on_delete=models.PROTECT, related_name="+")
    # Test mode (core.livemode): its wallets' mode (a test key's schedule moves test money only).
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode schedule.")
    amount = _amount()
    rule = models.CharField(max_length=500, help_text="RFC 5545 RRULE, evaluated in UTC from start_at.")
    start_at = models.DateTimeField()
    end_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=500, blank=True, default="")
    status = FSMField(default=Status.ACTIVE, choices=Status.choices, protected=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    step_up_authorized = models.BooleanField(
        default=False, help_text="Created with a valid step-up code: its occurrences (of exactly `amount`) need none.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["next_run_at"], condition=Q(status="active"), name="schedule_due"),
            models.Index(fields=["user", "-id"], name="schedule_user_recent"),
            models.Index(fields=["organization", "-id"], name="schedule_org_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="schedule_amount_positive"),
            models.CheckConstraint(condition=Q(user__isnull=True, organization__isnull=False) | Q(user__isnull=False, organization__isnull=True),
                                   name="schedule_one_owner"),
            models.CheckConstraint(condition=(Q(destination_wallet__isnull=True) & ~Q(destination_encrypted=""))
                                   | Q(destination_wallet__isnull=False, destination_encrypted=""), name="schedule_one_destination"),
        ]

    def __str__(self) -> str:
        return f"schedule {self.pk} {self.amount} ({self.status})"

    @transition(field=status, source=Status.ACTIVE, target=Status.PAUSED)
    def pause(self) -> None:
        """State only; `schedule_pause` saves and audits."""

    @transition(field=status, source=Status.PAUSED, target=Status.ACTIVE)
    def resume(self) -> None:
        """State only; `schedule_resume` finds the next occurrence, saves and audits."""

    @transition(field=status, source=[Status.ACTIVE, Status.PAUSED], target=Status.CANCELLED)
    def cancel(self) -> None:
        """State only; `schedule_cancel` saves and audits."""

    @transition(field=status, source=[Status.ACTIVE, Status.PAUSED], target=Status.COMPLETED)
    def complete(self) -> None:
        """State only: the rule (or end_at) has no further occurrence."""


class ScheduleOccurrence(models.Model):
    """One instance of a schedule's rule that fell due, and what paying it did. Unique per
    (schedule, scheduled_for): the row is inserted in the same database transaction as the
    payment, after it, so a second worker paying the same instance loses on this constraint and
    its payment rolls back with it. `idempotency_key` is derived from (schedule, instance);
    attempt n posts with the ledger reference `<idempotency_key>:<n>` (unique per owner too)."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Paid (the money path accepted it)"
        IN_REVIEW = "in_review", "Held for compliance review"
        RETRYING = "retrying", "Failed, another attempt is due"
        FAILED = "failed", "Failed, no attempt left"
        SKIPPED = "skipped", "Retry dropped (schedule paused or cancelled)"

    schedule = models.ForeignKey(Schedule, on_delete=models.PROTECT, related_name="occurrences")
    scheduled_for = models.DateTimeField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    attempts = models.PositiveIntegerField(default=1)
    transaction = models.ForeignKey("ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                    help_text="The last attempt's ledger transaction (failed ones are recorded too).")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-scheduled_for"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="retrying"), name="schedule_occurrence_retry_due"),
            models.Index(fields=["schedule", "-scheduled_for"], name="schedule_occurrence_recent"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "scheduled_for"], name="schedule_occurrence_once"),
        ]

    def __str__(self) -> str:
        return f"occurrence {self.pk} of schedule {self.schedule_id} at {self.scheduled_for:%Y-%m-%dT%H:%M:%SZ} ({self.status})"
