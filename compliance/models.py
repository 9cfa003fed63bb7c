"""The audit chain: an append-only, keyed hash chain of everything that matters.

Invariants (SPEC 4.5, 8; how they are kept is in `compliance.audit`):
- Rows are only ever inserted, by `compliance.audit.audit_record` (one INSERT, no lock), with
  `sequence`, `prev_hash` and `hash` NULL. The sequencer (`audit_chain_advance`) later fills
  those three columns exactly once; the database refuses every other UPDATE, every DELETE and
  TRUNCATE (triggers installed by migrations 0002 and 0007).
- Chained events are numbered 1, 2, 3 ... without gaps in `sequence` (chain order); `hash` =
  HMAC-SHA256(AUDIT_CHAIN_KEY, canonical JSON of the event's fields, its id, sequence and
  `prev_hash`); sequence 1 links to `GENESIS_HASH`. Id order is allocation order, not chain order.
- PostgreSQL only: a column `txid` (xid8, default `pg_current_xact_id()`) that the model does not
  declare records the inserting transaction, for the sequencer's watermark.
- PostgreSQL: the events table is partitioned by month of `created_at` (migration 0011; primary
  key (id, created_at); `sequence` and `hash` unique with `created_at`; the triggers on every
  partition; months created ahead by `ledger.partitions`). `audit_verify` proves the numbering.
- `AuditCheckpoint` rows are the sequencer's signed checkpoints (also written to the log and to
  AUDIT_CHECKPOINT_PATH, outside the database).
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from accounts.models import Customer

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
    # NULL until the sequencer links the event into the chain.
    # Unique with created_at, not alone (issue 15: the table is partitioned by month on
    # PostgreSQL, and a partitioned unique index must hold the partition key): the chain's
    # gapless numbering is kept by the one sequencer and proved by `audit_verify`.
    sequence = models.BigIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, null=True, blank=True)
    hash = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="auditevent_target_idx"),
            # The sequencer's scan: the few events not chained yet.
            models.Index(fields=["id"], condition=Q(sequence__isnull=True), name="auditevent_unchained_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["sequence", "created_at"], name="auditevent_sequence_month"),
            models.UniqueConstraint(fields=["hash", "created_at"], name="auditevent_hash_month"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor_label or 'system'}"


class AuditCheckpoint(models.Model):
    """A signed statement by the sequencer: "the chain had `count` events, the last one
    (`head_sequence`, `head_id`) hashing to `head_hash`, at `created_at`". `signature` is an
    HMAC with AUDIT_CHAIN_KEY over those fields. Copies go to the log and to a file, so a
    truncated or rewound table is caught against a record it does not hold."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()
    head_sequence = models.BigIntegerField()
    head_id = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    count = models.BigIntegerField()
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-head_sequence"]

    def __str__(self) -> str:
        return f"checkpoint at sequence {self.head_sequence}"


# --- Fees, limits, risk rules, sanctions and the review queue ------------------------------------
# Invariants:
# - Rules are configuration, edited in the admin and seeded by migrations 0005 and 0010 (SPEC 11).
#   A rule with currency "" (the default) applies to every asset and its amounts (fixed fee,
#   minimum, maximum, limits) are in the REFERENCE currency (settings.LIMITS_REFERENCE_CURRENCY,
#   USD by default), converted per movement at the price provider's rate (`core.reference`); a
#   rule naming an asset code wins over it, with amounts in MAJOR units of that asset.
# - Limit usage is kept in counters by the posting engine (`ledger.usage`), in the asset's units
#   and in the reference currency at the rate of each movement.
# - A ReviewCase is opened in the same database transaction that leaves its ledger transaction
#   `in_review`, and is decided only by `wallets.review.review_approve` / `review_reject`.

def _money_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=38, decimal_places=18, validators=[MinValueValidator(Decimal(0))], **kwargs)


class MovementType(models.TextChoices):
    """The one declaration of what limits, fees, risk rules and usage counters count. Each value
    is also a `ledger.models.Transaction.Type` (declared from these), so a transaction's type is
    its movement type (`ledger.usage`)."""

    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRANSFER = "transfer", "Transfer"
    EXCHANGE = "exchange", "Exchange"
    SETTLEMENT = "settlement", "Pay-order settlement"


class Direction(models.TextChoices):
    OUTGOING = "outgoing", "Outgoing"
    INCOMING = "incoming", "Incoming"


