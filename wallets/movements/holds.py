"""Authorization holds for organizations (`/api/v1/holds`): authorize, capture, void, expire.

Invariants:
* Authorize (`organization_hold_create`) runs the money path (`wallets.pipeline.money_path`)
  with `pending=True`: validate -> own wallets (404 otherwise) -> lock customers, wallets ->
  limits -> `ledger_hold_pending`, which stores the transfer as a `pending` ledger transaction,
  reserves the amount on the source wallet (`Hold`, `Wallet.held`: out of the available
  balance) and charges the customers' usage, so an open hold counts toward their limits. The
  `AuthorizationHold` row is written with it (`after_post`). The hold's `reference` is that
  transaction's reference: a used one is 409 DUPLICATE_REFERENCE. Risk rules are not run on a
  hold (a review has no meaning for a reservation the organization settles itself); limits are.
* Capture, void and expiry lock the `AuthorizationHold` row first (the parent row of the global
  lock order), then the engine locks the pending transaction, the wallets and the `Hold`s
  (`ledger.posting.pending`). Each acts only on a `held` hold (FSM), so a hold is captured,
  voided or expired exactly once, whichever comes first; the loser sees the new state (409
  INVALID_STATE). A capture at or after `expires_at` expires the hold instead (committed) and
  answers 409 INVALID_STATE, so a late capture never posts, even before the beat task ran.
* Capture posts through the engine's two-phase completion (as a payout's settlement does): in
  full the pending transaction itself completes; in part a new transaction posts the amount and
  the rest is released (`ledger_capture_pending`). A capture the ledger refuses now (a wallet
  suspended meanwhile) is rolled back to its savepoint: the hold stays open, the refusal is
  audited and answered (409 WALLET_INACTIVE).
* Every change writes its webhook (`hold.created|captured|voided|expired`) and audit event in
  the same database transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction as db_transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.models import Direction, MovementType
from compliance.audit import audit_record
from core.livemode import mode_q, object_livemode, principal_livemode
from core.errors import InvalidState, NotFound, ValidationFailed
from core.money import format_amount, parse_amount
from ledger.errors import CurrencyMismatch, DuplicateReference, WalletNotFound
from ledger.models import AuthorizationHold, Transaction
from ledger.posting import Transfer, ledger_capture_pending, ledger_void_pending
from ledger.selectors import Viewer, organization_wallets_get
from ledger.serializers import TransactionPresenter
from wallets.movements.organization import checked_wallet, limit_scopes
from wallets.pipeline import MoneyMovement, money_path

DEFAULT_EXPIRES_IN = 7 * 24 * 3600
MAX_EXPIRES_IN = 30 * 24 * 3600


def holds_for_update():
    return AuthorizationHold.objects.select_related("asset", "organization").order_by("pk").select_for_update(of=("self",))


def hold_representation(hold: AuthorizationHold) -> dict[str, Any]:
    exponent = hold.asset.exponent
    return {
        "id": hold.pk,
        "status": hold.status,
        "source_wallet_id": hold.source_wallet_id,
        "destination_wallet_id": hold.destination_wallet_id,
        "amount": format_amount(hold.amount, exponent),
        "captured_amount": format_amount(hold.captured_amount, exponent) if hold.captured_amount is not None else None,
        "currency": hold.asset.code,
        "reference": hold.reference,
        "description": hold.description,
        "transaction_id": hold.transaction_id,
        "capture_transaction_id": hold.capture_transaction_id,
        "expires_at": hold.expires_at,
        "closed_at": hold.closed_at,
        "created_at": hold.created_at,
        "updated_at": hold.updated_at,
        "livemode": object_livemode(hold),
    }


def _audit(principal, action: str, hold: AuthorizationHold, **data) -> None:
    audit_record(
        actor=principal if isinstance(principal, User) else None, action=action, target=hold,
        data={"hold_id": hold.pk, "transaction_id": hold.transaction_id, "status": hold.status, **data, **principal_audit_data(principal)},
    )


# --- Reads ---------------------------------------------------------------------------------------


def holds_visible(*, organization: Organization, livemode: bool = True):
    """The organization's holds of mode `livemode` (core.livemode)."""
    return AuthorizationHold.objects.filter(mode_q(livemode), organization=organization).select_related("asset").order_by("-id")


def hold_get(*, organization: Organization, hold_id: int, livemode: bool = True) -> AuthorizationHold:
    hold = holds_visible(organization=organization, livemode=livemode).filter(pk=hold_id).first()
    if hold is None:
        raise NotFound("Hold not found.", details={"hold_id": hold_id})
    return hold


