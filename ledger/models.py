"""The double-entry ledger: assets, wallets, transactions, postings, entries, holds, usage.

Invariants (SPEC 4), kept by the database where it can and by `ledger.posting` otherwise:
* Amounts and balances are NUMERIC(38, 18) (`AMOUNT`) and positive where they are moved.
* A credit raises a wallet's balance, a debit lowers it. Each posting writes one debit (source)
  and one credit (destination) of its amount, so a transaction's entries net to zero per asset
  (a deferred PostgreSQL trigger checks at commit) and every asset's balances sum to zero.
* `Wallet.balance` = credits - debits of its entries; each `balance_after` continues the last;
  `Wallet.held` = the sum of its `held` holds (`ledger.checks.ledger_check` verifies all three).
* Only issuance wallets go below zero or below their holds (CHECK constraints).
* Entries and postings are append-only; transactions and holds are never deleted (triggers).
* `ledger.posting` is the only writer of balances, holds, postings, entries and usage counters.
* Hot platform accounts are `LEDGER_HOT_ACCOUNT_SHARDS` rows each (`ledger.posting.shards`).
* Test mode (core.livemode): wallets and transactions carry `livemode`; every wallet of a
  transaction has the transaction's mode (the engine checks it under the lock).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from compliance.models import MovementType
from core.livemode import deployment_livemode
from core.money import format_amount


def AMOUNT(**kwargs) -> models.DecimalField:  # noqa: N802 - reads like a type
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


def hot_account_shards() -> int:
    return max(1, int(getattr(settings, "LEDGER_HOT_ACCOUNT_SHARDS", 16)))


class Asset(models.Model):
    """A currency or unit. Platform assets (organization NULL) are visible to everyone; custom
    assets belong to one organization and are visible only to it."""

    class Kind(models.TextChoices):
        FIAT = "fiat", "Fiat"
        CRYPTO = "crypto", "Crypto"
        CUSTOM = "custom", "Custom"

    code = models.CharField(max_length=16)
    name = models.CharField(max_length=100)
    exponent = models.PositiveSmallIntegerField(help_text="Minor-unit digits (USD 2, BTC 8, ETH 18).")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FIAT)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="assets"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(exponent__gte=0, exponent__lte=18), name="asset_exponent_0_18"),
            models.UniqueConstraint(fields=["code"], condition=Q(organization__isnull=True), name="asset_platform_code_unique"),
            models.UniqueConstraint(
                fields=["organization", "code"], condition=Q(organization__isnull=False), name="asset_org_code_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def format(self, amount: Decimal) -> str:
        return format_amount(amount, self.exponent)


class Wallet(ConcurrentTransitionMixin, models.Model):
    """Holds one asset for one owner.

    kind=customer: `customer` set. kind=system: an organization's system wallet (`organization`
    set) or a platform wallet (neither set, `purpose` fee/fx/settlement). kind=issuance: the
    platform issuance account of an asset (neither set, purpose "issuance"), the only kind that
    may go below zero. Status: active <-> suspended, active|suspended -> closed (only at zero
    balance and zero held; closed is final). Transitions change state only; services save."""

    class Kind(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        SYSTEM = "system", "System"
        ISSUANCE = "issuance", "Issuance"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    class Purpose(models.TextChoices):
        NONE = "", "-"
        ISSUANCE = "issuance", "Issuance"
        FEE = "fee", "Fees"
        FX = "fx", "FX"
        SETTLEMENT = "settlement", "Settlement"

    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="wallets")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CUSTOMER)
    customer = models.ForeignKey(
        "accounts.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="wallets"
    )
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="system_wallets"
    )
    purpose = models.CharField(max_length=16, choices=Purpose.choices, blank=True, default="")
    label = models.CharField(max_length=100, blank=True, default="")
    shard = models.PositiveSmallIntegerField(default=0)
    # Test mode (core.livemode): a wallet is live or test for good; a transaction never mixes the
    # two, and each platform account has its shard rows once per mode.
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode wallet (a test key's, or any on the sandbox).")
    balance = AMOUNT(default=Decimal(0))
    held = AMOUNT(default=Decimal(0))
    status = FSMField(default=Status.ACTIVE, choices=Status.choices, protected=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["customer", "asset"], name="wallet_customer_asset"),
            models.Index(fields=["organization", "asset"], name="wallet_org_asset"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind="issuance") | Q(balance__gte=0), name="wallet_balance_non_negative"),
            models.CheckConstraint(
                condition=Q(kind="issuance") | Q(balance__gte=F("held")), name="wallet_available_non_negative"
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(
                condition=(
                    Q(kind="customer", customer__isnull=False, organization__isnull=True)
                    | Q(kind="system", customer__isnull=True)
                    | Q(kind="issuance", customer__isnull=True, organization__isnull=True, purpose="issuance")
                ),
                name="wallet_owner_matches_kind",
            ),
            # One active (or suspended) unlabelled wallet per owner and asset (SPEC 6).
            models.UniqueConstraint(
                fields=["customer", "asset"],
                condition=Q(customer__isnull=False, label="") & ~Q(status="closed"),
                name="wallet_one_open_per_customer_asset",
            ),
            models.UniqueConstraint(
                fields=["organization", "livemode", "asset", "purpose"],
                condition=Q(organization__isnull=False, label="") & ~Q(status="closed"),
                name="wallet_one_open_per_org_asset_purpose",
            ),
            # Platform accounts: one row per (asset, purpose, shard) in each mode.
            models.UniqueConstraint(
                fields=["asset", "purpose", "shard", "livemode"],
                condition=Q(customer__isnull=True, organization__isnull=True),
                name="wallet_platform_shard_unique",
            ),
        ]

    def __str__(self) -> str:
        owner = self.label or self.purpose or self.kind
        return f"{self.asset_id and self.asset.code} wallet {self.pk} ({owner})"

    @property
    def available_balance(self) -> Decimal:
        return self.balance - self.held

    @property
    def is_platform(self) -> bool:
        return self.customer_id is None and self.organization_id is None

    @transition(field=status, source=Status.ACTIVE, target=Status.SUSPENDED)
    def suspend(self) -> None:
        """State only; `wallet_suspend` saves."""

    @transition(field=status, source=Status.SUSPENDED, target=Status.ACTIVE)
    def activate(self) -> None:
        """State only; `wallet_activate` saves."""

    @transition(
        field=status,
        source=[Status.ACTIVE, Status.SUSPENDED],
        target=Status.CLOSED,
        conditions=[lambda w: w.balance == 0 and w.held == 0],
    )
    def close(self) -> None:
        """State only; `wallet_close` checks emptiness first to report WALLET_NOT_EMPTY."""


class Transaction(ConcurrentTransitionMixin, models.Model):
    """An ordered list of operations that all post or none do.

    Status: pending -> in_review -> completed | failed | rejected; pending -> completed | failed;
    pending -> voided (an authorization hold voided, expired or replaced by a partial capture);
    completed -> reversed (once `reversed_amount` reaches the principal). A refused attempt is kept as a `failed` transaction with
    `failure_code`, `failure_message` and `failure_operation_index`, and no entries. Its
    operations, as requested and resolved, are its `postings`, whatever its status."""

    class Type(models.TextChoices):
        # The movement types (`compliance.models.MovementType`) are transaction types by declaration.
        DEPOSIT = MovementType.DEPOSIT.value, "Deposit"
        WITHDRAWAL = MovementType.WITHDRAWAL.value, "Withdrawal"
        TRANSFER = MovementType.TRANSFER.value, "Transfer"
        EXCHANGE = MovementType.EXCHANGE.value, "Exchange"
        FEE = "fee", "Fee"
        SETTLEMENT = MovementType.SETTLEMENT.value, "Settlement"
        REFUND = "refund", "Refund"
        LEDGER = "ledger", "Ledger (organization)"
        REVERSAL = "reversal", "Reversal"
        PAYOUT = "payout", "Payout"
        ADJUSTMENT = "adjustment", "Adjustment"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        IN_REVIEW = "in_review", "In review"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        REVERSED = "reversed", "Reversed"
        VOIDED = "voided", "Voided"

    type = models.CharField(max_length=16, choices=Type.choices)
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True)
    # db_index=False: the (owner, -id) indexes below serve owner lookups; one index less to
    # maintain on the hot insert path.
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_transactions",
        db_index=False,
    )
    customer = models.ForeignKey(
        "accounts.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_transactions",
        db_index=False,
    )
    reference = models.CharField(max_length=200, blank=True, default="")
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # Test mode (core.livemode): the mode of every wallet it names (the posting engine refuses a mix).
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode transaction.")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_message = models.CharField(max_length=500, blank=True, default="")
    failure_operation_index = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Reversals (`wallets.movements.reversals`): a reversal names the transaction it reverses; the original
    # keeps how much of its principal (first posting) has been reversed so far.
    reversal_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals", db_index=False,
    )
    reversed_amount = AMOUNT(default=Decimal(0), db_default=Decimal(0))

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["reversal_of"], condition=Q(reversal_of__isnull=False), name="transaction_reversal_of"),
            models.Index(fields=["organization", "-id"], name="transaction_org_recent"),
            models.Index(fields=["customer", "-id"], name="transaction_customer_recent"),
            models.Index(fields=["status", "-id"], name="transaction_status_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(reversed_amount__gte=0), name="transaction_reversed_amount_not_negative"),
            models.UniqueConstraint(
                fields=["organization", "livemode", "reference"],
                condition=Q(organization__isnull=False) & ~Q(reference=""),
                name="transaction_reference_unique_per_org",
            ),
            models.UniqueConstraint(
                fields=["customer", "reference"],
                condition=Q(customer__isnull=False) & ~Q(reference=""),
                name="transaction_reference_unique_per_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.pk} ({self.status})"

    @transition(field=status, source=Status.PENDING, target=Status.IN_REVIEW)
    def hold_for_review(self) -> None:
        pass

    @transition(field=status, source=[Status.PENDING, Status.IN_REVIEW], target=Status.COMPLETED)
    def complete(self) -> None:
        pass

    @transition(field=status, source=[Status.PENDING, Status.IN_REVIEW], target=Status.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=Status.IN_REVIEW, target=Status.REJECTED)
    def reject(self) -> None:
        pass

    @transition(field=status, source=Status.COMPLETED, target=Status.REVERSED)
    def reverse(self) -> None:
        pass

    @transition(field=status, source=Status.PENDING, target=Status.VOIDED)
    def void(self) -> None:
        pass


class Entry(models.Model):
    """One immutable line of a wallet's statement. credit = balance up, debit = balance down
    (the wallet holder's view). `balance_after` is the wallet's balance right after this entry."""

    class Direction(models.TextChoices):
        DEBIT = "debit", "Debit"
        CREDIT = "credit", "Credit"

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    # db_index=False: the (wallet, id) index serves every wallet lookup and the statement order.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False)
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount = AMOUNT()
    balance_after = AMOUNT()
    operation_index = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"
        indexes = [
            models.Index(fields=["wallet", "id"], name="entry_wallet_id"),
            # The risk screen's velocity rule counts a wallet's recent debits: a range scan of
            # this index, never the wallet's whole history.
            models.Index(fields=["wallet", "created_at"], condition=Q(direction="debit"), name="entry_wallet_recent_debits"),
            # Balance at a time and statement ranges (`ledger.statements`): the last entry at or
            # before an instant is one descent of this index, whatever the wallet's history.
            models.Index(fields=["wallet", "created_at", "id"], name="entry_wallet_created"),
        ]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="entry_amount_positive")]

    def __str__(self) -> str:
        return f"{self.direction} {self.amount} wallet {self.wallet_id}"

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.direction == self.Direction.CREDIT else -self.amount


class Posting(models.Model):
    """One operation of a transaction, as requested and resolved: `index` is its place in the
    transaction (0..n-1, the `operation_index` of its entries), `kind` what was asked, `amount`
    (> 0) moved from `source_wallet` to `destination_wallet` in `asset`. A side named as a
    platform account has its purpose in `*_purpose` ("issuance" for an issue's source and a
    redeem's destination) and the shard row it resolved to as its wallet. Written by the
    posting engine with the transaction, for every status (a failed attempt keeps what it
    tried; a held one is re-posted from these rows); append-only (a trigger on PostgreSQL)."""

    class Kind(models.TextChoices):
        ISSUE = "issue", "Issue"
        REDEEM = "redeem", "Redeem"
        TRANSFER = "transfer", "Transfer"

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="postings", db_index=False)
    index = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    source_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+", db_index=False)
    source_purpose = models.CharField(max_length=16, choices=Wallet.Purpose.choices, blank=True, default="")
    destination_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+", db_index=False)
    destination_purpose = models.CharField(max_length=16, choices=Wallet.Purpose.choices, blank=True, default="")
    amount = AMOUNT()
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+", db_index=False)
    # One unit of `asset` in the reference currency when it was posted (core.reference), or NULL
    # (an asset the price provider cannot price): what the usage counters' reference amounts were
    # converted at, so they recount exactly whatever prices do later.
    reference_rate = models.DecimalField(max_digits=38, decimal_places=18, null=True, blank=True)

    class Meta:
        ordering = ["transaction", "index"]
        indexes = [
            # "transactions naming this wallet" (history filter, limits on held transactions)
            models.Index(fields=["source_wallet", "transaction"], name="posting_source_wallet"),
            models.Index(fields=["destination_wallet", "transaction"], name="posting_destination_wallet"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["transaction", "index"], name="posting_transaction_index"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="posting_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.source_wallet_id} -> {self.destination_wallet_id}"


class Hold(ConcurrentTransitionMixin, models.Model):
    """Funds reserved on a wallet (a transaction in review, a payout in flight): they count in
    `Wallet.held` and so reduce the available balance until captured (posted) or released."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    amount = AMOUNT()
    status = FSMField(default=Status.HELD, choices=Status.choices, protected=True)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["wallet"], condition=Q(status="held"), name="hold_wallet_open"),
        ]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive")]

    def __str__(self) -> str:
        return f"hold {self.pk} {self.amount} on wallet {self.wallet_id} ({self.status})"

    @transition(field=status, source=Status.HELD, target=Status.CAPTURED)
    def capture(self) -> None:
        pass

    @transition(field=status, source=Status.HELD, target=Status.RELEASED)
    def release(self) -> None:
        pass


