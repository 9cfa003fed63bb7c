"""Beneficiaries at rest (payouts and scheduled withdrawals): encrypted, masked to show, hashed to look up.

Invariants:
- A payout's or a schedule's beneficiary name and its destination (the IBAN with country and bank
  name, or the external account with its network) are stored only Fernet-encrypted under the field keys
  (`accounts.crypto`, FIELD_ENCRYPTION_KEYS: the first encrypts, all decrypt): columns
  `beneficiary_name_encrypted` and `destination_encrypted`.
- Beside them: a masked form, the only one ever shown (API answers, admin, dashboard, audit
  events, logs): the IBAN as "DE89 **** **** **** 3000", the name as "J*** S****", an external
  account as "****1234" (`beneficiary_name_masked`, `destination_masked`, `mask_destination`; an
  audit event keeps `beneficiary_audit_fields`); and keyed hashes,
  HMAC-SHA256 under a key derived from the first field key (`accounts.crypto.lookup_hash`), of the
  normalised name (`beneficiary_hash`) and of the account (`account_hash`), so payouts to one
  beneficiary or one account are found without decrypting anything (`beneficiaries_matching`,
  the admin's search). A lookup tries the hash under every configured key, so rows not yet
  rotated are found too.
- The plain text comes back only through `beneficiary_open(row)`: for the payout provider's
  call, for the withdrawal a schedule's occurrence makes, and for screening names against
  sanctions (compliance), never to render.
- `manage.py rotate_field_keys` re-encrypts both columns and recomputes both hashes under the
  first key, for payouts and schedules (accounts.fieldkeys).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from accounts.crypto import decrypt_secret, encrypt_secret, lookup_hash, lookup_hashes

_NAME_DOMAIN = "payout-beneficiary-name:v1:"
_ACCOUNT_DOMAIN = "payout-beneficiary-account:v1:"


@dataclass(frozen=True)
class PlainBeneficiary:
    """A beneficiary in plain text: only for the provider call, a scheduled withdrawal and sanctions screening."""

    name: str
    destination: dict[str, Any]


# --- Masks --------------------------------------------------------------------------------------


def mask_iban(iban: str) -> str:
    """Country and check digits, then a group of stars per 4 hidden characters, then the last 4:
    DE89370400440532013000 -> "DE89 **** **** **** 3000"."""
    compact = "".join((iban or "").split()).upper()
    if len(compact) <= 8:
        return "*" * len(compact)
    return " ".join([compact[:4], *["****"] * max((len(compact) - 8) // 4, 1), compact[-4:]])


def mask_name(name: str) -> str:
    """The first letter of each word, the rest starred: "Jane Smith" -> "J*** S****"."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in (name or "").split())


def mask_account(account: str) -> str:
    account = (account or "").strip()
    return "****" + account[-4:] if len(account) > 4 else "*" * len(account)


def mask_destination(destination: dict[str, Any]) -> dict[str, Any]:
    shown = dict(destination)
    if "name" in shown:
        shown["name"] = mask_name(shown["name"])
    if shown.get("iban"):
        shown["iban"] = mask_iban(shown["iban"])
    if shown.get("account"):
        shown["account"] = mask_account(shown["account"])
    return shown


# --- Keyed hashes -----------------------------------------------------------------------------------


def normalized_beneficiary_name(name: str) -> str:
    """Case, accents and spacing do not make another beneficiary: "  JOSÉ  Díaz" == "jose diaz"."""
    decomposed = unicodedata.normalize("NFKD", name or "")
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def _account_text(destination: dict[str, Any]) -> str:
    account = destination.get("iban") or destination.get("account") or ""
    return "".join(account.split()).upper()


def beneficiary_name_hash(name: str) -> str:
    return lookup_hash(_NAME_DOMAIN + normalized_beneficiary_name(name))


def account_hash(destination: dict[str, Any]) -> str:
    return lookup_hash(_ACCOUNT_DOMAIN + _account_text(destination))


# --- Sealing and opening ------------------------------------------------------------------------------


def beneficiary_audit_fields(name: str | None) -> dict[str, str]:
    """What an audit event keeps of a beneficiary's name: the masked form and the keyed hash (the
    chain is append-only: a name written there in clear could never be taken back)."""
    if not name:
        return {"beneficiary_name": "", "beneficiary_hash": ""}
    return {"beneficiary_name": mask_name(name)[:200], "beneficiary_hash": beneficiary_name_hash(name)}


def beneficiary_sealed_fields(*, name: str, destination: dict[str, Any]) -> dict[str, Any]:
    """The Payout (or Schedule) column values for a beneficiary (`destination` includes the name, as given)."""
    return {
        "beneficiary_name_encrypted": encrypt_secret(name),
        "beneficiary_name_masked": mask_name(name)[:200],
        "beneficiary_hash": beneficiary_name_hash(name),
        "destination_encrypted": encrypt_secret(json.dumps(destination, sort_keys=True, separators=(",", ":"))),
        "destination_masked": mask_destination(destination),
        "account_hash": account_hash(destination),
    }


def beneficiary_rehashed_fields(plain: dict[str, str]) -> dict[str, str]:
    """The hash columns recomputed from the decrypted columns (`rotate_field_keys`)."""
    out = {}
    if plain.get("beneficiary_name_encrypted"):
        out["beneficiary_hash"] = beneficiary_name_hash(plain["beneficiary_name_encrypted"])
    if plain.get("destination_encrypted"):
        out["account_hash"] = account_hash(json.loads(plain["destination_encrypted"]))
    return out


def beneficiary_open(sealed) -> PlainBeneficiary:
    """The plain beneficiary of a payout or a schedule: for the provider call, the withdrawal a
    schedule's occurrence makes, and sanctions screening only."""
    return PlainBeneficiary(
        name=decrypt_secret(sealed.beneficiary_name_encrypted),
        destination=json.loads(decrypt_secret(sealed.destination_encrypted)),
    )


def beneficiary_names_of(encrypted_names: Iterable[str]) -> list[str]:
    return [decrypt_secret(value) for value in encrypted_names if value]


# --- Lookups ----------------------------------------------------------------------------------------


def beneficiaries_matching(queryset: QuerySet, *, name: str | None = None, iban_or_account: str | None = None) -> QuerySet:
    """`queryset` (payouts or schedules) narrowed to this beneficiary name and/or account, by keyed hash
    (under every configured field key), never by decrypting."""
    condition = Q()
    if name:
        condition &= Q(beneficiary_hash__in=lookup_hashes(_NAME_DOMAIN + normalized_beneficiary_name(name)))
    if iban_or_account:
        condition &= Q(account_hash__in=lookup_hashes(_ACCOUNT_DOMAIN + _account_text({"account": iban_or_account})))
    return queryset.filter(condition) if condition else queryset.none()
