"""The ledger's writers other than postings: assets, wallet lifecycle, and the organization
services behind the ledger API (custom assets, wallets, `POST /transactions`).

Invariants:
* Balances, holds and entries are never written here: money moves only through
  `ledger.posting` (an organization transaction through `wallets.pipeline.money_path`).
* A wallet's status changes only by its FSM transitions (active <-> suspended -> closed; closed
  only at zero balance and no holds), under the wallet's row lock, and every change is audited.
* The `organization_*` and `staff_*` services check that the caller owns what it names (404
  otherwise) and write their webhook deliveries and audit events in the same transaction.
* Every service runs in the caller's transaction when there is one, else opens its own;
  `organization_transaction_post` requires the caller's (the idempotent request's).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction as db_transaction
from django.db.models import Q
from django_fsm import TransitionNotAllowed

from accounts.models import Customer, Organization, User
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.models import Direction, MovementType
from compliance.services import audit_record
from core.errors import InvalidState, NotFound, ValidationFailed
from core.money import parse_amount
from ledger.errors import DuplicateReference, WalletAlreadyExists, WalletNotEmpty, WalletNotFound
from ledger.locks import wallets_for_update
from ledger.models import Asset, Transaction, Wallet
from ledger.posting import Issue, Redeem, Transfer
from ledger.posting.engine import in_transaction
from ledger.posting.operations import wallet_id_of
from ledger.posting.shards import platform_wallets_ensure
from ledger.selectors import WALLET_RELATED, Viewer, asset_get, organization_wallets_get, wallets_owned
from ledger.serializers import OrgWalletOutput, TransactionPresenter, transactions_with_entries
from ledger.usage import UsageLeg, WalletOwner, usage_charges
from wallets.pipeline import LimitScope, MoneyMovement, money_path

WALLET_EVENTS = {"suspend": "wallet.suspended", "activate": "wallet.activated", "close": "wallet.closed"}


# --- Assets and wallets ---------------------------------------------------------------------------


def asset_create(*, code: str, name: str, exponent: int, kind: str = Asset.Kind.CUSTOM, organization=None) -> Asset:
    code = (code or "").strip().upper()
    errors: dict[str, list[str]] = {}
    if not code or len(code) > 16 or not code.replace("_", "").replace("-", "").isalnum():
        errors["code"] = ["1-16 letters, digits, '-' or '_'."]
    if isinstance(exponent, bool) or not isinstance(exponent, int) or not 0 <= exponent <= 18:
        errors["exponent"] = ["An integer from 0 to 18."]
    if kind not in Asset.Kind.values:
        errors["kind"] = [f"One of {', '.join(Asset.Kind.values)}."]
    if errors:
        raise ValidationFailed("Invalid asset: " + ", ".join(errors), details={"fields": errors})
    clash = Asset.objects.filter(code=code).filter(Q(organization__isnull=True) | Q(organization=organization))
    if clash.exists():
        raise ValidationFailed(f"code: an asset {code} already exists.", details={"fields": {"code": ["An asset with this code already exists."]}})
    with in_transaction():
        try:
            with db_transaction.atomic():
                asset = Asset.objects.create(code=code, name=name, exponent=exponent, kind=kind, organization=organization)
        except IntegrityError:
            raise ValidationFailed(f"code: an asset {code} already exists.", details={"fields": {"code": ["An asset with this code already exists."]}}) from None
        platform_wallets_ensure(asset=asset, purpose=Wallet.Purpose.ISSUANCE)
        return asset


def wallet_open(*, asset: Asset, customer=None, organization=None, kind: str | None = None, label: str = "", purpose: str = "") -> Wallet:
    """Open a customer wallet (customer=...) or an organization's system wallet
    (organization=..., kind="system"). One open unlabelled wallet per owner and asset."""
    if (customer is None) == (organization is None):
        raise ValueError("a wallet belongs to exactly one of customer or organization")
    kind = kind or (Wallet.Kind.CUSTOMER if customer is not None else Wallet.Kind.SYSTEM)
    if (customer is not None and kind != Wallet.Kind.CUSTOMER) or (organization is not None and kind != Wallet.Kind.SYSTEM):
        raise ValueError(f"kind {kind!r} does not match the owner")
    owner_org_id = organization.pk if organization is not None else customer.organization_id
    if asset.organization_id is not None and asset.organization_id != owner_org_id:
        raise ValidationFailed("currency: unknown asset.", details={"fields": {"currency": ["Unknown asset."]}})
    wallet = Wallet(asset=asset, kind=kind, customer=customer, organization=organization, label=label or "", purpose=purpose or "")
    with in_transaction():
        try:
            with db_transaction.atomic():
                wallet.save(force_insert=True)
        except IntegrityError:
            open_wallets = Wallet.objects.filter(asset=asset, label="").exclude(status=Wallet.Status.CLOSED)
            existing = (open_wallets.filter(customer=customer) if customer is not None else open_wallets.filter(organization=organization, purpose=purpose or "")).first()
            raise WalletAlreadyExists(details={"wallet_id": existing.pk if existing else None}) from None
        return wallet


def _transition_wallet(wallet: Wallet | int, name: str, *, actor, reason: str = "") -> Wallet:
    wid = wallet_id_of(wallet, "wallet_id")
    with in_transaction():
        try:
            locked = wallets_for_update().get(pk=wid)
        except Wallet.DoesNotExist:
            raise WalletNotFound(f"Wallet {wid} not found.") from None
        before = locked.status
        if name == "close" and locked.status != Wallet.Status.CLOSED and (locked.balance != 0 or locked.held != 0):
            raise WalletNotEmpty(
                f"Wallet {wid} still holds {locked.asset.format(locked.balance)} {locked.asset.code}"
                + (f" with {locked.asset.format(locked.held)} on hold." if locked.held else "."),
                details={"wallet_id": wid, "balance": locked.asset.format(locked.balance), "held": locked.asset.format(locked.held)},
            )
        try:
            getattr(locked, name)()
        except TransitionNotAllowed:
            raise InvalidState(f"A {before} wallet cannot be {'closed' if name == 'close' else name + 'd'}.", details={"wallet_id": wid, "status": before}) from None
        locked.save(update_fields=["status", "updated_at"])
        audit_record(actor=actor, action=f"wallet.{name}", target=locked, data={"from": before, "to": locked.status, "reason": reason})
        return locked


def wallet_suspend(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "suspend", actor=actor, reason=reason)


def wallet_activate(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "activate", actor=actor, reason=reason)


def wallet_close(*, wallet: Wallet | int, actor=None, reason: str = "") -> Wallet:
    return _transition_wallet(wallet, "close", actor=actor, reason=reason)


# --- Organization assets and transactions --------------------------------------------------------


def organization_asset_create(*, organization: Organization, principal, code: str, name: str, exponent: int) -> Asset:
    """A custom asset visible only to `organization` (400 VALIDATION_ERROR on a taken code)."""
    with db_transaction.atomic():
        asset = asset_create(code=code, name=name, exponent=exponent, organization=organization)
        audit_record(
            actor=principal if isinstance(principal, User) else None,
            action="asset.create",
            target=asset,
            data={"code": asset.code, "exponent": asset.exponent, "organization_id": organization.pk, **principal_audit_data(principal)},
        )
    return asset


def _ledger_operations(*, organization: Organization, operations: list[dict[str, Any]]) -> tuple[list, dict[int, Wallet]]:
    """The requested operations as ledger operations, every wallet checked to be the
    organization's (else a 404 that says nothing about the wallet) and every amount parsed for
    its wallet's asset (400 naming `operations[i].amount`). Returns them with the wallets."""
    ids = {op[key] for op in operations for key in ("wallet_id", "source_wallet_id", "destination_wallet_id") if key in op}
    owned = organization_wallets_get(organization=organization, ids=ids)
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


