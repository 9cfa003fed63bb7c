"""Registering extended public keys and allocating deposit addresses from them.

- One active key per organization and chain; a key is its chain code and public key (a
  re-encoded copy is the same key) and belongs to one organization; keys are never deleted.
- Gap limit: the never-funded addresses after the key's last funded one number at most
  `gap_limit`. Past it, an address whose order closed unpaid (`released_at`) at least
  PAYORDER_ADDRESS_REUSE_QUIET_SECONDS ago is reused, never one that ever received a payment;
  else 409 GAP_LIMIT_REACHED. Either way the key is flagged `constrained_since` and the merchant
  gets one `payorder.deposit_addresses_constrained` webhook per episode.
- On a reused address the previous orders' watcher reads blocks below `scan_until_block`, the
  new order's from there on (the block after the chain head it saw).
- Runs under the key's row lock (`next_index` only grows). Lock order: the caller's pay order,
  the key, then a reused address's previous orders (closed: nothing holding one waits for a key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef
from django.utils import timezone

from accounts.models import User
from accounts.webhooks import webhook_publish
from compliance.audit import audit_record
from payorders.addresses import MAX_INDEX, check_chain, derive_address, invalid_xpub, key_material, parse_xpub
from core.errors import field_error
from payorders.errors import DepositKeyMissing, GapLimitReached
from payorders.locks import xpub_keys_for_update
from payorders.models import DepositAddress, PayOrder, PayOrderPayment, XpubKey
from payorders.selectors import address_funded, xpub_key_unused_run

CONSTRAINED_EVENT = "payorder.deposit_addresses_constrained"
MAX_GAP_LIMIT = 1000


def reuse_quiet_period() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PAYORDER_ADDRESS_REUSE_QUIET_SECONDS", 3600)))


@transaction.atomic
def xpub_key_register(*, organization, chain: str, xpub: str, gap_limit: int | None = None, actor=None) -> XpubKey:
    """Make `xpub` the organization's active key for `chain` (deactivating the previous one).

    Registering a key the organization had before reactivates it with its counter, so no index
    is handed out twice; a key registered by another organization is refused. `gap_limit`: the
    merchant wallet's address gap (default 20; kept as it was when re-registering without one)."""
    if gap_limit is not None and (isinstance(gap_limit, bool) or not isinstance(gap_limit, int) or not 1 <= gap_limit <= MAX_GAP_LIMIT):
        raise field_error("gap_limit", f"An integer from 1 to {MAX_GAP_LIMIT}.")
    normalized, network = parse_xpub(chain=chain, xpub=xpub)
    material = key_material(normalized)
    if connection.vendor == "postgresql":  # two registrations of one key (in any encoding) queue here
        lock_id = int.from_bytes(hashlib.sha256(b"payorders.xpub:" + material).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
    same = [pk for pk, text in XpubKey.objects.filter(chain=chain, network=network).values_list("pk", "xpub") if key_material(text) == material]
    existing = xpub_keys_for_update().filter(pk__in=same).first()
    if existing is not None and existing.organization_id != organization.pk:
        raise invalid_xpub("This extended public key is already registered.")
    XpubKey.objects.filter(organization=organization, chain=chain, is_active=True).exclude(
        pk=existing.pk if existing else None
    ).update(is_active=False)
    if existing is not None:
        changed = [] if existing.is_active else ["is_active"]
        existing.is_active = True
        if gap_limit is not None and gap_limit != existing.gap_limit:
            existing.gap_limit, existing.constrained_since = gap_limit, None
            changed += ["gap_limit", "constrained_since"]
        if changed:
            existing.save(update_fields=[*changed, "updated_at"])
        key = existing
    else:
        key = XpubKey.objects.create(organization=organization, chain=chain, xpub=normalized, network=network, gap_limit=gap_limit or 20)
    audit_record(
        actor=actor if isinstance(actor, User) else None,  # an API key is named by the request's own audit
        action="payorders.xpub_key.register",
        target=key,
        data={"organization_id": organization.pk, "chain": chain, "xpub": normalized, "network": network, "gap_limit": key.gap_limit},
    )
    return key


@dataclass(frozen=True)
class AddressAssignment:
    address: DepositAddress
    reused: bool
    scan_from_block: int  # where the new holder's watcher starts


def _constrained(key: XpubKey, *, action: str, run: int) -> None:
    """Flag the key and tell the merchant, once per episode (inside the caller's transaction)."""
    if key.constrained_since is not None:
        return
    key.constrained_since = timezone.now()
    key.save(update_fields=["constrained_since", "updated_at"])
    webhook_publish(
        organization=key.organization,
        event_type=CONSTRAINED_EVENT,
        payload={
            "chain": key.chain, "xpub_key_id": key.pk, "gap_limit": key.gap_limit, "unused_addresses": run, "action": action,
            "message": f"Deposit addresses of your {key.chain} key are held within its gap limit of {key.gap_limit}: "
            "unpaid orders' addresses are reused. Raise the gap limit in your wallet and here, or expect refusals.",
        },
    )


def _reuse(key: XpubKey, *, head_block: int, now, livemode: bool) -> AddressAssignment | None:
    """The most recently released reusable address (its old order's watcher is the most likely
    still to be reading it), taken from its previous orders; None if there is none."""
    candidates = (
        DepositAddress.objects.filter(xpub_key=key, livemode=livemode, released_at__lte=now - reuse_quiet_period())
        .exclude(address_funded(OuterRef("pk")))
        .order_by("-released_at", "index")
    )
    start = head_block + 1  # blocks up to the head were mined before this order had the address
    for address in candidates[:20]:
        with transaction.atomic():
            # locks the previous orders: a watcher recording a late payment finishes first
            PayOrder.objects.filter(deposit_address=address, scan_until_block__isnull=True).update(scan_until_block=start)
            if PayOrderPayment.objects.filter(pay_order__deposit_address=address).exists():
                transaction.set_rollback(True)  # funded while we looked: never reused
                continue
            DepositAddress.objects.filter(pk=address.pk).update(released_at=None)
            address.released_at = None
            return AddressAssignment(address=address, reused=True, scan_from_block=start)
    return None


@transaction.atomic  # a savepoint when nested: a refusal does not poison the caller's transaction
def deposit_address_assign(*, organization, chain: str, head_block: int | None = 0, livemode: bool = True) -> AddressAssignment:
    """An address of the organization's active `chain` key for a new order: a fresh index
    within the gap limit, else a reused one (see the module docstring), else GapLimitReached.
    `head_block`: the chain head read before the caller's locks (None if the chain could not be
    read: then nothing is reused, since the old orders' range could not be closed). `livemode`:
    False for a test-mode order, whose Bitcoin address is the testnet one of the same index and
    which only reuses test-mode addresses."""
    chain = check_chain(chain)
    key = xpub_keys_for_update().select_related("organization").filter(organization=organization, chain=chain, is_active=True).first()
    if key is None:
        raise DepositKeyMissing(
            f"Register an extended public key for {chain} before issuing deposit addresses.",
            details={"chain": chain},
        )
    run = xpub_key_unused_run(key)
    if run < key.gap_limit:
        index = key.next_index
        if index > MAX_INDEX:
            raise DepositKeyMissing(
                f"The {chain} key has used all of its addresses; register a new account key.", details={"chain": chain}
            )
        address = derive_address(chain=chain, xpub=key.xpub, index=index, testnet=not livemode)
        key.next_index = index + 1
        key.constrained_since = None
        key.save(update_fields=["next_index", "constrained_since", "updated_at"])
        created = DepositAddress.objects.create(xpub_key=key, chain=chain, index=index, address=address, livemode=livemode)
        return AddressAssignment(address=created, reused=False, scan_from_block=head_block or 0)
    now = timezone.now()
    reused = None if head_block is None else _reuse(key, head_block=head_block, now=now, livemode=livemode)
    if reused is not None:
        _constrained(key, action="reused", run=run)
        return reused
    waiting = DepositAddress.objects.filter(xpub_key=key, released_at__gt=now - reuse_quiet_period()).exclude(address_funded(OuterRef("pk")))
    soonest = waiting.order_by("released_at").values_list("released_at", flat=True).first()
    retry_after = max(int((soonest + reuse_quiet_period() - now).total_seconds()) + 1, 1) if soonest else None
    raise GapLimitReached(
        f"The {chain} key's {run} newest addresses are all unused (its gap limit is {key.gap_limit}) and none can be reused yet.",
        key_id=key.pk,
        details={"chain": chain, "gap_limit": key.gap_limit, "unused_addresses": run, "retry_after": retry_after},
        headers={"Retry-After": str(retry_after)} if retry_after else None,
    )


def deposit_address_allocate(*, organization, chain: str, head_block: int | None = 0, livemode: bool = True) -> DepositAddress:
    """`deposit_address_assign`'s address."""
    return deposit_address_assign(organization=organization, chain=chain, head_block=head_block, livemode=livemode).address


def xpub_key_flag_refusal(*, key_id: int) -> None:
    """After a GapLimitReached (whose transaction rolled back): flag the key and warn, in a
    transaction of its own."""
    with transaction.atomic():
        key = xpub_keys_for_update().select_related("organization").filter(pk=key_id).first()
        if key is not None:
            _constrained(key, action="refused", run=xpub_key_unused_run(key))


def deposit_address_release(order: PayOrder) -> None:
    """The LOCKED order closed (expired or cancelled) without receiving anything: its address
    becomes reusable after the quiet period."""
    if order.deposit_address_id is None or order.amount_received > 0:
        return
    DepositAddress.objects.filter(pk=order.deposit_address_id, released_at__isnull=True).exclude(address_funded(OuterRef("pk"))).update(
        released_at=timezone.now()
    )
