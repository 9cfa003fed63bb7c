"""On-chain receipts to our deposit addresses against settled pay orders (issue 13 item 5).

Invariants:
* Read-only: nothing is written or locked; the chain is read through the provider interface
  (`ChainProvider.transfers_to_addresses`, sandbox or EVM), never while a transaction is open
  on our side longer than the reads themselves.
* A receipt is a successful transfer of a chain asset to one of our deposit addresses (the
  organization's, or every one) in the block range. It is explained when a recorded payment
  (`PayOrderPayment`, chain + hash + log index) of a SETTLED order (a settlement transaction in
  the ledger) names it with the same amount; any other receipt is reported: no payment recorded,
  the order not settled (still open, expired, failed: late or unclaimed money to refund), or the
  amount differs.
* Every confirmed payment of a settled order in the block range must be among the receipts;
  one that is not (a reorganised chain, a payment recorded on the strength of a node that lied)
  reports its order as settled without a receipt.
* A provider that cannot answer raises `ChainUnavailable`: no report rather than a wrong one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal

from payorders.chains import get_chain_provider
from payorders.models import DepositAddress, PayOrderPayment


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    log_index: int
    asset: str
    to_address: str
    amount: Decimal
    block_number: int | None
    pay_order: str | None  # public id of the order whose payment names it
    order_status: str | None
    reason: str


@dataclass(frozen=True)
class MissingReceipt:
    pay_order: str
    organization_id: int
    order_status: str
    tx_hash: str
    log_index: int
    asset: str
    to_address: str
    amount: Decimal
    block_number: int | None
    settlement_transaction_id: int


@dataclass
class ChainReconciliationReport:
    chain: str
    from_block: int
    to_block: int
    addresses: int
    receipts: int = 0
    explained: int = 0
    receipts_without_settled_order: list[Receipt] = field(default_factory=list)
    settled_orders_without_receipt: list[MissingReceipt] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.receipts_without_settled_order and not self.settled_orders_without_receipt

    def as_dict(self) -> dict:
        def plain(value):
            return format(value.normalize(), "f") if isinstance(value, Decimal) else value

        return {
            "chain": self.chain, "from_block": self.from_block, "to_block": self.to_block, "addresses": self.addresses,
            "receipts": self.receipts, "explained": self.explained, "clean": self.clean,
            "receipts_without_settled_order": [{k: plain(v) for k, v in asdict(r).items()} for r in self.receipts_without_settled_order],
            "settled_orders_without_receipt": [{k: plain(v) for k, v in asdict(m).items()} for m in self.settled_orders_without_receipt],
        }


def chain_reconcile(*, chain: str, from_block: int = 0, to_block: int | None = None, organization=None) -> ChainReconciliationReport:
    """Receipts to the deposit addresses (of `organization`, or all) in blocks `from_block` to
    `to_block` (default: the head) against settled orders (module docstring)."""
    provider = get_chain_provider(chain)
    head = provider.current_block()
    last = head if to_block is None else min(int(to_block), head)
    start = max(int(from_block), 0)
    addresses = DepositAddress.objects.filter(chain=chain)
    if organization is not None:
        addresses = addresses.filter(xpub_key__organization=organization)
    wanted = list(addresses.values_list("address", flat=True))
    report = ChainReconciliationReport(chain=chain, from_block=start, to_block=last, addresses=len(wanted))
    transfers = []
    if wanted and start <= last:
        for asset in provider.reconcilable_assets():
            transfers += provider.transfers_to_addresses(wanted, asset, start, last)
    report.receipts = len(transfers)

    keys = {(t.tx_hash.lower(), t.stored_log_index) for t in transfers}
    hashes = sorted({h for h, _ in keys})
    payments = {
        (p.tx_hash.lower(), p.log_index): p
        for p in PayOrderPayment.objects.filter(chain=chain, tx_hash__in=hashes).select_related("pay_order")
    }
    for t in transfers:
        payment = payments.get((t.tx_hash.lower(), t.stored_log_index))
        order = payment.pay_order if payment is not None else None
        if payment is None:
            reason = "No pay-order payment records this transfer."
        elif order.settlement_transaction_id is None:
            reason = f"Order {order.public_id} is {order.status} and not settled."
        elif payment.amount != t.amount:
            reason = f"The chain moved {t.amount.normalize():f}, the payment records {payment.amount.normalize():f}."
        else:
            report.explained += 1
            continue
        report.receipts_without_settled_order.append(Receipt(
            tx_hash=t.tx_hash, log_index=t.stored_log_index, asset=t.asset, to_address=t.to_address, amount=t.amount,
            block_number=t.block_number, pay_order=str(order.public_id) if order else None, order_status=order.status if order else None,
            reason=reason,
        ))

    settled = PayOrderPayment.objects.filter(
        chain=chain, status=PayOrderPayment.Status.CONFIRMED, block_number__gte=start, block_number__lte=last,
        pay_order__settlement_transaction__isnull=False,
    ).select_related("pay_order").order_by("block_number", "id")
    if organization is not None:
        settled = settled.filter(pay_order__organization=organization)
    for payment in settled:
        if (payment.tx_hash.lower(), payment.log_index) in keys:
            continue
        order = payment.pay_order
        report.settled_orders_without_receipt.append(MissingReceipt(
            pay_order=str(order.public_id), organization_id=order.organization_id, order_status=order.status, tx_hash=payment.tx_hash,
            log_index=payment.log_index, asset=payment.asset, to_address=payment.to_address, amount=payment.amount,
            block_number=payment.block_number, settlement_transaction_id=order.settlement_transaction_id,
        ))
    return report