# --- Authorize -----------------------------------------------------------------------------------


def organization_hold_create(
    *, organization: Organization, principal, source_wallet_id: int, destination_wallet_id: int, amount: Any, currency: str,
    reference: str, description: str = "", expires_in: int | None = None,
) -> AuthorizationHold:
    """Reserve `amount` on the source wallet for the destination (module docstring). Must run in
    the caller's transaction (the idempotent request's): a refused posting's failed transaction
    is recorded and commits with the error, which is raised."""
    if source_wallet_id == destination_wallet_id:
        raise ValidationFailed("destination_wallet_id: must differ from the source wallet.",
                               details={"fields": {"destination_wallet_id": ["Must differ from the source wallet."]}})
    livemode = principal_livemode(principal)
    wallets = organization_wallets_get(organization=organization, ids=[source_wallet_id, destination_wallet_id], livemode=livemode)
    for name, wid in (("source_wallet_id", source_wallet_id), ("destination_wallet_id", destination_wallet_id)):
        if wid not in wallets:
            raise WalletNotFound("Wallet not found.", details={"field": name, "wallet_id": wid})
    source, destination = wallets[source_wallet_id], wallets[destination_wallet_id]
    asset = source.asset
    code = (currency or "").strip().upper()
    if code != asset.code or destination.asset_id != asset.pk:
        raise CurrencyMismatch(
            f"The hold is in {code} but the wallets hold {asset.code} and {destination.asset.code}.",
            details={"currency": code, "source_currency": asset.code, "destination_currency": destination.asset.code},
        )
    value = parse_amount(amount, exponent=asset.exponent, field="amount")
    seconds = DEFAULT_EXPIRES_IN if expires_in is None else expires_in
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_EXPIRES_IN:
        raise ValidationFailed("expires_in: 1 to 2592000 seconds (30 days).", details={"fields": {"expires_in": ["1 to 2592000 seconds (30 days)."]}})
    operations = [Transfer(source=source.pk, destination=destination.pk, amount=value, currency=asset.code)]
    scopes = limit_scopes(operations, wallets)
    checked, direction, _ = checked_wallet(operations, wallets)
    created: dict[str, AuthorizationHold] = {}

    def after_post(tx: Transaction) -> None:
        now = timezone.now()
        hold = AuthorizationHold.objects.create(
            organization=organization, source_wallet=source, destination_wallet=destination, asset=asset, amount=value,
            reference=reference, description=description or "", transaction=tx, expires_at=now + dt.timedelta(seconds=seconds), created_at=now,
            livemode=tx.livemode,
        )
        created["hold"] = hold

    def publish(tx: Transaction) -> None:
        if "hold" in created:
            webhook_publish(organization=organization, event_type="hold.created", payload=hold_representation(created["hold"]))
        elif tx.status == Transaction.Status.FAILED:
            tx.known_wallets = wallets
            representation = TransactionPresenter(viewer=Viewer(organization=organization, livemode=livemode)).one(tx, detail=True)
            webhook_publish(organization=organization, event_type="transaction.failed", payload=representation)

    result = money_path(MoneyMovement(
        actor=principal, movement_type=MovementType.TRANSFER if direction == Direction.OUTGOING else MovementType.DEPOSIT,
        ledger_type=Transaction.Type.LEDGER, wallet=checked or source, amount=value, operations=operations, direction=direction,
        limits=scopes, customers=sorted({s.customer_id for s in scopes}), step_up=False, risk=False, pending=True,
        organization=organization, reference=reference, description=description or f"Hold {reference}",
        metadata={"authorization_hold": True}, after_post=after_post, publish=publish, audit_action="hold.authorization_{status}",
        audit_data={"reference": reference, "expires_in": seconds, **principal_audit_data(principal)},
    ))
    if isinstance(result.error, DuplicateReference):
        existing = result.transaction
        if existing is not None:
            result.error.details["hold_id"] = AuthorizationHold.objects.filter(transaction=existing).values_list("pk", flat=True).first()
        raise result.error
    if not result.ok:
        error = result.error
        if result.transaction is not None:
            error.details.update(transaction_id=result.transaction.pk)
        raise error
    return created["hold"]


# --- Capture, void, expire -------------------------------------------------------------------------


