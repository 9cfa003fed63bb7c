"""An organization's `POST /transactions` (seed 003): its operations, applied in order, all or
none, as one money-path movement. The customers whose wallets take part are locked and checked
(limits per KYC level, risk rules: as the organization chose); every operation counts toward
their usage (issue = deposit, redeem = withdrawal). Requires the caller's transaction (the
idempotent request's)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from accounts.models import Organization
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.models import Direction, MovementType
from core.livemode import principal_livemode
from core.money import parse_amount
from ledger.errors import DuplicateReference, WalletNotFound
from ledger.models import Transaction, Wallet
from ledger.posting import Issue, Redeem, Transfer
from ledger.selectors import Viewer, organization_wallets_get
from ledger.serializers import TransactionPresenter, transactions_with_entries
from ledger.usage import UsageLeg, WalletOwner, usage_charges
from wallets.pipeline import LimitScope, MoneyMovement, money_path


def _ledger_operations(*, organization: Organization, principal, operations: list[dict[str, Any]]) -> tuple[list, dict[int, Wallet]]:
    """The requested operations as ledger operations, every wallet checked to be the
    organization's (else a 404 that says nothing about the wallet) and every amount parsed for
    its wallet's asset (400 naming `operations[i].amount`), and of the caller's mode (core.livemode:
    a test key's wallets are test mode; the other mode's are 404 too). Returns them with the wallets."""
    ids = {op[key] for op in operations for key in ("wallet_id", "source_wallet_id", "destination_wallet_id") if key in op}
    owned = organization_wallets_get(organization=organization, ids=ids, livemode=principal_livemode(principal))
    out: list = []
    for index, op in enumerate(operations):
        names = ("source_wallet_id", "destination_wallet_id") if op["type"] == "transfer" else ("wallet_id",)
        for name in names:
            if op[name] not in owned:
                raise WalletNotFound("Wallet not found.", details={"operation_index": index, "field": f"operations[{index}].{name}"})
        asset = owned[op[names[0]]].asset
        amount = parse_amount(op["amount"], exponent=asset.exponent, field=f"operations[{index}].amount")
        currency = op["currency"].strip().upper() if op.get("currency") else None
        if op["type"] == "issue":
            out.append(Issue(wallet=op["wallet_id"], amount=amount, currency=currency))
        elif op["type"] == "redeem":
            out.append(Redeem(wallet=op["wallet_id"], amount=amount, currency=currency))
        else:
            out.append(Transfer(source=op["source_wallet_id"], destination=op["destination_wallet_id"], amount=amount, currency=currency))
    return out, owned


_OUTSIDE = 0  # the issuance side of an issue or redeem: no customer


def limit_scopes(operations: list, wallets: dict[int, Wallet]) -> list[LimitScope]:
    """What the operations count toward each customer's usage (`ledger.usage.usage_charges`,
    the engine's own definition), as the limit scopes the money path enforces."""
    legs = []
    for op in operations:
        if isinstance(op, Issue):
            legs.append(UsageLeg("issue", _OUTSIDE, op.wallet, wallets[op.wallet].asset_id, op.amount))
        elif isinstance(op, Redeem):
            legs.append(UsageLeg("redeem", op.wallet, _OUTSIDE, wallets[op.wallet].asset_id, op.amount))
        else:
            legs.append(UsageLeg("transfer", op.source, op.destination, wallets[op.source].asset_id, op.amount))
    owners = {pk: WalletOwner(w.customer_id, False) for pk, w in wallets.items()} | {_OUTSIDE: WalletOwner(None, False)}
    assets = {w.asset_id: w.asset for w in wallets.values()}
    return [
        LimitScope(assets[asset_id], movement_type, direction, charge.amount, customer_id=customer_id)
        for (customer_id, asset_id, movement_type, direction), charge in usage_charges(tx_type=Transaction.Type.LEDGER, legs=legs, owners=owners).items()
    ]


