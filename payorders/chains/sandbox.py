"""The sandbox chain: a stand-in for Bitcoin and Ethereum stored in our database (no network).

`sandbox_send` records a pending transaction; `sandbox_mine` appends blocks, the first of which
includes every pending transaction. Both lock the single `SandboxChainState` row, so concurrent
mines number blocks consecutively and a send is never half-included. Confirmations follow the
usual rule: head - block + 1. Each transaction carries exactly one transfer.

The sandbox checks that addresses are well-formed for the asset's chain but keeps no balances of
its own senders: `from_address` defaults to a faucet with unlimited funds, and a balance is what
an address received in mined blocks minus what it sent (pending sends included, so a wallet
cannot spend twice what it has).
"""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from core.errors import ValidationFailed
from core.money import parse_amount
from payorders.addresses import normalize_address
from payorders.chains.base import (
    ChainProvider,
    ChainTransfer,
    TransactionNotFound,
    TransferStatus,
    chain_asset,
    confirmations_required,
    normalize_tx_hash,
)
from payorders.models import SandboxBlock, SandboxChainState, SandboxTransaction

FAUCET_ADDRESS = "sandbox-faucet"
MAX_BLOCKS_PER_MINE = 1000


def _lock_state() -> SandboxChainState:
    SandboxChainState.objects.get_or_create(pk=1)
    return SandboxChainState.objects.select_for_update().get(pk=1)


def _head() -> int:
    state = SandboxChainState.objects.filter(pk=1).values_list("head", flat=True).first()
    return state or 0


def _received(address: str, asset: str) -> Decimal:
    total = SandboxTransaction.objects.filter(to_address=address, asset=asset, block__isnull=False).aggregate(
        total=Sum("amount")
    )["total"]
    return total or Decimal(0)


def _sent(address: str, asset: str, *, include_pending: bool) -> Decimal:
    qs = SandboxTransaction.objects.filter(from_address=address, asset=asset)
    if not include_pending:
        qs = qs.filter(block__isnull=False)
    return qs.aggregate(total=Sum("amount"))["total"] or Decimal(0)


@transaction.atomic
def sandbox_send(*, to_address: str, amount, currency: str, from_address: str | None = None) -> str:
    """Broadcast a transfer on the sandbox chain; returns its tx hash (pending until mined)."""
    asset = chain_asset(currency)
    amount = parse_amount(amount, exponent=asset.decimals, field="amount")
    to_address = normalize_address(chain=asset.chain, address=to_address, field="to_address")
    if from_address in (None, "", FAUCET_ADDRESS):
        sender = FAUCET_ADDRESS
        _lock_state()
    else:
        sender = normalize_address(chain=asset.chain, address=from_address, field="from_address")
        _lock_state()  # serializes spends, so two sends cannot both use the same balance
        available = _received(sender, asset.symbol) - _sent(sender, asset.symbol, include_pending=True)
        if available < amount:
            raise ValidationFailed(
                "from_address does not hold enough on the sandbox chain.",
                details={"fields": {"from_address": ["insufficient balance"]}, "available": str(available)},
            )
    for _ in range(3):
        tx_hash = "0x" + secrets.token_hex(32)
        try:
            with transaction.atomic():
                SandboxTransaction.objects.create(
                    tx_hash=tx_hash,
                    chain=asset.chain,
                    asset=asset.symbol,
                    from_address=sender,
                    to_address=to_address,
                    amount=amount,
                )
            return tx_hash
        except IntegrityError:  # pragma: no cover - a 256-bit collision
            continue
    raise RuntimeError("could not allocate a unique sandbox tx hash")  # pragma: no cover