class AuthorizationHold(ConcurrentTransitionMixin, models.Model):
    """An organization's authorization hold (`/api/v1/holds`, `wallets.movements.holds`): `amount` reserved
    from `source_wallet` for `destination_wallet` until captured, voided or expired.

    The reservation is `transaction`, a `pending` ledger transaction with its one transfer
    stored, a `Hold` on the source wallet and its usage charged (so an open hold counts toward
    the customer's limits). Capture posts it: in full, `transaction` itself completes; in part,
    a new transaction (`capture_transaction`) posts `captured_amount` and `transaction` is
    voided (the rest released). Void and expiry release it and void `transaction`.
    Status: held -> captured | voided | expired, once, under this row's lock (it is the parent
    row: locked before the ledger transaction, customers and wallets)."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        CAPTURED = "captured", "Captured"
        VOIDED = "voided", "Voided"
        EXPIRED = "expired", "Expired"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="authorization_holds", db_index=False)
    source_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+")
    destination_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+", db_index=False)
    amount = AMOUNT()
    captured_amount = AMOUNT(null=True, blank=True)
    reference = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True, default="")
    # Test mode (core.livemode): its wallets' and transaction's mode.
    livemode = models.BooleanField(default=deployment_livemode, help_text="False for a test-mode hold.")
    status = FSMField(default=Status.HELD, choices=Status.choices, protected=True)
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="authorization_hold")
    capture_transaction = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"], name="authhold_org_recent"),
            # the expiry sweep: open holds by expiry, a range scan of this partial index
            models.Index(fields=["expires_at"], condition=Q(status="held"), name="authhold_open_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="authhold_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_amount__isnull=True) | (Q(captured_amount__gt=0) & Q(captured_amount__lte=F("amount"))),
                name="authhold_captured_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"authorization hold {self.pk} {self.amount} ({self.status})"

    @transition(field=status, source=Status.HELD, target=Status.CAPTURED)
    def capture(self) -> None:
        pass

    @transition(field=status, source=Status.HELD, target=Status.VOIDED)
    def void(self) -> None:
        pass

    @transition(field=status, source=Status.HELD, target=Status.EXPIRED)
    def expire(self) -> None:
        pass


class UsageCounter(models.Model):
    """A customer's usage of one (asset, movement type, direction) on one UTC day: the sum of
    the movements that count toward their limits, and how many there were. Written only by the
    posting engine (`ledger.usage`), in the same database transaction as the posting that
    charges it or the transition that releases it (review rejected, payout failed, reversed),
    so it always equals a recount from the ledger (`ledger.usage.usage_recount`, run by
    `check_ledger`). A month's usage is the sum of at most 31 rows: constant cost per request,
    whatever the customer's history."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="+", db_index=False)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+", db_index=False)
    movement_type = models.CharField(max_length=16)
    direction = models.CharField(max_length=8)
    day = models.DateField()
    amount = AMOUNT(default=Decimal(0))
    # The same usage in the reference currency, each leg at its posting's stored rate (ledger.usage).
    reference_amount = AMOUNT(default=Decimal(0))
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "asset", "movement_type", "direction", "day"], name="usage_counter_key"),
            models.CheckConstraint(condition=Q(amount__gte=0) & Q(count__gte=0), name="usage_counter_not_negative"),
        ]

    def __str__(self) -> str:
        return f"customer {self.customer_id} {self.movement_type} {self.direction} {self.day}: {self.amount}"
