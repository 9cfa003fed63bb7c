"""Pay-order storage.

Deposit addresses (SPEC 7): an organization registers one active account-level extended public
key per chain (`XpubKey`); each `DepositAddress` is derived from it at the next index.
Invariants: `XpubKey.next_index` only grows and is advanced under a row lock, so (xpub_key, index)
and the address are unique; keys are never deleted (PROTECT) and a deactivated key keeps its
counter; no private key is ever stored. Gap limit: the run of never-funded addresses after the
key's last funded one never exceeds `XpubKey.gap_limit` (a wallet scanning with that gap sees
every payment); past it an address whose order closed unpaid is reused after a quiet period, never
one that received funds, and at most one order awaits payment on an address (a constraint).

The sandbox chain (`SandboxChainState`, `SandboxBlock`, `SandboxTransaction`): a stored,
in-database stand-in for Bitcoin and Ethereum. A transaction is pending (`block` null) until the
next mined block includes it. `SandboxChainState` (one row) holds the head and is the lock that
serializes mining and sends.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition


class XpubKey(models.Model):
    class Chain(models.TextChoices):
        BITCOIN = "bitcoin", "Bitcoin"
        ETHEREUM = "ethereum", "Ethereum"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="xpub_keys")
    chain = models.CharField(max_length=16, choices=Chain.choices)
    xpub = models.CharField(max_length=128)
    # "mainnet" or "testnet": decides bc1/tb1 on Bitcoin; always mainnet format on Ethereum.
    network = models.CharField(max_length=8, default="mainnet")
    # Next BIP32 non-hardened index to hand out (they stop at 2**31 - 1; the allocator checks).
    next_index = models.PositiveBigIntegerField(default=0)
    # The merchant's wallet stops scanning after this many unused addresses in a row (BIP44: 20).
    gap_limit = models.PositiveIntegerField(default=20)
    # Set while allocation is held back by the gap limit (addresses reused or refused): the
    # dashboard shows it and `payorder.deposit_addresses_constrained` was sent when it was set.
    constrained_since = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "xpub"], name="payorders_xpubkey_chain_xpub_unique"),
            models.UniqueConstraint(
                fields=["organization", "chain"],
                condition=Q(is_active=True),
                name="payorders_xpubkey_one_active_per_chain",
            ),
            models.CheckConstraint(condition=Q(gap_limit__gte=1), name="payorders_xpubkey_gap_limit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.chain} key {self.xpub[:12]}… of org {self.organization_id}"


class DepositAddress(models.Model):
    xpub_key = models.ForeignKey(XpubKey, on_delete=models.PROTECT, related_name="addresses")
    chain = models.CharField(max_length=16, choices=XpubKey.Chain.choices)
    index = models.PositiveIntegerField()
    address = models.CharField(max_length=100, unique=True)
    # When its last order closed without receiving anything (expired or cancelled unpaid); None
    # while an order holds it or once it has ever been funded. Reusable after the quiet period.
    released_at = models.DateTimeField(null=True, blank=True)
    # Test-mode addresses (testnet encoding) are only ever reused by test-mode orders, and
    # live ones by live orders.
    livemode = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["xpub_key", "index"], name="payorders_depositaddress_key_index_unique"),
        ]

    def __str__(self) -> str:
        return self.address


class SandboxChainState(models.Model):
    """The single row (pk=1) holding the sandbox chain's head block number."""

    head = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class SandboxBlock(models.Model):
    number = models.PositiveBigIntegerField(primary_key=True)
    block_hash = models.CharField(max_length=66, unique=True)
    mined_at = models.DateTimeField()

    class Meta:
        ordering = ["number"]


class SandboxTransaction(models.Model):
    tx_hash = models.CharField(max_length=66, unique=True)
    chain = models.CharField(max_length=16, choices=XpubKey.Chain.choices)
    asset = models.CharField(max_length=12)
    from_address = models.CharField(max_length=100)
    to_address = models.CharField(max_length=100, db_index=True)
    amount = models.DecimalField(max_digits=38, decimal_places=18)
    block = models.ForeignKey(SandboxBlock, null=True, blank=True, on_delete=models.PROTECT, related_name="transactions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payorders_sandboxtx_amount_positive"),
        ]
        indexes = [models.Index(fields=["chain", "to_address", "asset"], name="payorders_sbx_to_idx")]

    def __str__(self) -> str:
        return self.tx_hash


# --------------------------------------------------------------------------------------------
# Pay orders
# --------------------------------------------------------------------------------------------
#
# Invariants (SPEC 7):
# - `PayOrder.status` changes only through the django-fsm-2 transitions below (protected field,
#   ConcurrentTransitionMixin: a save from a stale copy fails); services lock the row first
#   (`payorders.locks.payorders_for_update`) and record every transition, and every flag change
#   (underpaid, overpaid, late), as a `PayOrderStatusChange` with its time, cause and actor.
# - A chain transfer is recorded at most once: (chain, tx_hash, log_index) is unique over all
#   orders (`log_index` -1 for a native value transfer), so a hash can never pay two orders.
# - Nothing received is ever dropped: a payment to an order's address is recorded whatever the
#   order's state; an underpaid order waits for the rest until expiry, an overpaid one completes
#   and its excess is refundable, and a payment after expiry is recorded as late and refundable.
# - Settlement is one ledger posting with reference `payorder:<public id>:settlement` (unique per
#   organization), a refund one with `payorder:<public id>:refund`: each happens at most once.


