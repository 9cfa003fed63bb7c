"""BIP21 and EIP-681 payment URIs."""

from decimal import Decimal

import pytest

from core.errors import ValidationFailed
from payorders.chains.base import UnsupportedAsset
from payorders.uris import bip21_uri, eip681_native_uri, eip681_token_uri, payment_uri

BTC = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
ETH = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
MAINNET_USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"


@pytest.mark.parametrize(
    "amount, text",
    [
        (Decimal("0.00012345"), "0.00012345"),
        (Decimal("1.50000000"), "1.5"),
        (Decimal("20"), "20"),
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("21000000"), "21000000"),
    ],
)
def test_bip21_amount_is_plain_decimal_btc(amount, text):
    assert bip21_uri(address=BTC, amount=amount) == f"bitcoin:{BTC}?amount={text}"


def test_bip21_label_and_message_are_percent_encoded():
    uri = bip21_uri(address=BTC.upper(), amount=Decimal("1"), label="Coffer & Co", message="Order #12/a?")
    assert uri == f"bitcoin:{BTC}?amount=1&label=Coffer%20%26%20Co&message=Order%20%2312%2Fa%3F"


def test_eip681_native_value_in_wei():
    assert eip681_native_uri(address=ETH.lower(), amount=Decimal("0.015"), chain_id=1) == f"ethereum:{ETH}@1?value=15000000000000000"
    assert eip681_native_uri(address=ETH, amount=Decimal("1.000000000000000001"), chain_id=1337).endswith("@1337?value=1000000000000000001")


def test_eip681_token_transfer():
    uri = eip681_token_uri(token=MAINNET_USDC.lower(), address=ETH, amount=Decimal("25.5"), decimals=6, chain_id=1)
    assert uri == f"ethereum:{MAINNET_USDC}@1/transfer?address={ETH}&uint256=25500000"


def test_payment_uri_by_asset(settings):
    settings.EVM_CHAIN_ID = 5
    settings.EVM_TOKENS = {"USDC": {"address": MAINNET_USDC, "decimals": 6}}
    assert payment_uri(asset="BTC", address=BTC, amount=Decimal("0.1")) == f"bitcoin:{BTC}?amount=0.1"
    assert payment_uri(asset="eth", address=ETH, amount=Decimal("2")) == f"ethereum:{ETH}@5?value=2000000000000000000"
    assert payment_uri(asset="USDC", address=ETH, amount=Decimal("0.000001")) == (
        f"ethereum:{MAINNET_USDC}@5/transfer?address={ETH}&uint256=1"
    )
    with pytest.raises(UnsupportedAsset):
        payment_uri(asset="SOL", address=ETH, amount=Decimal("1"))
    settings.EVM_TOKENS = {}
    with pytest.raises(ValidationFailed):
        payment_uri(asset="USDC", address=ETH, amount=Decimal("1"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: bip21_uri(address=BTC, amount=Decimal("0.000000001")),  # below a satoshi: never rounded
        lambda: bip21_uri(address=BTC, amount=Decimal("0")),
        lambda: bip21_uri(address=BTC, amount=Decimal("-1")),
        lambda: bip21_uri(address=BTC, amount=0.1),
        lambda: bip21_uri(address=BTC, amount=Decimal("NaN")),
        lambda: bip21_uri(address=ETH, amount=Decimal("1")),  # not a Bitcoin address
        lambda: eip681_native_uri(address=BTC, amount=Decimal("1"), chain_id=1),
        lambda: eip681_native_uri(address=ETH, amount=Decimal("1e-19"), chain_id=1),
        lambda: eip681_token_uri(token=ETH, address=ETH, amount=Decimal("0.0000001"), decimals=6, chain_id=1),
        lambda: eip681_token_uri(token="0x123", address=ETH, amount=Decimal("1"), decimals=6, chain_id=1),
    ],
)
def test_refusals(call):
    with pytest.raises(ValidationFailed):
        call()


# --- Test mode (issue 14 item 1): never a main network -------------------------------------------------

TESTNET_BTC = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"


def test_test_mode_uses_the_test_chain_id(settings):
    settings.EVM_CHAIN_ID = 1
    settings.EVM_TEST_CHAIN_ID = 11155111
    assert payment_uri(asset="ETH", address=ETH, amount=Decimal("1"), livemode=False) == f"ethereum:{ETH}@11155111?value={10**18}"
    assert payment_uri(asset="ETH", address=ETH, amount=Decimal("1")) == f"ethereum:{ETH}@1?value={10**18}"
    settings.EVM_TOKENS = {"USDC": {"address": MAINNET_USDC, "decimals": 6}}
    assert "@11155111/transfer?" in payment_uri(asset="USDC", address=ETH, amount=Decimal("2"), livemode=False)


def test_test_mode_refuses_mainnet_as_its_test_chain(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.EVM_TEST_CHAIN_ID = 1
    with pytest.raises(ImproperlyConfigured):
        payment_uri(asset="ETH", address=ETH, amount=Decimal("1"), livemode=False)


def test_test_mode_bip21_needs_a_testnet_address():
    assert payment_uri(asset="BTC", address=TESTNET_BTC, amount=Decimal("0.1"), livemode=False) == f"bitcoin:{TESTNET_BTC}?amount=0.1"
    with pytest.raises(ValidationFailed):
        payment_uri(asset="BTC", address=BTC, amount=Decimal("0.1"), livemode=False)