def _limit_scopes(operations: list, wallets: dict[int, Wallet]) -> list[LimitScope]:
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
        LimitScope(assets[asset_id], movement_type, direction, amount, customer_id=customer_id)
        for (customer_id, asset_id, movement_type, direction), amount in usage_charges(tx_type=Transaction.Type.LEDGER, legs=legs, owners=owners).items()
    ]


def _checked_wallet(operations: list, wallets: dict[int, Wallet]) -> tuple[Wallet | None, str, Decimal]:
    """The wallet the risk screen looks at: the first customer wallet money leaves (outgoing),
    else the first one money enters (incoming); None when only system wallets take part."""
    for outgoing in (True, False):
        for op in operations:
            wid = (op.wallet if isinstance(op, Redeem) else op.source if isinstance(op, Transfer) else None) if outgoing else (
                op.wallet if isinstance(op, Issue) else op.destination if isinstance(op, Transfer) else None)
            if wid is not None and wallets[wid].customer_id is not None:
                return wallets[wid], Direction.OUTGOING if outgoing else Direction.INCOMING, op.amount
    return None, Direction.OUTGOING, Decimal(0)


def _present(organization: Organization, transaction_id: int) -> dict[str, Any]:
    tx = transactions_with_entries(Transaction.objects.filter(pk=transaction_id)).get()
    return TransactionPresenter(viewer=Viewer(organization=organization)).one(tx, detail=True)


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
    ledger_operations, wallets = _ledger_operations(organization=organization, operations=operations)
    scopes = _limit_scopes(ledger_operations, wallets)
    checked, direction, amount = _checked_wallet(ledger_operations, wallets)
    published: dict[str, Any] = {}

    def publish(tx: Transaction) -> None:
        tx.known_wallets = wallets
        published["representation"] = representation = TransactionPresenter(viewer=Viewer(organization=organization)).one(tx, detail=True)
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
        result.error.details["transaction"] = _present(organization, existing.pk) if existing is not None else None
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