class ArchivedMonth(models.Model):
    """A month of `ledger_entry` taken out of the live database by `archive_entries`
    (`ledger.archive`). `dumped`: its partition is written to `path` (CSV, `sha256`, `row_count`)
    and still attached; `archived`: the partition is detached and dropped, and the month's
    per-wallet totals (`ArchivedTotal`) carry its entries for `check_ledger` and balances. The
    status moves forward only, in the transaction that does the step."""

    class Status(models.TextChoices):
        DUMPED = "dumped", "Dumped, still attached"
        ARCHIVED = "archived", "Archived (partition dropped)"

    month = models.DateField(unique=True)  # the first day of the month (UTC)
    partition = models.CharField(max_length=63)
    status = models.CharField(max_length=8, choices=Status.choices)
    path = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    row_count = models.BigIntegerField()
    dumped_at = models.DateTimeField()
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["month"]

    def __str__(self) -> str:
        return f"{self.partition} ({self.status})"


class ArchivedTotal(models.Model):
    """One wallet's entries of one archived month, summed: what `check_ledger` adds to the
    remaining entries (balance = archived credits - debits + remaining entries; the chain goes
    on from `last_balance_after` at `last_entry_id`). Append-only (a PostgreSQL trigger)."""

    archive = models.ForeignKey(ArchivedMonth, on_delete=models.PROTECT, related_name="totals")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+", db_index=False)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+", db_index=False)
    entry_count = models.BigIntegerField()
    debit_sum = AMOUNT()
    credit_sum = AMOUNT()
    first_entry_id = models.BigIntegerField()
    last_entry_id = models.BigIntegerField()
    last_balance_after = AMOUNT()
    month_start = models.DateTimeField()  # the archived month's bounds, for balance and statement guards
    month_end = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["wallet", "month_start"], name="archived_total_wallet")]
        constraints = [models.UniqueConstraint(fields=["archive", "wallet"], name="archived_total_month_wallet")]

    def __str__(self) -> str:
        return f"wallet {self.wallet_id} {self.month_start:%Y-%m}: {self.entry_count} entries"


from ledger.reconciliation.models import Reconciliation, ReconciliationLine  # noqa: E402,F401  (its own module: size)
