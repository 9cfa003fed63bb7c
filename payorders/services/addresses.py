"""Registering extended public keys and allocating deposit addresses from them.

Invariants:
- One active key per organization and chain (a partial unique constraint); a key is its chain
  code and public key, so a re-encoded copy is the same key; a key registered by another
  organization is refused; keys are never deleted and a deactivated key keeps its counter.
- `XpubKey.next_index` only grows and is advanced under the key's row lock in the caller's
  transaction, so racing callers get distinct indexes; the unique constraints on
  (xpub_key, index) and on address are the backstop. An address is never handed out twice.
- Lock order: the caller's pay order first, then the key (`payorders.locks`).
"""

from __future__ import annotations

import hashlib

from django.db import connection, transaction

from accounts.models import User
from compliance.services import audit_record
from payorders.addresses import MAX_INDEX, check_chain, derive_address, invalid_xpub, key_material, parse_xpub
from payorders.errors import DepositKeyMissing
from payorders.locks import xpub_keys_for_update
from payorders.models import DepositAddress, XpubKey


@transaction.atomic
def xpub_key_register(*, organization, chain: str, xpub: str, actor=None) -> XpubKey:
    """Make `xpub` the organization's active key for `chain` (deactivating the previous one).

    Registering a key the organization had before reactivates it with its counter, so no index
    is handed out twice; a key registered by another organization is refused."""
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
        if not existing.is_active:
            existing.is_active = True
            existing.save(update_fields=["is_active", "updated_at"])
        key = existing
    else:
        key = XpubKey.objects.create(organization=organization, chain=chain, xpub=normalized, network=network)
    audit_record(
        actor=actor if isinstance(actor, User) else None,  # an API key is named by the request's own audit
        action="payorders.xpub_key.register",
        target=key,
        data={"organization_id": organization.pk, "chain": chain, "xpub": normalized, "network": network},
    )
    return key


@transaction.atomic  # a savepoint when nested: a refusal does not poison the caller's transaction
def deposit_address_allocate(*, organization, chain: str) -> DepositAddress:
    """A fresh address of the organization's active `chain` key, at the next unused index."""
    chain = check_chain(chain)
    key = xpub_keys_for_update().filter(organization=organization, chain=chain, is_active=True).first()
    if key is None:
        raise DepositKeyMissing(
            f"Register an extended public key for {chain} before issuing deposit addresses.",
            details={"chain": chain},
        )
    index = key.next_index
    if index > MAX_INDEX:
        raise DepositKeyMissing(
            f"The {chain} key has used all of its addresses; register a new account key.", details={"chain": chain}
        )
    address = derive_address(chain=chain, xpub=key.xpub, index=index)
    key.next_index = index + 1
    key.save(update_fields=["next_index", "updated_at"])
    return DepositAddress.objects.create(xpub_key=key, chain=chain, index=index, address=address)