@transaction.atomic
def sandbox_mine(*, blocks: int = 1) -> int:
    """Mine `blocks` blocks (1..1000); the first includes all pending transactions. Returns the head."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= MAX_BLOCKS_PER_MINE:
        raise ValidationFailed(
            f"blocks must be an integer from 1 to {MAX_BLOCKS_PER_MINE}.",
            details={"fields": {"blocks": [f"1..{MAX_BLOCKS_PER_MINE}"]}},
        )
    state = _lock_state()
    now = timezone.now()
    first = state.head + 1
    new_blocks = [
        SandboxBlock(
            number=n,
            block_hash="0x" + hashlib.sha256(f"coffer-sandbox-block:{n}:{now.isoformat()}".encode()).hexdigest(),
            mined_at=now,
        )
        for n in range(first, first + blocks)
    ]
    SandboxBlock.objects.bulk_create(new_blocks)
    SandboxTransaction.objects.filter(block__isnull=True).update(block_id=first)
    state.head = first + blocks - 1
    state.save(update_fields=["head", "updated_at"])
    return state.head


class SandboxChainProvider(ChainProvider):
    """`chain` is the chain the sandbox stands in for ("bitcoin" or "ethereum")."""

    name = "sandbox"

    def _transfer(self, tx: SandboxTransaction, head: int) -> ChainTransfer:
        block_number = tx.block_id
        return ChainTransfer(
            tx_hash=tx.tx_hash,
            chain=tx.chain,
            asset=tx.asset,
            from_address=tx.from_address,
            to_address=tx.to_address,
            amount=tx.amount.quantize(Decimal(1).scaleb(-chain_asset(tx.asset).decimals)),
            block_number=block_number,
            confirmations=0 if block_number is None else head - block_number + 1,
            status=TransferStatus.PENDING if block_number is None else TransferStatus.SUCCEEDED,
        )

    def _tx(self, tx_hash: str) -> SandboxTransaction | None:
        return SandboxTransaction.objects.filter(tx_hash=normalize_tx_hash(tx_hash), chain=self.chain).first()

    def get_transaction(self, tx_hash: str) -> list[ChainTransfer] | None:
        tx = self._tx(tx_hash)
        if tx is None:
            return None
        return [self._transfer(tx, _head())]

    def get_confirmations(self, tx_hash: str) -> int:
        tx = self._tx(tx_hash)
        if tx is None:
            raise TransactionNotFound(details={"tx_hash": tx_hash, "chain": self.chain})
        return 0 if tx.block_id is None else _head() - tx.block_id + 1

    def transfers_to(self, address: str, asset: str, from_block: int = 0) -> list[ChainTransfer]:
        spec = self._asset(asset)
        address = normalize_address(chain=self.chain, address=address, field="address")
        head = _head()
        txs = SandboxTransaction.objects.filter(
            chain=self.chain, to_address=address, asset=spec.symbol, block__number__gte=max(from_block, 0)
        ).order_by("block_id", "id")
        return [self._transfer(tx, head) for tx in txs]

    def transfers_to_addresses(self, addresses: list[str], asset: str, from_block: int, to_block: int) -> list[ChainTransfer]:
        spec = self._asset(asset)
        wanted = sorted({normalize_address(chain=self.chain, address=a, field="addresses") for a in addresses})
        if not wanted or to_block < from_block:
            return []
        head = _head()
        txs = SandboxTransaction.objects.filter(
            chain=self.chain, asset=spec.symbol, to_address__in=wanted,
            block__number__gte=max(from_block, 0), block__number__lte=min(to_block, head),
        ).order_by("block_id", "id")
        return [self._transfer(tx, head) for tx in txs]

    def pending_transfers_to(self, address: str, asset: str) -> list[ChainTransfer]:
        """Sent on the sandbox chain and not mined yet."""
        spec = self._asset(asset)
        address = normalize_address(chain=self.chain, address=address, field="address")
        txs = SandboxTransaction.objects.filter(chain=self.chain, to_address=address, asset=spec.symbol, block__isnull=True).order_by("id")
        head = _head()
        return [self._transfer(tx, head) for tx in txs]

    def get_balance(self, address: str, asset: str) -> Decimal:
        spec = self._asset(asset)
        address = normalize_address(chain=self.chain, address=address, field="address")
        balance = _received(address, spec.symbol) - _sent(address, spec.symbol, include_pending=False)
        return balance.quantize(Decimal(1).scaleb(-spec.decimals))

    def current_block(self) -> int:
        return _head()

    def confirmations_required(self, chain: str | None = None) -> int:
        return confirmations_required("sandbox")
