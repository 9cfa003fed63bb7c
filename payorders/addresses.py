"""Deposit addresses derived from an organization's extended public keys (no private keys here).

- Bitcoin: a BIP84 account key (m/84'/0'/0', exported as zpub or xpub; testnet vpub or tpub) gives
  native SegWit addresses `bc1q...` (`tb1q...` on testnet) at m/84'/0'/0'/0/index.
- Ethereum: a BIP44 account key (m/44'/60'/0', xpub) gives EIP-55 checksummed addresses at
  m/44'/60'/0'/0/index.
- Any extended *private* key (xprv, zprv, tprv, vprv, yprv, uprv) is refused before anything
  else is done with it, and is never echoed back in an error.
- `deposit_address_allocate` takes the organization's active key under a row lock
  (`select_for_update`), derives the address at `next_index` and advances the counter in the
  same transaction, so racing callers get consecutive, distinct indexes; the unique constraints
  on (xpub_key, index) and on address are the backstop. Lock order: callers lock their pay order
  first, then the key.
"""

from __future__ import annotations

import hashlib
import re

from bip_utils import (
    Base58Decoder,
    Base58Encoder,
    Bip44,
    Bip44Changes,
    Bip44Coins,
    Bip84,
    Bip84Coins,
    EthAddrDecoder,
    SegwitBech32Decoder,
)
from bip_utils.utils.crypto import Kekkak256
from django.db import connection, transaction

from core.errors import CofferError, ValidationFailed
from payorders.chains.base import CHAINS
from payorders.models import DepositAddress, XpubKey

MAX_INDEX = 2**31 - 1  # BIP32 non-hardened child indexes

# Serialization version bytes (SLIP-132) -> (public?, network, BIP84-compatible?)
_PUBLIC_VERSIONS = {
    "0488b21e": ("xpub", "mainnet"),
    "04b24746": ("zpub", "mainnet"),
    "043587cf": ("tpub", "testnet"),
    "045f1cf6": ("vpub", "testnet"),
    "049d7cb2": ("ypub", "mainnet"),
    "044a5262": ("upub", "testnet"),
}
_PRIVATE_VERSIONS = {"0488ade4", "04b2430c", "04358394", "045f18bc", "049d7878", "044a4e28"}
_ZPUB = bytes.fromhex("04b24746")
_VPUB = bytes.fromhex("045f1cf6")
_ETH_HEX = re.compile(r"^0x[0-9a-fA-F]{40}$")


class DepositKeyMissing(CofferError):
    code, status = "DEPOSIT_KEY_MISSING", 409
    default_message = "The organization has no extended public key registered for this chain."


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": {"xpub": [message]}})


def _check_chain(chain: object) -> str:
    if chain not in CHAINS:
        raise ValidationFailed(
            f"chain must be one of {', '.join(CHAINS)}.", details={"fields": {"chain": [f"one of {', '.join(CHAINS)}"]}}
        )
    return chain  # type: ignore[return-value]


def parse_xpub(*, chain: str, xpub: object) -> tuple[str, str]:
    """Validate an account-level extended public key for `chain`.

    Returns (key in the form bip-utils derives from, network). Raises ValidationFailed naming the
    `xpub` field on garbage, a private key, the wrong depth or a key type the chain cannot use."""
    chain = _check_chain(chain)
    if not isinstance(xpub, str) or not xpub.strip():
        raise _invalid("An extended public key is required.")
    text = xpub.strip()
    if len(text) > 128:
        raise _invalid("This is not an extended public key.")
    try:
        raw = Base58Decoder.CheckDecode(text)
    except Exception:  # bip-utils raises several types for bad alphabet / checksum
        raise _invalid("This is not an extended public key (bad Base58Check encoding).") from None
    if len(raw) != 78:
        raise _invalid("This is not an extended public key (wrong length).")
    version = raw[:4].hex()
    if version in _PRIVATE_VERSIONS:
        raise _invalid("This is an extended PRIVATE key. Never share it: register the account's extended public key.")
    if version not in _PUBLIC_VERSIONS:
        raise _invalid("This is not an extended public key (unknown version).")
    prefix, network = _PUBLIC_VERSIONS[version]
    depth = raw[4]
    if depth != 3:
        raise _invalid(
            f"Register the account-level key (depth 3, e.g. m/84'/0'/0' or m/44'/60'/0'); this key has depth {depth}."
        )
    if chain == "bitcoin":
        if prefix in ("ypub", "upub"):
            raise _invalid("ypub/upub keys are for P2SH-wrapped SegWit; register a BIP84 zpub (native SegWit).")
        # Wallets export BIP84 account keys as zpub/vpub (SLIP-132) or as plain xpub/tpub.
        normalized = Base58Encoder.CheckEncode((_ZPUB if network == "mainnet" else _VPUB) + raw[4:])
        coin = Bip84Coins.BITCOIN if network == "mainnet" else Bip84Coins.BITCOIN_TESTNET
        ctx = Bip84
    else:
        if prefix != "xpub":
            raise _invalid("An Ethereum account key is a BIP44 xpub (m/44'/60'/0').")
        normalized, coin, ctx = text, Bip44Coins.ETHEREUM, Bip44
    try:
        ctx.FromExtendedKey(normalized, coin)
    except Exception:
        raise _invalid("This extended public key does not decode to a valid public key.") from None
    return normalized, network


