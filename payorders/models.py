"""Pay-order storage.

Deposit addresses (SPEC 7): an organization registers one active account-level extended public
key per chain (`XpubKey`); each `DepositAddress` is derived from it at the next index.
Invariants: `XpubKey.next_index` only grows and is advanced under a row lock, so (xpub_key, index)
and the address are unique and an address is never handed out twice; keys are never deleted
(PROTECT) and a deactivated key keeps its counter; no private key is ever stored.

The sandbox chain (`SandboxChainState`, `SandboxBlock`, `SandboxTransaction`): a stored,
in-database stand-in for Bitcoin and Ethereum. A transaction is pending (`block` null) until the
next mined block includes it. `SandboxChainState` (one row) holds the head and is the lock that
serializes mining and sends.
"""

from django.db import models
from django.db.models import Q


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
        ]

    def __str__(self) -> str:
        return f"{self.chain} key {self.xpub[:12]}… of org {self.organization_id}"


class DepositAddress(models.Model):
    xpub_key = models.ForeignKey(XpubKey, on_delete=models.PROTECT, related_name="addresses")
    chain = models.CharField(max_length=16, choices=XpubKey.Chain.choices)
    index = models.PositiveIntegerField()
    address = models.CharField(max_length=100, unique=True)
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
