"""Address derivation from extended public keys, xpub validation and address normalization
(payorders.addresses; the key registry and the allocator are in services/test_addresses.py)."""

from __future__ import annotations

import pytest
from bip_utils import Base58Decoder, Base58Encoder

from core.errors import ValidationFailed
from payorders.addresses import derive_address, normalize_address, parse_xpub

# BIP84 test vectors for "abandon ×11 about" (github.com/bitcoin/bips bip-0084.mediawiki).
BIP84_ZPUB = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
BIP84_RECEIVE = [
    "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
    "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g",
]
ETH_INDEX0 = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def _with_version(key: str, version_hex: str) -> str:
    raw = Base58Decoder.CheckDecode(key)
    return Base58Encoder.CheckEncode(bytes.fromhex(version_hex) + raw[4:])


# --- derivation ---------------------------------------------------------------------------------


def test_bip84_vectors(zpub):
    assert zpub == BIP84_ZPUB  # the key the test computed from the mnemonic is the published one
    assert [derive_address(chain="bitcoin", xpub=zpub, index=i) for i in (0, 1)] == BIP84_RECEIVE


def test_bitcoin_account_key_exported_as_xpub_gives_the_same_addresses(zpub):
    as_xpub = _with_version(zpub, "0488b21e")
    assert as_xpub.startswith("xpub")
    assert derive_address(chain="bitcoin", xpub=as_xpub, index=0) == BIP84_RECEIVE[0]


def test_bitcoin_testnet_keys_give_tb1(vpub):
    assert vpub.startswith("vpub")
    address = derive_address(chain="bitcoin", xpub=vpub, index=0)
    assert address == "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl"
    assert derive_address(chain="bitcoin", xpub=_with_version(vpub, "043587cf"), index=0) == address  # tpub
    assert parse_xpub(chain="bitcoin", xpub=vpub)[1] == "testnet"


def test_test_mode_derives_the_testnet_address_of_a_mainnet_key(zpub, vpub):
    """Test mode never hands out a mainnet address: a zpub's address at an index, encoded for
    testnet (same public key); a vpub's own addresses are testnet already."""
    from payorders.addresses import is_testnet_address

    mainnet = derive_address(chain="bitcoin", xpub=zpub, index=0)
    testnet = derive_address(chain="bitcoin", xpub=zpub, index=0, testnet=True)
    assert mainnet.startswith("bc1q") and testnet.startswith("tb1q")
    from bip_utils import SegwitBech32Decoder

    assert SegwitBech32Decoder.Decode("tb", testnet) == SegwitBech32Decoder.Decode("bc", mainnet)
    assert is_testnet_address(testnet) and not is_testnet_address(mainnet)
    assert derive_address(chain="bitcoin", xpub=vpub, index=0, testnet=True) == derive_address(chain="bitcoin", xpub=vpub, index=0)


def test_ethereum_vector_and_checksum(eth_xpub, eth_account):
    assert derive_address(chain="ethereum", xpub=eth_xpub, index=0) == ETH_INDEX0
    # Index 7 from the public key equals the address of the private key's child: no private key needed.
    from bip_utils import Bip44Changes

    expected = eth_account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(7).PublicKey().ToAddress()
    assert derive_address(chain="ethereum", xpub=eth_xpub, index=7) == expected


def test_distinct_indexes_distinct_addresses(eth_xpub, zpub):
    assert len({derive_address(chain="ethereum", xpub=eth_xpub, index=i) for i in range(20)}) == 20
    assert len({derive_address(chain="bitcoin", xpub=zpub, index=i) for i in range(20)}) == 20


@pytest.mark.parametrize("index", [-1, 2**31, True, "1", 1.0])
def test_index_range(eth_xpub, index):
    with pytest.raises(ValidationFailed):
        derive_address(chain="ethereum", xpub=eth_xpub, index=index)


# --- validation -------------------------------------------------------------------------------------


def test_private_keys_are_refused_without_echo(btc_account, eth_account):
    zprv = btc_account.PrivateKey().ToExtended()
    xprv = eth_account.PrivateKey().ToExtended()
    for chain, key in [("bitcoin", zprv), ("ethereum", xprv), ("bitcoin", _with_version(zprv, "0488ade4"))]:
        with pytest.raises(ValidationFailed) as exc:
            parse_xpub(chain=chain, xpub=key)
        assert "PRIVATE" in exc.value.message
        assert key not in str(exc.value.message) + str(exc.value.details)