def _locked(organization: Organization | None, hold_id: int, livemode: bool = True) -> AuthorizationHold:
    queryset = holds_for_update().filter(pk=hold_id)
    if organization is not None:
        queryset = queryset.filter(mode_q(livemode), organization=organization)
    hold = queryset.first()
    if hold is None:
        raise NotFound("Hold not found.", details={"hold_id": hold_id})
    return hold


def _require_held(hold: AuthorizationHold) -> None:
    if hold.status != AuthorizationHold.Status.HELD:
        raise InvalidState(f"Hold {hold.pk} is {hold.status}.", details={"hold_id": hold.pk, "status": hold.status})


def _close(hold: AuthorizationHold, transition: str, *, principal, event: str, **audit) -> None:
    getattr(hold, transition)()
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "captured_amount", "capture_transaction", "closed_at", "updated_at"])
    webhook_publish(organization=hold.organization, event_type=event, payload=hold_representation(hold))
    _audit(principal, event, hold, **audit)


def _expire_locked(hold: AuthorizationHold, *, principal=None) -> None:
    ledger_void_pending(hold.transaction_id, code="HOLD_EXPIRED", reason=f"Hold {hold.pk} expired at {hold.expires_at.isoformat()}.")
    _close(hold, "expire", principal=principal, event="hold.expired")


def organization_hold_capture(*, organization: Organization, principal, hold_id: int, amount: Any = None) -> AuthorizationHold:
    """Capture all of a held hold, or `amount` of it (the rest released). Runs in the caller's
    transaction; see the module docstring for expiry and refusals."""
    hold = _locked(organization, hold_id, principal_livemode(principal))
    _require_held(hold)
    if timezone.now() >= hold.expires_at:
        _expire_locked(hold, principal=principal)
        raise InvalidState(f"Hold {hold.pk} expired at {hold.expires_at.isoformat()}.",
                           details={"hold_id": hold.pk, "status": hold.status, "expires_at": hold.expires_at.isoformat()})
    exponent = hold.asset.exponent
    value = hold.amount if amount in (None, "") else parse_amount(amount, exponent=exponent, field="amount")
    if value > hold.amount:
        raise ValidationFailed(
            f"amount: at most the held {format_amount(hold.amount, exponent)} {hold.asset.code}.",
            details={"fields": {"amount": [f"At most the held {format_amount(hold.amount, exponent)}."]}, "held_amount": format_amount(hold.amount, exponent)},
        )
    with db_transaction.atomic():  # a savepoint: a refused posting leaves the hold as it was
        result = ledger_capture_pending(
            hold.transaction_id, amount=value, description=f"Capture of hold {hold.pk} ({hold.reference})"[:500],
            metadata={"authorization_hold_id": hold.pk},
        )
        if not result.ok:
            db_transaction.set_rollback(True)
    if not result.ok:
        _audit(principal, "hold.capture_refused", hold, code=result.error.code, message=result.error.message)
        raise result.error
    hold.captured_amount = value
    hold.capture_transaction = result.transaction
    _close(hold, "capture", principal=principal, event="hold.captured", captured_amount=format_amount(value, exponent))
    tx = result.transaction
    representation = TransactionPresenter(viewer=Viewer(organization=organization, livemode=hold.livemode)).one(tx, detail=True)
    webhook_publish(organization=organization, event_type="transaction.completed", payload=representation)
    return hold


def organization_hold_void(*, organization: Organization, principal, hold_id: int) -> AuthorizationHold:
    """Release a held hold in full (the pending transaction is voided)."""
    hold = _locked(organization, hold_id, principal_livemode(principal))
    _require_held(hold)
    ledger_void_pending(hold.transaction_id, code="HOLD_VOIDED", reason=f"Hold {hold.pk} voided.")
    _close(hold, "void", principal=principal, event="hold.voided")
    return hold


def hold_expire(*, hold_id: int, now: dt.datetime | None = None) -> bool:
    """Expire one hold if it is still held and past `expires_at`: True when this call did it."""
    now = now or timezone.now()
    with db_transaction.atomic():
        hold = holds_for_update().filter(pk=hold_id).first()
        if hold is None or hold.status != AuthorizationHold.Status.HELD or hold.expires_at > now:
            return False
        _expire_locked(hold)
    return True


def holds_expire_due(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """The beat task's work: expire every held hold past its expiry (oldest first, at most
    `limit`), each in its own short transaction. Racing a capture or another run is safe."""
    now = now or timezone.now()
    due = list(
        AuthorizationHold.objects.filter(status=AuthorizationHold.Status.HELD, expires_at__lte=now)
        .order_by("expires_at").values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in due if hold_expire(hold_id=pk, now=now))
