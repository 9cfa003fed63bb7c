"""Payment URIs a wallet understands, for the checkout page's link and QR code.

- BIP21: `bitcoin:<address>?amount=<BTC as a plain decimal>` (optional label/message, percent-encoded).
- EIP-681 native: `ethereum:<address>@<chain id>?value=<wei as an integer>`.
- EIP-681 ERC-20: `ethereum:<token contract>@<chain id>/transfer?address=<recipient>&uint256=<base units>`.
Amounts must be positive and exact in the asset's smallest unit; nothing is rounded.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

from django.conf import settings

from core.errors import ValidationFailed
from payorders.addresses import normalize_address
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


def payment_uri(*, asset: str, address: str, amount: Decimal, chain_id: int | None = None) -> str:
    """The URI for paying `amount` of `asset` (BTC, ETH or an ERC-20 in settings.EVM_TOKENS) to `address`."""
    spec = chain_asset(asset)
    if spec.chain == "bitcoin":
        return bip21_uri(address=address, amount=amount)
    if spec.native:
        return eip681_native_uri(address=address, amount=amount, chain_id=chain_id)
    token = settings.EVM_TOKENS.get(spec.symbol)
    if not token:
        raise ValidationFailed(f"No contract is configured for {spec.symbol}.", details={"fields": {"currency": ["no token contract configured"]}})
    return eip681_token_uri(
        token=token["address"], address=address, amount=amount, decimals=int(token["decimals"]), chain_id=chain_id
    )