def derive_address(*, chain: str, xpub: str, index: int) -> str:
    """The receive address at external-chain index `index` (…/0/index) of an account key."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise ValidationFailed(f"index must be an integer in 0..{MAX_INDEX}.", details={"fields": {"index": ["out of range"]}})
    normalized, network = parse_xpub(chain=chain, xpub=xpub)
    if chain == "bitcoin":
        coin = Bip84Coins.BITCOIN if network == "mainnet" else Bip84Coins.BITCOIN_TESTNET
        account = Bip84.FromExtendedKey(normalized, coin)
    else:
        account = Bip44.FromExtendedKey(normalized, Bip44Coins.ETHEREUM)
    return account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(index).PublicKey().ToAddress()


def eip55_checksum(address: str) -> str:
    """`0x` + 40 hex digits in EIP-55 mixed case."""
    lower = address[2:].lower()
    digest = Kekkak256.QuickDigest(lower.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower))


def normalize_address(*, chain: str, address: object, field: str = "to_address") -> str:
    """Validate a payer or recipient address for `chain` and return its canonical form
    (EIP-55 on Ethereum, lowercase bech32 or Base58 as given on Bitcoin)."""
    chain = _check_chain(chain)
    bad = ValidationFailed(f"{field} is not a valid {chain} address.", details={"fields": {field: ["invalid address"]}})
    if not isinstance(address, str) or not address.strip() or len(address.strip()) > 100:
        raise bad
    text = address.strip()
    if chain == "ethereum":
        if not _ETH_HEX.match(text):
            raise bad
        body = text[2:]
        mixed = body != body.lower() and body != body.upper()
        if mixed:
            try:  # a mixed-case address carries an EIP-55 checksum: it must be right
                EthAddrDecoder.DecodeAddr(text)
            except ValueError:
                raise ValidationFailed(
                    f"{field} has a wrong EIP-55 checksum (a typo?).", details={"fields": {field: ["bad checksum"]}}
                ) from None
        return eip55_checksum(text)
    lowered = text.lower()
    for hrp in ("bc", "tb"):
        if lowered.startswith(hrp + "1"):
            if text != lowered and text != text.upper():
                raise bad  # bech32 forbids mixed case
            try:
                SegwitBech32Decoder.Decode(hrp, lowered)
            except Exception:
                raise bad from None
            return lowered
    try:
        raw = Base58Decoder.CheckDecode(text)
    except Exception:
        raise bad from None
    if len(raw) == 21 and raw[0] in (0x00, 0x05, 0x6F, 0xC4):  # P2PKH / P2SH, mainnet / testnet
        return text
    raise bad


def _key_material(normalized: str) -> bytes:
    """Chain code + public key of a (parsed) extended key: what its addresses derive from."""
    return bytes(Base58Decoder.CheckDecode(normalized)[13:])


@transaction.atomic
def xpub_key_register(*, organization, chain: str, xpub: str, actor=None) -> XpubKey:
    """Make `xpub` the organization's active key for `chain` (deactivating the previous one).

    Registering a key the organization had before reactivates it with its counter, so no index
    is handed out twice; a key registered by another organization is refused."""
    from compliance.services import audit_record

    normalized, network = parse_xpub(chain=chain, xpub=xpub)
    # A key is its chain code and public key: the parent fingerprint and child number in the
    # serialization do not change the addresses, so a re-encoded copy is the same key.
    material = _key_material(normalized)
    if connection.vendor == "postgresql":  # two registrations of one key (in any encoding) queue here
        lock_id = int.from_bytes(hashlib.sha256(b"payorders.xpub:" + material).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
    same = [pk for pk, text in XpubKey.objects.filter(chain=chain, network=network).values_list("pk", "xpub") if _key_material(text) == material]
    existing = XpubKey.objects.select_for_update().filter(pk__in=same).order_by("pk").first()
    if existing is not None and existing.organization_id != organization.pk:
        raise _invalid("This extended public key is already registered.")
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
        actor=actor,
        action="payorders.xpub_key.register",
        target=key,
        data={"organization_id": organization.pk, "chain": chain, "xpub": normalized, "network": network},
    )
    return key


@transaction.atomic  # a savepoint when nested: a refusal does not poison the caller's transaction
def deposit_address_allocate(*, organization, chain: str) -> DepositAddress:
    """A fresh address of the organization's active `chain` key, at the next unused index."""
    chain = _check_chain(chain)
    key = (
        XpubKey.objects.select_for_update()
        .filter(organization=organization, chain=chain, is_active=True)
        .first()
    )
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
