"""Reconciliation storage: an imported external statement matched against one wallet's ledger.

Invariants:
* A `Reconciliation` is one file (its SHA-256 `source_digest`) against one wallet: (wallet,
  source_digest) is unique, so importing the same file again returns the first result.
* Its `lines` are the outcome: `pair` (an external line and the ledger transaction it matched),
  `external` (a statement line the ledger lacks), `ledger` (a ledger transaction of the period
  the statement lacks). A ledger transaction is in at most one pair and one ledger line of a
  reconciliation (partial unique constraints).
* Lines are resolved only by `ledger.reconciliation.services` (a manual match, or an adjustment
  booked through the money path), under the reconciliation's row lock; `status` follows.
* Amounts are signed from the wallet's side: positive = money in (a credit), negative = out.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


def _amount(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


class Reconciliation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open (unresolved lines or a difference)"
        RECONCILED = "reconciled", "Reconciled"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        CAMT053 = "camt053", "ISO 20022 camt.053"

    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="reconciliations")
    # The organization that owns the wallet (its system wallet or its customer's); None for a
    # platform wallet (staff only). Who may read it.
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="reconciliations", db_index=False
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    source_format = models.CharField(max_length=8, choices=Format.choices)
    source_name = models.CharField(max_length=255, blank=True, default="")
    source_digest = models.CharField(max_length=64, help_text="SHA-256 of the uploaded file (hex).")
    statement_id = models.CharField(max_length=140, blank=True, default="", help_text="camt.053 Stmt/Id, if any.")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    date_window_days = models.PositiveSmallIntegerField()
    statement_opening_balance = _amount(null=True, blank=True)
    statement_closing_balance = _amount(null=True, blank=True)
    ledger_opening_balance = _amount()
    ledger_closing_balance = _amount()
    as_of_entry_id = models.BigIntegerField(null=True, blank=True)
    balance_difference = _amount(null=True, blank=True, help_text="Statement closing balance - ledger balance at the period end.")
    adjustments_total = _amount(default=Decimal(0), help_text="Net of the adjustments booked to resolve lines (money in positive).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by_label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "ledger"
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization", "-id"], name="recon_org_recent")]
        constraints = [
            models.UniqueConstraint(fields=["wallet", "source_digest"], name="recon_wallet_digest_unique"),
            models.CheckConstraint(condition=Q(period_start__lte=models.F("period_end")), name="recon_period_ordered"),
        ]

    def __str__(self) -> str:
        return f"reconciliation {self.pk} of wallet {self.wallet_id} ({self.status})"

    @property
    def remaining_difference(self) -> Decimal | None:
        if self.balance_difference is None:
            return None
        return self.balance_difference - self.adjustments_total


class ReconciliationLine(models.Model):
    class Kind(models.TextChoices):
        PAIR = "pair", "Matched pair"
        EXTERNAL = "external", "Statement line without a ledger transaction"
        LEDGER = "ledger", "Ledger transaction without a statement line"

    class Status(models.TextChoices):
        MATCHED = "matched", "Matched"
        UNMATCHED = "unmatched", "Unmatched"
        RESOLVED = "resolved", "Resolved"

    class Method(models.TextChoices):
        NONE = "", "-"
        REFERENCE = "reference", "Reference"
        AMOUNT_DATE = "amount_date", "Amount and date"
        MANUAL = "manual", "By hand"
        ADJUSTMENT = "adjustment", "Adjustment"

    reconciliation = models.ForeignKey(Reconciliation, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    method = models.CharField(max_length=12, choices=Method.choices, blank=True, default="")
    # The statement side (external and pair lines): where it was in the file, and what it said.
    line_number = models.PositiveIntegerField(null=True, blank=True, help_text="CSV line, or camt.053 entry number (1-based).")
    date = models.DateField(null=True, blank=True)
    amount = _amount(null=True, blank=True)
    reference = models.CharField(max_length=200, blank=True, default="")
    description = models.CharField(max_length=500, blank=True, default="")
    # The ledger side (ledger and pair lines): the transaction and its net effect on the wallet.
    transaction = models.ForeignKey("ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    transaction_amount = _amount(null=True, blank=True)
    transaction_at = models.DateTimeField(null=True, blank=True)
    # A resolution: who, when, why, and the adjustment it booked (or the line it was paired with).
    adjustment_transaction = models.ForeignKey(
        "ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    paired_line = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=300, blank=True, default="")
    resolution_reason = models.CharField(max_length=500, blank=True, default="")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "ledger"
        ordering = ["reconciliation", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reconciliation", "transaction"], condition=Q(kind="pair"), name="recon_line_tx_paired_once"),
            models.UniqueConstraint(fields=["reconciliation", "transaction"], condition=Q(kind="ledger"), name="recon_line_tx_ledger_once"),
            models.CheckConstraint(
                condition=(Q(kind="ledger") | Q(amount__isnull=False)) & (Q(kind="external") | Q(transaction__isnull=False)),
                name="recon_line_sides_match_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"reconciliation {self.reconciliation_id} line {self.pk} ({self.kind}, {self.status})"