# --- Organization and staff wallet changes ---------------------------------------------------------


def _wallet_payload(wallet) -> dict[str, Any]:
    return dict(OrgWalletOutput(wallet).data)


def organization_wallet_open(*, organization: Organization, principal, currency: str, customer_external_id: str = "",
                             system: bool = False, label: str = "") -> Wallet:
    """Open a wallet for one of the organization's customers, or a system wallet of the
    organization; audited, and announced by a `wallet.created` webhook in the same transaction."""
    try:
        asset = asset_get(code=currency, organization=organization)
    except Asset.DoesNotExist:
        raise ValidationFailed(f"currency: unknown asset {currency!r}.", details={"fields": {"currency": ["Unknown asset."]}}) from None
    with db_transaction.atomic():
        if system:
            wallet = wallet_open(asset=asset, organization=organization, label=label)
        else:
            customer = Customer.objects.filter(organization=organization, external_id=customer_external_id).first()
            if customer is None:
                raise NotFound("Customer not found.", details={"customer_external_id": customer_external_id})
            wallet = wallet_open(asset=asset, customer=customer, label=label)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet.pk)
        webhook_publish(organization=organization, event_type="wallet.created", payload=_wallet_payload(wallet))
        audit_record(
            actor=principal if isinstance(principal, User) else None, action="wallet.open", target=wallet,
            data={"currency": asset.code, "label": label, "system": system, "customer_external_id": customer_external_id or None,
                  **principal_audit_data(principal)},
        )
    return wallet


def organization_wallet_transition(*, organization: Organization | None, user: User | None, wallet_id: int, action: str,
                                   principal=None, reason: str = "") -> Wallet:
    """Suspend, activate or close a wallet the caller owns (404 otherwise) through the ledger's
    FSM services (INVALID_STATE, WALLET_NOT_EMPTY); an organization's wallet change is announced
    by a `wallet.<suspended|activated|closed>` webhook in the same transaction."""
    viewer = Viewer(organization=organization) if organization is not None else Viewer(user=user)
    owned = wallets_owned(viewer=viewer)
    if organization is None:
        owned = owned.filter(kind=Wallet.Kind.CUSTOMER)
    if not owned.filter(pk=wallet_id).exists():
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    service = {"suspend": wallet_suspend, "activate": wallet_activate, "close": wallet_close}[action]
    actor = user if user is not None else (principal if isinstance(principal, User) else None)
    with db_transaction.atomic():
        service(wallet=wallet_id, actor=actor, reason=reason)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet_id)
        if organization is not None:
            webhook_publish(organization=organization, event_type=WALLET_EVENTS[action], payload=_wallet_payload(wallet))
    return wallet


def staff_wallet_transition(*, user: User, wallet_id: int, action: str, reason: str = "") -> Wallet:
    """A staff member suspends or activates any wallet through the ledger's FSM services
    (audited with the staff actor); the owning organization, if any, gets the webhook."""
    if not Wallet.objects.filter(pk=wallet_id).exists():
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    service = {"suspend": wallet_suspend, "activate": wallet_activate}[action]
    with db_transaction.atomic():
        service(wallet=wallet_id, actor=user, reason=reason)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet_id)
        owner = wallet.organization or (wallet.customer.organization if wallet.customer_id else None)
        if owner is not None:
            webhook_publish(organization=owner, event_type=WALLET_EVENTS[action], payload=_wallet_payload(wallet))
    return wallet