class FeeRule(models.Model):
    """fee = amount * percent / 100 + fixed, rounded UP to the asset's exponent (the platform's
    favour), then raised to `minimum` / capped at `maximum` (major units). The most specific
    active rule wins: currency + destination > destination > currency > generic."""

    class DestinationType(models.TextChoices):
        ANY = "", "Any destination"
        IBAN = "IBAN", "IBAN (bank account)"
        EXTERNAL = "EXTERNAL", "External (other payout rail)"

    movement_type = models.CharField(max_length=16, choices=MovementType.choices)
    destination_type = models.CharField(max_length=16, choices=DestinationType.choices, blank=True, default="")
    currency = models.CharField(
        max_length=16, blank=True, default="",
        help_text="Asset code (fixed, minimum and maximum in that asset), or blank for every asset (in the reference currency, "
        "LIMITS_REFERENCE_CURRENCY).",
    )
    percent = models.DecimalField(
        max_digits=9, decimal_places=6, default=Decimal(0), validators=[MinValueValidator(Decimal(0))],
        help_text="Percentage of the amount, e.g. 1 for 1%.",
    )
    fixed = _money_field(default=Decimal(0), help_text="Added to the percentage part (major units of the rule's currency).")
    minimum = _money_field(null=True, blank=True, help_text="Major units of the rule's currency; blank for none.")
    maximum = _money_field(null=True, blank=True, help_text="Major units of the rule's currency; blank for none.")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["movement_type", "destination_type", "currency", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(percent__gte=0, percent__lte=100), name="feerule_percent_0_100"),
            models.CheckConstraint(condition=Q(fixed__gte=0), name="feerule_fixed_non_negative"),
            models.CheckConstraint(
                condition=Q(minimum__isnull=True) | Q(maximum__isnull=True) | Q(minimum__lte=models.F("maximum")),
                name="feerule_minimum_le_maximum",
            ),
        ]

    def __str__(self) -> str:
        scope = " ".join(p for p in (self.movement_type, self.destination_type, self.currency) if p)
        return f"{scope}: {self.percent}% + {self.fixed}"


class LimitRule(models.Model):
    """Per KYC level, movement type, direction and asset. Blank currency: every asset, amounts in
    the reference currency (LIMITS_REFERENCE_CURRENCY), compared at the rate of the movement; an
    asset code: that asset only, in its major units, winning over the blank rule. A NULL limit
    means no limit."""

    kyc_level = models.CharField(max_length=16, choices=Customer.KycLevel.choices)
    movement_type = models.CharField(max_length=16, choices=MovementType.choices)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    currency = models.CharField(
        max_length=16, blank=True, default="",
        help_text="Asset code (limits in that asset, overriding the default), or blank for the default of every asset "
        "(limits in the reference currency, LIMITS_REFERENCE_CURRENCY).",
    )
    single_limit = _money_field(null=True, blank=True, help_text="In the rule's currency. Blank: no limit.")
    daily_limit = _money_field(null=True, blank=True, help_text="Per UTC day, in the rule's currency; blank: no limit.")
    monthly_limit = _money_field(null=True, blank=True, help_text="Per UTC calendar month, in the rule's currency; blank: no limit.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kyc_level", "movement_type", "direction", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["kyc_level", "movement_type", "direction", "currency"], name="limitrule_unique_scope"),
        ]

    def __str__(self) -> str:
        return f"{self.kyc_level} {self.movement_type} {self.direction} {self.currency or '*'}"


class RiskRule(models.Model):
    """One configured check of the risk step. `kind` names a function in the registry of
    `compliance.risk` (velocity, structuring, new_account_large, amount_threshold, sanctions, or
    one registered by code); `params` are that kind's settings."""

    class Action(models.TextChoices):
        REVIEW = "review", "Hold for review"
        REJECT = "reject", "Reject"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.REVIEW)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} -> {self.action})"


