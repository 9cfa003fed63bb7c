"""Extended public keys and addresses: parsing, derivation and validation (no database, no
private keys).

- Bitcoin: a BIP84 account key (m/84'/0'/0', exported as zpub or xpub; testnet vpub or tpub) gives
  native SegWit addresses `bc1q...` (`tb1q...` on testnet) at m/84'/0'/0'/0/index.
- Ethereum: a BIP44 account key (m/44'/60'/0', xpub) gives EIP-55 checksummed addresses at
  m/44'/60'/0'/0/index.
- Any extended *private* key (xprv, zprv, tprv, vprv, yprv, uprv) is refused before anything
  else is done with it, and is never echoed back in an error.
- Keys are registered and addresses allocated by payorders.services.addresses.
"""

from __future__ import annotations

import re

from bip_utils import Base58Decoder, Base58Encoder, Bip44, Bip44Changes, Bip44Coins, Bip84, Bip84Coins, EthAddrDecoder, SegwitBech32Decoder
from bip_utils.utils.crypto import Kekkak256

from core.errors import ValidationFailed
from payorders.chains.base import CHAINS

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


def invalid_xpub(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": {"xpub": [message]}})


def check_chain(chain: object) -> str:
    if chain not in CHAINS:
        raise ValidationFailed(
            f"chain must be one of {', '.join(CHAINS)}.", details={"fields": {"chain": [f"one of {', '.join(CHAINS)}"]}}
        )
    return chain  # type: ignore[return-value]


def parse_xpub(*, chain: str, xpub: object) -> tuple[str, str]:
    """Validate an account-level extended public key for `chain`.

    Returns (key in the form bip-utils derives from, network). Raises ValidationFailed naming the
    `xpub` field on garbage, a private key, the wrong depth or a key type the chain cannot use."""
    chain = check_chain(chain)
    if not isinstance(xpub, str) or not xpub.strip():
        raise invalid_xpub("An extended public key is required.")
    text = xpub.strip()
    if len(text) > 128:
        raise invalid_xpub("This is not an extended public key.")
    try:
        raw = Base58Decoder.CheckDecode(text)
    except Exception:  # bip-utils raises several types for bad alphabet / checksum
        raise invalid_xpub("This is not an extended public key (bad Base58Check encoding).") from None
    if len(raw) != 78:
        raise invalid_xpub("This is not an extended public key (wrong length).")
    version = raw[:4].hex()
    if version in _PRIVATE_VERSIONS:
        raise invalid_xpub("This is an extended PRIVATE key. Never share it: register the account's extended public key.")
    if version not in _PUBLIC_VERSIONS:
        raise invalid_xpub("This is not an extended public key (unknown version).")
    prefix, network = _PUBLIC_VERSIONS[version]
    depth = raw[4]
    if depth != 3:
        raise invalid_xpub(
            f"Register the account-level key (depth 3, e.g. m/84'/0'/0' or m/44'/60'/0'); this key has depth {depth}."
        )
    if chain == "bitcoin":
        if prefix in ("ypub", "upub"):
            raise invalid_xpub("ypub/upub keys are for P2SH-wrapped SegWit; register a BIP84 zpub (native SegWit).")
        # Wallets export BIP84 account keys as zpub/vpub (SLIP-132) or as plain xpub/tpub.
        normalized = Base58Encoder.CheckEncode((_ZPUB if network == "mainnet" else _VPUB) + raw[4:])
        coin = Bip84Coins.BITCOIN if network == "mainnet" else Bip84Coins.BITCOIN_TESTNET
        ctx = Bip84
    else:
        if prefix != "xpub":
            raise invalid_xpub("An Ethereum account key is a BIP44 xpub (m/44'/60'/0').")
        normalized, coin, ctx = text, Bip44Coins.ETHEREUM, Bip44
    try:
        ctx.FromExtendedKey(normalized, coin)
    except Exception:
        raise invalid_xpub("This extended public key does not decode to a valid public key.") from None
    return normalized, network


def derive_address(*, chain: str, xpub: str, index: int, testnet: bool = False) -> str:
    """The receive address at external-chain index `index` (…/0/index) of an account key.

    `testnet=True` (test mode) gives a Bitcoin key's testnet address (`tb1q...`) whatever the
    key's own network: the same public key, encoded for testnet, so a test payment can never go to
    a mainnet address. Ethereum addresses are the same on every network (the URI's chain id
    tells networks apart)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise ValidationFailed(f"index must be an integer in 0..{MAX_INDEX}.", details={"fields": {"index": ["out of range"]}})
    normalized, network = parse_xpub(chain=chain, xpub=xpub)
    if chain == "bitcoin" and testnet and network == "mainnet":
        normalized, network = Base58Encoder.CheckEncode(_VPUB + bytes(Base58Decoder.CheckDecode(normalized)[4:])), "testnet"
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
    chain = check_chain(chain)
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


def is_testnet_address(address: str) -> bool:
    """A Bitcoin testnet (or signet/regtest-style) address: bech32 `tb1...`, Base58 `m`/`n`/`2`."""
    text = address.strip()
    if text.lower().startswith("tb1"):
        return True
    try:
        raw = Base58Decoder.CheckDecode(text)
    except Exception:
        return False
    return len(raw) == 21 and raw[0] in (0x6F, 0xC4)


def key_material(normalized: str) -> bytes:
    """Chain code + public key of a (parsed) extended key: what its addresses derive from."""
    return bytes(Base58Decoder.CheckDecode(normalized)[13:])
