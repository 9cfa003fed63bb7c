"""Payment URIs a wallet understands, for the checkout page's link and QR code.

- BIP21: `bitcoin:<address>?amount=<BTC as a plain decimal>` (optional label/message, percent-encoded).
- EIP-681 native: `ethereum:<address>@<chain id>?value=<wei as an integer>`.
- EIP-681 ERC-20: `ethereum:<token contract>@<chain id>/transfer?address=<recipient>&uint256=<base units>`.
Amounts must be positive and exact in the asset's smallest unit; nothing is rounded.

Test mode (`livemode=False`: the sandbox chain or a test key, core.livemode) never points at a
main network: EIP-681 URIs carry settings.EVM_TEST_CHAIN_ID (Sepolia, 11155111, by default) and a
BIP21 URI is refused for anything but a testnet address (tb1..., m/n/2...). A test chain id set
to mainnet's 1 is refused as a configuration error.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import ValidationFailed
from payorders.addresses import is_testnet_address, normalize_address
from payorders.chains.base import chain_asset, to_base_units


def _positive(amount: Decimal) -> Decimal:
    if isinstance(amount, (float, bool)) or not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValidationFailed("amount must be a positive Decimal.", details={"fields": {"amount": ["must be a positive Decimal"]}})
    return amount


def bip21_uri(*, address: str, amount: Decimal, label: str | None = None, message: str | None = None) -> str:
    address = normalize_address(chain="bitcoin", address=address, field="address")
    satoshi = to_base_units(_positive(amount), 8)
    btc = format(Decimal(satoshi).scaleb(-8).normalize(), "f")
    params = [f"amount={btc}"]
    if label:
        params.append("label=" + quote(label, safe=""))
    if message:
        params.append("message=" + quote(message, safe=""))
    return f"bitcoin:{address}?" + "&".join(params)


def eip681_native_uri(*, address: str, amount: Decimal, chain_id: int | None = None) -> str:
    address = normalize_address(chain="ethereum", address=address, field="address")
    wei = to_base_units(_positive(amount), 18)
    return f"ethereum:{address}@{chain_id or settings.EVM_CHAIN_ID}?value={wei}"


def eip681_token_uri(*, token: str, address: str, amount: Decimal, decimals: int, chain_id: int | None = None) -> str:
    token = normalize_address(chain="ethereum", address=token, field="token")
    address = normalize_address(chain="ethereum", address=address, field="address")
    units = to_base_units(_positive(amount), decimals)
    return f"ethereum:{token}@{chain_id or settings.EVM_CHAIN_ID}/transfer?address={address}&uint256={units}"


MAINNET_CHAIN_ID = 1


def evm_chain_id(*, livemode: bool) -> int:
    """The EIP-681 chain id for live or test mode."""
    if livemode:
        return int(settings.EVM_CHAIN_ID)
    chain_id = int(settings.EVM_TEST_CHAIN_ID)
    if chain_id == MAINNET_CHAIN_ID:
        raise ImproperlyConfigured("EVM_TEST_CHAIN_ID must be a test network's chain id, not Ethereum mainnet's 1")
    return chain_id


def payment_uri(*, asset: str, address: str, amount: Decimal, chain_id: int | None = None, livemode: bool = True) -> str:
    """The URI for paying `amount` of `asset` (BTC, ETH or an ERC-20 in settings.EVM_TOKENS) to
    `address`; in test mode (`livemode=False`) on a test network only."""
    spec = chain_asset(asset)
    if spec.chain == "bitcoin":
        if not livemode and not is_testnet_address(address):
            raise ValidationFailed(
                "A test-mode payment needs a testnet Bitcoin address.", details={"fields": {"address": ["not a testnet address"]}}
            )
        return bip21_uri(address=address, amount=amount)
    if chain_id is None:
        chain_id = evm_chain_id(livemode=livemode)
    if spec.native:
        return eip681_native_uri(address=address, amount=amount, chain_id=chain_id)
    token = settings.EVM_TOKENS.get(spec.symbol)
    if not token:
        raise ValidationFailed(f"No contract is configured for {spec.symbol}.", details={"fields": {"currency": ["no token contract configured"]}})
    return eip681_token_uri(
        token=token["address"], address=address, amount=amount, decimals=int(token["decimals"]), chain_id=chain_id
    )