class SanctionsEntry(models.Model):
    """A sanctioned party: `name` and `aliases` are fuzzy-matched against beneficiary names."""

    name = models.CharField(max_length=300)
    aliases = models.JSONField(default=list, blank=True, help_text="A list of alternative names.")
    source = models.CharField(max_length=100, blank=True, default="", help_text="The list it came from (e.g. OFAC SDN).")
    list_id = models.CharField(max_length=100, blank=True, default="", help_text="The entry's id on that list.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "sanctions entries"
        constraints = [
            models.UniqueConstraint(fields=["source", "list_id"], condition=~Q(list_id=""), name="sanctions_entry_list_id_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class ReviewCase(ConcurrentTransitionMixin, models.Model):
    """A ledger transaction held `in_review` by a risk rule, waiting for a compliance officer.
    open -> approved (the transaction is posted) | rejected (its holds are released)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    transaction = models.OneToOneField("ledger.Transaction", on_delete=models.PROTECT, related_name="review_case")
    customer = models.ForeignKey("accounts.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="review_cases")
    rule = models.ForeignKey(RiskRule, null=True, blank=True, on_delete=models.PROTECT, related_name="review_cases")
    rule_kind = models.CharField(max_length=50, blank=True, default="")
    reason = models.CharField(max_length=500, help_text="Why the transaction was held.")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True)
    decision_reason = models.CharField(max_length=500, blank=True, default="")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    # Four-eyes: the first of two approvals (compliance.backoffice.review_decide).
    first_approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    first_approved_at = models.DateTimeField(null=True, blank=True)
    first_approval_reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "id"], name="reviewcase_status_id")]

    def __str__(self) -> str:
        return f"review {self.pk} of transaction {self.transaction_id} ({self.status})"

    @transition(field=status, source=Status.OPEN, target=Status.APPROVED)
    def approve(self) -> None:
        """State only; `review_approve` saves and posts."""

    @transition(field=status, source=Status.OPEN, target=Status.REJECTED)
    def reject(self) -> None:
        """State only; `review_reject` saves and releases the holds."""


# --- Back office: four-eyes review, KYC history, sanctions screening ------------------------------
# Invariants:
# - A ReviewCase above the four-eyes amount (settings.REVIEW_FOUR_EYES_AMOUNT) keeps `status`
#   open after its first approval (`first_approved_by` set); only a different staff member's
#   approval moves it (compliance.backoffice.review_decide).
# - `KycChange` rows are written only by `compliance.backoffice.customer_kyc_set`, in the same
#   transaction as the level change and its audit event; they are the customer's KYC history.
# - `ScreeningHit`: a customer or beneficiary name that matched an entry when the list changed
#   (`sanctions_rescreen`); clearing one adds a `SanctionsClearance` (the whitelist), which the
#   sanctions rule honours for that name and entry.


class KycChange(models.Model):
    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="kyc_changes")
    from_level = models.CharField(max_length=16)
    to_level = models.CharField(max_length=16)
    reason = models.CharField(max_length=500)
    evidence_reference = models.CharField(max_length=200, blank=True, default="", help_text="Where the evidence is kept, e.g. a document id.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["customer", "-id"], name="kycchange_customer_recent")]

    def __str__(self) -> str:
        return f"KYC {self.from_level} -> {self.to_level}"


def normalized_name(name: str) -> str:
    """Lower-cased, punctuation-free, words sorted: the key a clearance and a hit are kept by."""
    from rapidfuzz import utils as fuzz_utils

    return " ".join(sorted(fuzz_utils.default_process(name or "").split()))[:300]


class SanctionsClearance(models.Model):
    """A cleared false positive: `name` (normalized) is not `entry`."""

    name = models.CharField(max_length=300, help_text="The cleared name, normalized (lower case, no punctuation, words sorted).")
    display_name = models.CharField(max_length=300, blank=True, default="")
    entry = models.ForeignKey(SanctionsEntry, on_delete=models.CASCADE, related_name="clearances")
    reason = models.CharField(max_length=500)
    cleared_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["name", "entry"], name="sanctionsclearance_name_entry")]

    def __str__(self) -> str:
        return f"{self.display_name or self.name} is not {self.entry_id}"


class ScreeningHit(models.Model):
    class Subject(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        BENEFICIARY = "beneficiary", "Payout beneficiary"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLEARED = "cleared", "Cleared (false positive)"
        CONFIRMED = "confirmed", "Confirmed"

    subject = models.CharField(max_length=16, choices=Subject.choices)
    customer = models.ForeignKey("accounts.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=300)
    name_key = models.CharField(max_length=300)
    entry = models.ForeignKey(SanctionsEntry, on_delete=models.CASCADE, related_name="hits")
    matched = models.CharField(max_length=300, help_text="The list name or alias it matched.")
    score = models.DecimalField(max_digits=5, decimal_places=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    decision_reason = models.CharField(max_length=500, blank=True, default="")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["subject", "name_key", "entry"], name="screeninghit_subject_name_entry")]

    def __str__(self) -> str:
        return f"{self.name} ~ {self.entry_id} ({self.status})"
