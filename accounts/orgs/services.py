"""Writers of organizations, their API keys and their customers (by external id).

Invariants:
- The only writers of Organization, Membership (at creation), ApiKey and organization Customer
  rows. Every change lands in the audit chain in the same database transaction.
- A key's secret exists in plain text only in the return value of `api_key_create`; the row keeps
  its keyed hash (lookups) and its Fernet ciphertext (signature schemes). A new key is read-only
  unless scopes are chosen; a key managing keys grants, and revokes, only within its own scopes.
- An authentication failure writes nothing to the database on the request path (a cache count;
  the audit event is written per key and minute by the audit sequencer).
- `customer_upsert` is safe under races (row lock, or the unique constraint and a savepoint).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from accounts.crypto import encrypt_secret, lookup_hash
from accounts.models import ApiKey, Customer, Membership, Organization, User
from accounts.orgs.scopes import DEFAULT_SCOPES, INTEGRATION_SCOPES, normalize_scopes
from accounts.webhooks.publish import webhook_publish
from compliance.audit import audit_count, audit_record
from core.errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from core.livemode import mode_q, object_livemode, principal_livemode

API_KEY_ID_PREFIX = "key_"
API_KEY_SECRET_PREFIX = "sk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
auth_logger = logging.getLogger("coffer.auth")


def audit(*, actor: User | None = None, action: str, target=None, data: dict | None = None) -> None:
    audit_record(actor=actor, action=action, target=target, data=data or {})


def principal_audit_data(principal) -> dict[str, Any]:
    """What an audit event says about a caller that is an API key rather than a user."""
    api_key = getattr(principal, "api_key", None)
    return {"api_key_id": api_key.key_id} if api_key is not None else {}


def actor_user(principal) -> User | None:
    return principal if isinstance(principal, User) else None


# --- API keys -----------------------------------------------------------------------------------


def _new_key_id() -> str:
    return API_KEY_ID_PREFIX + secrets.token_hex(12)


def _new_secret(*, livemode: bool = True) -> str:
    """`sk_...`; a test key's secret reads `sk_test_...` so that it is recognised at a glance."""
    return API_KEY_SECRET_PREFIX + ("" if livemode else "test_") + secrets.token_urlsafe(32)


def _granted_scopes(scopes: Iterable[str], actor) -> list[str]:
    """The scopes for a new key: known ones, each once; a key creating a key grants at most its own."""
    try:
        granted = normalize_scopes(scopes)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details={"fields": {"scopes": [str(exc)]}}) from None
    if not granted:
        raise ValidationFailed("Choose at least one scope.", details={"fields": {"scopes": ["Choose at least one scope."]}})
    _check_within_actor_key(granted, actor, "An API key can only grant scopes it has itself.")
    return granted


def _check_within_actor_key(scopes: Iterable[str], actor, message: str) -> None:
    """A key managing keys acts only within its own scopes (owners, being users, are not held)."""
    actor_key = getattr(actor, "api_key", None)
    if actor_key is None:
        return
    missing = [scope for scope in scopes if scope not in (actor_key.scopes or [])]
    if missing:
        raise PermissionDenied(message, details={"reason": "scope_not_held", "scopes": missing})


@transaction.atomic
def api_key_create(
    *, organization: Organization, name: str, actor=None, scopes: Iterable[str] = DEFAULT_SCOPES, livemode: bool = True
) -> tuple[ApiKey, str]:
    """A new key for the organization, with `scopes` (read-only unless chosen). Returns the key
    and its secret: the only time the secret exists in plain text outside the caller's hands.
    `livemode=False`: a test key (core.livemode): it creates and sees only test-mode pay orders.
    A test key cannot create a live one."""
    granted = _granted_scopes(scopes, actor)
    acting_key = getattr(actor, "api_key", None)
    if livemode and acting_key is not None and not acting_key.livemode:
        raise PermissionDenied("A test key can only create test keys.", details={"fields": {"livemode": ["a test key creates test keys"]}})
    secret = _new_secret(livemode=livemode)
    api_key = ApiKey.objects.create(
        organization=organization,
        key_id=_new_key_id(),
        name=name,
        secret_hash=lookup_hash(secret),
        secret_encrypted=encrypt_secret(secret),
        secret_prefix=secret[:7],
        scopes=granted,
        livemode=livemode,
        created_by=actor_user(actor),
    )
    audit(
        actor=actor_user(actor),
        action="api_key.created",
        target=api_key,
        data={"organization_id": organization.pk, "key_id": api_key.key_id, "name": name, "scopes": granted, "livemode": livemode, **principal_audit_data(actor)},
    )
    return api_key, secret


@transaction.atomic
def api_key_revoke(*, organization: Organization, key_id: str, actor=None) -> ApiKey:
    api_key = ApiKey.objects.select_for_update().filter(organization=organization, key_id=key_id).first()
    if api_key is None:
        raise NotFound("No such API key.")
    if api_key.revoked_at is not None:
        raise InvalidState("This API key is already revoked.")
    _check_within_actor_key(api_key.scopes or [], actor, "An API key can only revoke keys within its own scopes.")
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    audit(
        actor=actor_user(actor),
        action="api_key.revoked",
        target=api_key,
        data={"organization_id": organization.pk, "key_id": api_key.key_id, **principal_audit_data(actor)},
    )
    return api_key


