"""The ledger's writers other than postings: assets, wallet lifecycle, and the organization
services behind the ledger API (custom assets, wallets; `POST /transactions` moves money and is
`wallets.movements.organization`).

Invariants:
* Balances, holds and entries are never written here: money moves only through
  `ledger.posting` (reached through the money path, `wallets.pipeline`).
* A wallet's status changes only by its FSM transitions (active <-> suspended -> closed; closed
  only at zero balance and no holds), under the wallet's row lock, and every change is audited.
* The `organization_*` and `staff_*` services check that the caller owns what it names (404
  otherwise) and write their webhook deliveries and audit events in the same transaction.
* Every service runs in the caller's transaction when there is one, else opens its own.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction as db_transaction
from django.db.models import Q
from django_fsm import TransitionNotAllowed

from accounts.models import Customer, Organization, User
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.audit import audit_record
from core.errors import InvalidState, NotFound, ValidationFailed
from core.livemode import deployment_livemode, mode_q, principal_livemode
from ledger.errors import LivemodeMismatch, WalletAlreadyExists, WalletNotEmpty, WalletNotFound
from ledger.locks import wallets_for_update
from ledger.models import Asset, Wallet
from ledger.posting.engine import in_transaction
from ledger.posting.operations import wallet_id_of
from ledger.posting.shards import platform_wallets_ensure
from ledger.selectors import WALLET_RELATED, Viewer, asset_get, wallets_owned
from ledger.serializers import OrgWalletOutput

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


def wallet_open(*, asset: Asset, customer=None, organization=None, kind: str | None = None, label: str = "", purpose: str = "",
                livemode: bool | None = None) -> Wallet:
    """Open a customer wallet (customer=...) or an organization's system wallet
    (organization=..., kind="system"). One open unlabelled wallet per owner, asset and mode.
    Mode (core.livemode): a customer's wallet is of the customer's mode; a system wallet of
    `livemode` (the deployment's by default)."""
    if (customer is None) == (organization is None):
        raise ValueError("a wallet belongs to exactly one of customer or organization")
    kind = kind or (Wallet.Kind.CUSTOMER if customer is not None else Wallet.Kind.SYSTEM)
    if (customer is not None and kind != Wallet.Kind.CUSTOMER) or (organization is not None and kind != Wallet.Kind.SYSTEM):
        raise ValueError(f"kind {kind!r} does not match the owner")
    owner_org_id = organization.pk if organization is not None else customer.organization_id
    if asset.organization_id is not None and asset.organization_id != owner_org_id:
        raise ValidationFailed("currency: unknown asset.", details={"fields": {"currency": ["Unknown asset."]}})
    if customer is not None:
        if livemode is not None and bool(livemode) != bool(customer.livemode):
            raise LivemodeMismatch("A wallet is of its customer's mode.", details={"customer_livemode": customer.livemode})
        livemode = customer.livemode
    elif livemode is None:
        livemode = deployment_livemode()
    wallet = Wallet(asset=asset, kind=kind, customer=customer, organization=organization, label=label or "", purpose=purpose or "", livemode=livemode)
    with in_transaction():
        try:
            with db_transaction.atomic():
                wallet.save(force_insert=True)
        except IntegrityError:
            open_wallets = Wallet.objects.filter(asset=asset, label="").exclude(status=Wallet.Status.CLOSED)
            existing = (open_wallets.filter(customer=customer) if customer is not None else open_wallets.filter(organization=organization, purpose=purpose or "", livemode=livemode)).first()
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
    livemode = principal_livemode(principal)  # a test key opens test-mode wallets for test-mode customers (core.livemode)
    with db_transaction.atomic():
        if system:
            wallet = wallet_open(asset=asset, organization=organization, label=label, livemode=livemode)
        else:
            customer = Customer.objects.filter(mode_q(livemode), organization=organization, external_id=customer_external_id).first()
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
    livemode = principal_livemode(principal if principal is not None else user)
    viewer = Viewer(organization=organization, livemode=livemode) if organization is not None else Viewer(user=user, livemode=livemode)
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