class PayOrder(ConcurrentTransitionMixin, models.Model):
    class Type(models.TextChoices):
        SALE = "SALE", "Sale"
        DEPOSIT = "DEPOSIT", "Deposit"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        AWAITING_PAYMENT = "AWAITING_PAYMENT", "Awaiting payment"
        AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION", "Awaiting confirmation"
        EXECUTING_ORDER = "EXECUTING_ORDER", "Executing order"
        COMPLETED = "COMPLETED", "Completed"
        FAILED = "FAILED", "Failed"
        EXPIRED = "EXPIRED", "Expired"
        REFUNDED = "REFUNDED", "Refunded"

    OPEN_STATUSES = (Status.PENDING, Status.AWAITING_PAYMENT)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="pay_orders")
    type = models.CharField(max_length=8, choices=Type.choices)
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True, max_length=24)
    # The price: `amount` of `currency` (e.g. 100.00 USD); the merchant is credited its worth in
    # `settlement_currency` (the price itself when both are the same).
    amount = models.DecimalField(max_digits=38, decimal_places=18)
    currency = models.CharField(max_length=16)
    settlement_currency = models.CharField(max_length=16)
    customer = models.ForeignKey("accounts.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="pay_orders")
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    redirect_url = models.URLField(max_length=2000, blank=True, default="")
    expires_at = models.DateTimeField()
    failure_reason = models.CharField(max_length=200, blank=True, default="")
    # False for an order created on the sandbox chain or with a test API key: it is paid on the
    # sandbox chain, its payment URIs carry testnet chain ids and addresses (core.livemode).
    livemode = models.BooleanField(default=True)

    # Payment details, fixed by `payment-details` (the chosen quote).
    quote = models.OneToOneField(
        "payorders.PayOrderQuote", null=True, blank=True, on_delete=models.PROTECT, related_name="selected_by"
    )
    deposit_address = models.ForeignKey(DepositAddress, null=True, blank=True, on_delete=models.PROTECT, related_name="pay_orders")
    chain = models.CharField(max_length=16, blank=True, default="")
    source_currency = models.CharField(max_length=12, blank=True, default="")
    source_amount = models.DecimalField(max_digits=38, decimal_places=18, null=True, blank=True)
    settlement_amount = models.DecimalField(max_digits=38, decimal_places=18, null=True, blank=True)
    scan_from_block = models.PositiveBigIntegerField(default=0)
    # Set when the address passes to a later order: transfers in blocks from here on are that
    # order's, so the watcher reads this order's address only below it.
    scan_until_block = models.PositiveBigIntegerField(null=True, blank=True)

    # What arrived (source units; failed transfers excluded) and the flags about it.
    amount_received = models.DecimalField(max_digits=38, decimal_places=18, default=0)
    underpaid = models.BooleanField(default=False)
    overpaid = models.BooleanField(default=False)
    late_payment = models.BooleanField(default=False)
    refund_due = models.DecimalField(
        max_digits=38, decimal_places=18, default=0,
        help_text="Source units received that the payer should get back (overpayment, late or expired payments).",
    )

    # Settlement (one ledger posting).
    settlement_transaction = models.OneToOneField(
        "ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="settled_pay_order"
    )
    settlement_fee = models.DecimalField(max_digits=38, decimal_places=18, null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"], name="payorder_org_recent"),
            models.Index(fields=["status", "expires_at"], name="payorder_status_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payorder_amount_positive"),
            models.CheckConstraint(condition=Q(amount_received__gte=0), name="payorder_received_non_negative"),
            models.CheckConstraint(condition=Q(refund_due__gte=0), name="payorder_refund_due_non_negative"),
            models.UniqueConstraint(
                fields=["deposit_address"], condition=Q(status="AWAITING_PAYMENT"), name="payorder_one_awaiting_order_per_address"
            ),
        ]

    def __str__(self) -> str:
        return f"pay order {self.public_id} ({self.status})"

    # Transitions change state only; payorders.services.history.payorder_transition saves, records and announces them.
    @transition(field=status, source=Status.PENDING, target=Status.AWAITING_PAYMENT)
    def await_payment(self) -> None:
        pass

    @transition(field=status, source=Status.AWAITING_PAYMENT, target=Status.AWAITING_CONFIRMATION)
    def await_confirmation(self) -> None:
        pass

    # The payer goes back to choosing a currency before anything was paid (the checkout page).
    @transition(field=status, source=Status.AWAITING_PAYMENT, target=Status.PENDING)
    def choose_again(self) -> None:
        pass

    # A DEPOSIT for a customer, paid and confirmed, while its customer is credited (services.deposits).
    @transition(field=status, source=Status.AWAITING_CONFIRMATION, target=Status.EXECUTING_ORDER)
    def execute(self) -> None:
        pass

    @transition(field=status, source=[Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER], target=Status.COMPLETED)
    def complete(self) -> None:
        pass

    @transition(field=status, source=[Status.AWAITING_CONFIRMATION, Status.EXECUTING_ORDER], target=Status.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=[Status.PENDING, Status.AWAITING_PAYMENT], target=Status.FAILED)
    def cancel(self) -> None:
        pass

    @transition(field=status, source=[Status.PENDING, Status.AWAITING_PAYMENT], target=Status.EXPIRED)
    def expire(self) -> None:
        pass

    @transition(field=status, source=[Status.COMPLETED, Status.EXPIRED, Status.FAILED], target=Status.REFUNDED)
    def refund(self) -> None:
        pass


class PayOrderQuote(models.Model):
    """One priced option for paying an order: `amount` of `source_currency` on `chain`."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    pay_order = models.ForeignKey(PayOrder, on_delete=models.CASCADE, related_name="quotes")
    source_currency = models.CharField(max_length=12)
    chain = models.CharField(max_length=16)
    amount = models.DecimalField(max_digits=38, decimal_places=18)
    # Units of the order's currency that one unit of source_currency counts for (the bid side).
    rate = models.DecimalField(max_digits=38, decimal_places=18)
    fee = models.DecimalField(max_digits=38, decimal_places=18)
    settlement_amount = models.DecimalField(max_digits=38, decimal_places=18)
    wallet_address = models.CharField(max_length=100, blank=True, default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payorderquote_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.source_currency} on {self.chain} for order {self.pay_order_id}"


class PayOrderStatusChange(models.Model):
    """The history of an order: every transition, and every flag (from == to) with its cause."""

    pay_order = models.ForeignKey(PayOrder, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=24, blank=True, default="")
    to_status = models.CharField(max_length=24)
    cause = models.CharField(max_length=300)
    actor = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=100, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class PayOrderPayment(models.Model):
    """A chain transfer to an order's deposit address, recorded once (unique over all orders)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmations"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed on chain"

    class Source(models.TextChoices):
        SUBMITTED = "submitted", "Hash submitted"
        WATCHER = "watcher", "Found by the watcher"

    pay_order = models.ForeignKey(PayOrder, on_delete=models.PROTECT, related_name="payments")
    chain = models.CharField(max_length=16)
    asset = models.CharField(max_length=12)
    tx_hash = models.CharField(max_length=66)
    log_index = models.IntegerField(default=-1, help_text="-1 for a native value transfer")
    from_address = models.CharField(max_length=100, blank=True, default="")
    to_address = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=38, decimal_places=18)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    confirmations = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=12, choices=Source.choices)
    late = models.BooleanField(default=False)
    detected_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "tx_hash", "log_index"], name="payorderpayment_transfer_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payorderpayment_amount_positive"),
        ]
        indexes = [models.Index(fields=["chain", "tx_hash"], name="payorderpayment_hash")]