def api_key_mark_used(*, api_key: ApiKey) -> None:
    """Record use at most once a minute per key: one conditional UPDATE, and none at all while
    the stored value is fresh, so a busy integration does not turn every request into a write."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    api_key.last_used_at = now


def api_key_auth_failed(*, scheme: str, reason: str, key_id: str = "", api_key: ApiKey | None = None, client_ip: str = "") -> None:
    """An API-key, signature or organization-token failure: logged, and counted in the cache per
    key (or per client address when no key id was presented) per minute; the sequencer's beat
    task writes one `api_key.auth_failed` audit event per key and minute with the count and the
    first failure's details. No database write here, so a credential spray costs the database
    nothing (never with the presented secret)."""
    key_id = key_id[:80]
    data = {"scheme": scheme, "reason": reason, "key_id": key_id, "client_ip": client_ip}
    count = audit_count(
        action="api_key.auth_failed",
        group=f"key:{key_id}" if key_id else f"ip:{client_ip}",
        target_type=api_key._meta.label_lower if api_key is not None else "",
        target_id=str(api_key.pk) if api_key is not None else "",
        data=data,
    )
    auth_logger.warning("API authentication failed: %s (%s), key id %r, client %s, failure %d this minute", reason, scheme, key_id, client_ip, count)


# --- Organizations (management command, demo data) ----------------------------------------------


@dataclass(frozen=True)
class OrganizationCreated:
    organization: Organization
    owner: User
    owner_created: bool
    api_key: ApiKey
    secret: str


def _unique_slug(name: str) -> str:
    base = (slugify(name) or "org")[:60]
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner_email: str, key_livemode: bool = True) -> OrganizationCreated:
    """The organization, its owner (created without a password if new) and a first API key
    (a test key with `key_livemode=False`, as the demo's)."""
    name = name.strip()
    if not name:
        raise ValidationFailed("An organization needs a name.", details={"name": ["This field may not be blank."]})
    email = User.objects.normalize_email(owner_email.strip()).lower()
    owner = User.objects.filter(email__iexact=email).first()
    owner_created = owner is None
    if owner is None:
        owner = User.objects.create_user(email=email, password=None)  # unusable password
    organization = Organization.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    audit(actor=owner, action="organization.created", target=organization, data={"name": name, "owner_id": owner.pk})
    api_key, secret = api_key_create(
        organization=organization, name="default" if key_livemode else "default (test)", actor=owner, scopes=INTEGRATION_SCOPES,
        livemode=key_livemode,
    )
    return OrganizationCreated(organization, owner, owner_created, api_key, secret)


# --- Customers by external id -------------------------------------------------------------------

CUSTOMER_FIELDS = ("name", "email", "kyc_level", "metadata")


CUSTOMER_EVENT_FIELDS = ("external_id", "name", "email", "kyc_level", "metadata", "created_at", "updated_at")


def _customer_payload(customer: Customer) -> dict[str, Any]:
    """The `data` of customer.* webhooks: the fields the customer API shows (`CustomerOutput`,
    without wallets; its schema in `accounts.webhooks.events`)."""
    return {**{name: getattr(customer, name) for name in CUSTOMER_EVENT_FIELDS}, "livemode": object_livemode(customer)}


def customer_upsert(*, organization: Organization, external_id: str, data: dict[str, Any], actor=None) -> tuple[Customer, bool]:
    """Insert or update the organization's customer `external_id`; returns (customer, created).

    Safe under races: the row is locked when it exists; when two requests insert at once the
    unique (organization, livemode, external_id) constraint lets one win, and the loser's savepoint rolls
    back and it updates the winner's row instead.

    Announced to the organization's webhook endpoints in the same transaction (outbox-backed
    deliveries, `accounts.webhooks`): `customer.created` with the customer, `customer.updated`
    with the customer and `changed_fields`; an upsert that changes nothing sends nothing."""
    fields = {k: v for k, v in data.items() if k in CUSTOMER_FIELDS}
    livemode = principal_livemode(actor)  # a test key's customers are test-mode rows of their own (core.livemode)
    with transaction.atomic():
        for _ in range(3):
            customer = (
                Customer.objects.select_for_update().filter(mode_q(livemode), organization=organization, external_id=external_id)
                .order_by("-livemode" if livemode else "livemode").first()
            )
            if customer is None:
                try:
                    with transaction.atomic():
                        customer = Customer.objects.create(organization=organization, external_id=external_id, livemode=livemode, **fields)
                except IntegrityError:
                    continue  # someone inserted it first: lock and update theirs
                audit(
                    actor=actor_user(actor),
                    action="customer.created",
                    target=customer,
                    data={"external_id": external_id, "kyc_level": customer.kyc_level, **principal_audit_data(actor)},
                )
                webhook_publish(organization=organization, event_type="customer.created", payload=_customer_payload(customer))
                return customer, True
            changed = [k for k, v in fields.items() if getattr(customer, k) != v]
            if changed:
                before = {k: getattr(customer, k) for k in changed if k != "metadata"}
                for k in changed:
                    setattr(customer, k, fields[k])
                customer.save(update_fields=[*changed, "updated_at"])
                audit(
                    actor=actor_user(actor),
                    action="customer.updated",
                    target=customer,
                    data={"external_id": external_id, "changed": changed, "before": before, **principal_audit_data(actor)},
                )
                webhook_publish(
                    organization=organization, event_type="customer.updated",
                    payload={**_customer_payload(customer), "changed_fields": changed},
                )
            return customer, False
    raise IntegrityError("customer upsert kept losing races")  # pragma: no cover - needs a delete racing an insert