@pytest.mark.parametrize(
    "xpub",
    [
        "",
        "   ",
        None,
        42,
        "not a key",
        BIP84_ZPUB[:-1] + ("t" if BIP84_ZPUB[-1] != "t" else "u"),  # checksum broken
        "xpub" + "1" * 107,
        "x" * 500,
        Base58Encoder.CheckEncode(b"\x04\x88\xb2\x1e" + b"\x00" * 10),  # too short
        Base58Encoder.CheckEncode(b"\x01\x02\x03\x04" + b"\x03" + b"\x00" * 73),  # unknown version
    ],
)
def test_garbage_is_refused(xpub):
    for chain in ("bitcoin", "ethereum"):
        with pytest.raises(ValidationFailed) as exc:
            parse_xpub(chain=chain, xpub=xpub)
        assert "xpub" in exc.value.details["fields"]


def test_wrong_depth_is_refused(seed):
    from bip_utils import Bip44, Bip44Changes, Bip44Coins

    master = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM)
    with pytest.raises(ValidationFailed, match="depth 0"):
        parse_xpub(chain="ethereum", xpub=master.PublicKey().ToExtended())
    change = master.Purpose().Coin().Account(0).Change(Bip44Changes.CHAIN_EXT)
    with pytest.raises(ValidationFailed, match="depth 4"):
        parse_xpub(chain="ethereum", xpub=change.PublicKey().ToExtended())


def test_key_types_per_chain(zpub, vpub):
    with pytest.raises(ValidationFailed):  # an Ethereum key is an xpub, not a zpub
        parse_xpub(chain="ethereum", xpub=zpub)
    with pytest.raises(ValidationFailed):
        parse_xpub(chain="ethereum", xpub=vpub)
    with pytest.raises(ValidationFailed, match="ypub"):
        parse_xpub(chain="bitcoin", xpub=_with_version(zpub, "049d7cb2"))
    with pytest.raises(ValidationFailed):
        parse_xpub(chain="solana", xpub=zpub)


def test_point_not_on_curve_is_refused(zpub):
    raw = bytearray(Base58Decoder.CheckDecode(zpub))
    raw[45] = 0x02
    raw[46:78] = b"\xff" * 32  # x beyond the field prime: no such point
    with pytest.raises(ValidationFailed):
        parse_xpub(chain="bitcoin", xpub=Base58Encoder.CheckEncode(bytes(raw)))


@pytest.mark.parametrize(
    "chain, address, expected",
    [
        ("ethereum", ETH_INDEX0.lower(), ETH_INDEX0),
        ("ethereum", "0x" + ETH_INDEX0[2:].upper(), ETH_INDEX0),
        ("ethereum", f"  {ETH_INDEX0} ", ETH_INDEX0),
        ("bitcoin", BIP84_RECEIVE[0].upper(), BIP84_RECEIVE[0]),
        ("bitcoin", "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl", "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl"),
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("bitcoin", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ],
)
def test_normalize_address_accepts(chain, address, expected):
    assert normalize_address(chain=chain, address=address) == expected


@pytest.mark.parametrize(
    "chain, address",
    [
        ("ethereum", "0x9858EfFD232B4033E47d90003D41EC34EcaEda95"),  # bad EIP-55 checksum
        ("ethereum", "0x9858EfFD232B4033E47d90003D41EC34EcaEda9"),
        ("ethereum", "9858EfFD232B4033E47d90003D41EC34EcaEda94"),
        ("ethereum", BIP84_RECEIVE[0]),
        ("bitcoin", "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv"),  # bad bech32 checksum
        ("bitcoin", "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306FYU"),  # mixed case
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"),
        ("bitcoin", ETH_INDEX0),
        ("bitcoin", ""),
        ("bitcoin", None),
    ],
)
def test_normalize_address_refuses(chain, address):
    with pytest.raises(ValidationFailed):
        normalize_address(chain=chain, address=address)


# --- registration and allocation ---------------------------------------------------------------------