def checked_wallet(operations: list, wallets: dict[int, Wallet]) -> tuple[Wallet | None, str, Decimal]:
    """The wallet the risk screen looks at: the first customer wallet money leaves (outgoing),
    else the first one money enters (incoming); None when only system wallets take part."""
    for outgoing in (True, False):
        for op in operations:
            wid = (op.wallet if isinstance(op, Redeem) else op.source if isinstance(op, Transfer) else None) if outgoing else (
                op.wallet if isinstance(op, Issue) else op.destination if isinstance(op, Transfer) else None)
            if wid is not None and wallets[wid].customer_id is not None:
                return wallets[wid], Direction.OUTGOING if outgoing else Direction.INCOMING, op.amount
    return None, Direction.OUTGOING, Decimal(0)


def _present(organization: Organization, transaction_id: int, livemode: bool = True) -> dict[str, Any]:
    tx = transactions_with_entries(Transaction.objects.filter(pk=transaction_id)).get()
    return TransactionPresenter(viewer=Viewer(organization=organization, livemode=livemode)).one(tx, detail=True)


def organization_transaction_post(
    *,
    organization: Organization,
    principal,
    reference: str,
    operations: list[dict[str, Any]],
    description: str = "",
    metadata: dict | None = None,
) -> dict[str, Any]:
    """Post an organization's operations in order, all or none (seed 003), through the money
    path, and return the transaction's representation. The customers whose wallets take part
    are locked and checked (limits per KYC level, risk rules: as the organization chose), and
    every operation counts toward their usage (issue = deposit, redeem = withdrawal).

    Refusals are raised as their `CofferError` AFTER the failed transaction, its
    `transaction.failed` webhook deliveries and its audit event are written: the caller (the
    idempotent request) commits those together with the error response. A reference already used
    by the organization (completed or failed) raises DUPLICATE_REFERENCE carrying that
    transaction; nothing else is written then. Must run inside a database transaction."""
    ledger_operations, wallets = _ledger_operations(organization=organization, principal=principal, operations=operations)
    scopes = limit_scopes(ledger_operations, wallets)
    checked, direction, amount = checked_wallet(ledger_operations, wallets)
    published: dict[str, Any] = {}

    def publish(tx: Transaction) -> None:
        tx.known_wallets = wallets
        published["representation"] = representation = TransactionPresenter(viewer=Viewer(organization=organization, livemode=principal_livemode(principal))).one(tx, detail=True)
        if tx.status in (Transaction.Status.COMPLETED, Transaction.Status.FAILED):
            webhook_publish(organization=organization, event_type=f"transaction.{tx.status}", payload=representation)

    result = money_path(MoneyMovement(
        actor=principal, movement_type=MovementType.TRANSFER if direction == Direction.OUTGOING else MovementType.DEPOSIT,
        ledger_type=Transaction.Type.LEDGER, wallet=checked, amount=amount, operations=ledger_operations, direction=direction,
        limits=scopes, customers=sorted({s.customer_id for s in scopes}), step_up=False, risk=checked is not None,
        organization=organization, reference=reference, description=description, metadata=metadata or {},
        publish=publish, audit_action="transaction.{status}",
        audit_data={"reference": reference, "operations": len(operations), **principal_audit_data(principal)},
    ))
    if isinstance(result.error, DuplicateReference):
        existing = result.transaction
        result.error.details["transaction"] = _present(organization, existing.pk, principal_livemode(principal)) if existing is not None else None
        raise result.error
    tx = result.transaction
    if tx is None:  # refused before posting (limits, risk): nothing recorded in the ledger
        raise result.error
    representation = published["representation"]
    if not result.ok:
        error = result.error
        error.details.update(
            code=error.code,
            reason=error.message,
            operation_index=tx.failure_operation_index,
            transaction_id=tx.pk,
            transaction=representation,
        )
        raise error
    return representation