class Refund(ConcurrentTransitionMixin, models.Model):
    """Money going back to the payer, in the source currency, to `destination_address`.

    kind=full: the whole order (COMPLETED -> REFUNDED, or an EXPIRED/FAILED order that received
    money); kind=excess: an overpaid COMPLETED order's excess (the order stays COMPLETED).
    Status: awaiting_transaction (EVM: the merchant signs and sends it, then attaches the hash)
    -> sent (the hash is known)."""

    class Kind(models.TextChoices):
        FULL = "full", "Whole order"
        EXCESS = "excess", "Overpaid excess"

    class Status(models.TextChoices):
        AWAITING_TRANSACTION = "awaiting_transaction", "Awaiting the merchant's transaction"
        SENT = "sent", "Sent"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    pay_order = models.ForeignKey(PayOrder, on_delete=models.PROTECT, related_name="refunds")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = FSMField(default=Status.AWAITING_TRANSACTION, choices=Status.choices, protected=True, max_length=24)
    chain = models.CharField(max_length=16)
    currency = models.CharField(max_length=12)
    amount = models.DecimalField(max_digits=38, decimal_places=18)
    destination_address = models.CharField(max_length=100)
    tx_hash = models.CharField(max_length=66, null=True, blank=True)
    ledger_transaction = models.OneToOneField(
        "ledger.Transaction", null=True, blank=True, on_delete=models.PROTECT, related_name="pay_order_refund"
    )
    ledger_amount = models.DecimalField(max_digits=38, decimal_places=18, null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["pay_order", "kind"], name="refund_one_per_order_and_kind"),
            models.UniqueConstraint(fields=["chain", "tx_hash"], condition=Q(tx_hash__isnull=False), name="refund_tx_hash_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    @transition(field=status, source=Status.AWAITING_TRANSACTION, target=Status.SENT)
    def mark_sent(self) -> None:
        pass
