"""Ethereum (or any EVM chain) over plain JSON-RPC with httpx: works against any node that speaks
the standard `eth_*` methods (geth, erigon, a hosted endpoint, ganache in tests).

- Native ETH: the transaction's `value` to its `to` address.
- ERC-20: `Transfer(address,address,uint256)` logs emitted by the token contracts configured in
  settings.EVM_TOKENS (`{"USDC": {"address": "0x...", "decimals": 6}}`); a log from any other
  contract is ignored, so a look-alike token cannot pass for USDC.
- Amounts: hex integers -> Python ints -> `Decimal` with `from_base_units`; no float anywhere.
- A transaction without a receipt is pending (0 confirmations); a receipt with status 0 means it
  reverted: its native transfer is reported as FAILED and it has no token logs. A pending
  `transfer(to, amount)` call to a configured token is decoded from its input (log index
  PENDING_LOG_INDEX until mined), so a broadcast token payment is seen before its block.
- Transport errors, timeouts, HTTP 5xx and 429 are retried (settings.EVM_RPC_RETRIES, with a short
  backoff); whatever still fails, and any JSON-RPC error object, is `ChainUnavailable` (503).
- Native transfers to an address have no index in JSON-RPC, so `transfers_to` scans blocks
  (at most settings.EVM_SCAN_MAX_BLOCKS per call, from `from_block`); token transfers use
  `eth_getLogs`. Value moved by contract-internal calls is not visible to either.
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import ValidationFailed

from payorders.addresses import eip55_checksum, normalize_address
from payorders.chains.base import (
    ChainAsset,
    ChainProvider,
    ChainTransfer,
    ChainUnavailable,
    PENDING_LOG_INDEX,
    TransactionNotFound,
    TransferStatus,
    from_base_units,
    normalize_tx_hash,
)

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_SELECTOR = "0xa9059cbb"  # transfer(address,uint256)
BALANCE_OF_SELECTOR = "0x70a08231"
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_ids = itertools.count(1)


def _int(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainUnavailable("The node sent a malformed answer.", details={"field": what})
    try:
        return int(value, 16) if value != "0x" else 0
    except ValueError:
        raise ChainUnavailable("The node sent a malformed answer.", details={"field": what}) from None


def _topic_address(topic: str) -> str:
    return eip55_checksum("0x" + topic[-40:])


def _address_topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


class EvmRpc:
    """A minimal JSON-RPC 2.0 client with timeouts and retries."""

    def __init__(self, url: str, *, timeout: float, retries: int):
        self.url = url
        self.timeout = timeout
        self.retries = max(0, retries)

    def call(self, method: str, params: list | None = None) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or []}
        last_error = "unknown"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
            try:
                response = httpx.post(self.url, json=payload, timeout=self.timeout)
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
                continue
            if response.status_code in _RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise ChainUnavailable(
                    "The blockchain node refused the request.", details={"method": method, "status": response.status_code}
                )
            try:
                body = response.json()
            except ValueError:
                raise ChainUnavailable("The blockchain node sent a non-JSON answer.", details={"method": method}) from None
            if not isinstance(body, dict):
                raise ChainUnavailable("The blockchain node sent a malformed answer.", details={"method": method})
            if body.get("error") is not None:
                error = body["error"] if isinstance(body["error"], dict) else {"message": str(body["error"])}
                raise ChainUnavailable(
                    "The blockchain node returned an error.",
                    details={"method": method, "rpc_code": error.get("code"), "rpc_message": str(error.get("message", ""))[:200]},
                )
            if "result" not in body:
                raise ChainUnavailable("The blockchain node sent a malformed answer.", details={"method": method})
            return body["result"]
        raise ChainUnavailable("The blockchain node cannot be reached.", details={"method": method, "reason": last_error})


class EvmChainProvider(ChainProvider):
    name = "evm"

    def __init__(self, chain: str = "ethereum", *, url: str | None = None, tokens: dict | None = None):
        super().__init__(chain)
        url = url if url is not None else settings.EVM_RPC_URL
        if not url:
            raise ImproperlyConfigured("CHAIN_PROVIDER=evm needs EVM_RPC_URL")
        self.rpc = EvmRpc(url, timeout=float(settings.EVM_RPC_TIMEOUT), retries=int(settings.EVM_RPC_RETRIES))
        configured = tokens if tokens is not None else settings.EVM_TOKENS
        self.tokens: dict[str, tuple[str, int]] = {}  # symbol -> (checksummed contract, decimals)
        self.token_by_contract: dict[str, tuple[str, int]] = {}  # lowercase contract -> (symbol, decimals)
        for symbol, conf in configured.items():
            try:
                address = normalize_address(chain="ethereum", address=conf["address"], field=f"EVM_TOKENS.{symbol}")
                decimals = int(conf["decimals"])
            except (ValidationFailed, KeyError, TypeError, ValueError):
                raise ImproperlyConfigured(f"EVM_TOKENS[{symbol!r}] needs a valid 'address' and integer 'decimals'") from None
            self.tokens[symbol.upper()] = (address, decimals)
            self.token_by_contract[address.lower()] = (symbol.upper(), decimals)

    # --- helpers -------------------------------------------------------------------------------
    def _asset(self, asset: str) -> ChainAsset:
        spec = super()._asset(asset)
        if not spec.native and spec.symbol not in self.tokens:
            raise ChainUnavailable(
                f"No contract is configured for {spec.symbol} (settings.EVM_TOKENS).", details={"asset": spec.symbol}
            )
        return spec

    def current_block(self) -> int:
        return _int(self.rpc.call("eth_blockNumber"), "blockNumber")

    def _native_transfer(self, tx: dict, receipt: dict | None, head: int) -> ChainTransfer | None:
        value = _int(tx.get("value", "0x0"), "value")
        if value == 0 or not tx.get("to"):
            return None
        block_number, confirmations, status = self._inclusion(receipt, head)
        return ChainTransfer(
            tx_hash=tx["hash"].lower(),
            chain=self.chain,
            asset="ETH",
            from_address=eip55_checksum(tx["from"]),
            to_address=eip55_checksum(tx["to"]),
            amount=from_base_units(value, 18),
            block_number=block_number,
            confirmations=confirmations,
            status=status,
        )

    @staticmethod
    def _inclusion(receipt: dict | None, head: int) -> tuple[int | None, int, str]:
        if receipt is None or receipt.get("blockNumber") is None:
            return None, 0, TransferStatus.PENDING
        block_number = _int(receipt["blockNumber"], "blockNumber")
        status = TransferStatus.SUCCEEDED if _int(receipt.get("status", "0x1"), "status") == 1 else TransferStatus.FAILED
        return block_number, max(head - block_number + 1, 0), status

    def _log_transfer(self, log: dict, head: int) -> ChainTransfer | None:
        topics = log.get("topics") or []
        token = self.token_by_contract.get(str(log.get("address", "")).lower())
        if token is None or len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC or log.get("removed"):
            return None
        symbol, decimals = token
        block_number = _int(log["blockNumber"], "blockNumber")
        return ChainTransfer(
            tx_hash=log["transactionHash"].lower(),
            chain=self.chain,
            asset=symbol,
            from_address=_topic_address(topics[1]),
            to_address=_topic_address(topics[2]),
            amount=from_base_units(_int(log.get("data") or "0x0", "data"), decimals),
            block_number=block_number,
            confirmations=max(head - block_number + 1, 0),
            status=TransferStatus.SUCCEEDED,
            log_index=_int(log["logIndex"], "logIndex"),
        )

    def _pending_token_transfer(self, tx: dict) -> ChainTransfer | None:
        """A broadcast ERC-20 `transfer(to, amount)` sent straight to a configured token contract,
        decoded from the transaction's input (a pending transaction has no logs yet): status
        PENDING, no block, log index PENDING_LOG_INDEX. Anything else (another method, another
        contract, a malformed or zero-amount call) is None; a transfer made by some other
        contract's code is seen once mined, from its log."""
        token = self.token_by_contract.get(str(tx.get("to") or "").lower())
        data = str(tx.get("input") or tx.get("data") or "").lower()
        if token is None or not data.startswith(TRANSFER_SELECTOR) or len(data) < 10 + 128:
            return None
        recipient, value = data[10:74], data[74:138]
        try:
            amount = int(value, 16)
            int(recipient, 16)
        except ValueError:
            return None
        if recipient[:24] != "0" * 24 or amount == 0:  # dirty address bits: the token's ABI decoder reverts
            return None
        symbol, decimals = token
        return ChainTransfer(
            tx_hash=str(tx["hash"]).lower(),
            chain=self.chain,
            asset=symbol,
            from_address=eip55_checksum(tx["from"]),
            to_address=eip55_checksum("0x" + recipient[24:]),
            amount=from_base_units(amount, decimals),
            block_number=None,
            confirmations=0,
            status=TransferStatus.PENDING,
            log_index=PENDING_LOG_INDEX,
        )

    # --- interface -----------------------------------------------------------------------------
    def get_transaction(self, tx_hash: str) -> list[ChainTransfer] | None:
        tx_hash = normalize_tx_hash(tx_hash)
        tx = self.rpc.call("eth_getTransactionByHash", [tx_hash])
        if tx is None:
            return None
        receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        head = self.current_block()
        transfers: list[ChainTransfer] = []
        native = self._native_transfer(tx, receipt, head)
        if native is not None:
            transfers.append(native)
        if receipt is not None:
            for log in receipt.get("logs") or []:
                transfer = self._log_transfer(log, head)
                if transfer is not None:
                    transfers.append(transfer)
        elif (pending := self._pending_token_transfer(tx)) is not None:  # broadcast, not mined: no logs yet
            transfers.append(pending)
        return transfers

    def get_confirmations(self, tx_hash: str) -> int:
        tx_hash = normalize_tx_hash(tx_hash)
        receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            if self.rpc.call("eth_getTransactionByHash", [tx_hash]) is None:
                raise TransactionNotFound(details={"tx_hash": tx_hash, "chain": self.chain})
            return 0
        return self._inclusion(receipt, self.current_block())[1]

    def transfers_to(self, address: str, asset: str, from_block: int = 0) -> list[ChainTransfer]:
        spec = self._asset(asset)
        address = normalize_address(chain="ethereum", address=address, field="address")
        head = self.current_block()
        start = max(int(from_block), 0)
        if start > head:
            return []
        end = min(head, start + int(settings.EVM_SCAN_MAX_BLOCKS) - 1)
        if not spec.native:
            contract, _ = self.tokens[spec.symbol]
            logs = self.rpc.call(
                "eth_getLogs",
                [{"address": contract, "fromBlock": hex(start), "toBlock": hex(end), "topics": [TRANSFER_TOPIC, None, _address_topic(address)]}],
            )
            found = [t for t in (self._log_transfer(log, head) for log in logs or []) if t is not None]
            return sorted(found, key=lambda t: (t.block_number or 0, t.log_index or 0))
        found = []
        for number in range(start, end + 1):
            block = self.rpc.call("eth_getBlockByNumber", [hex(number), True])
            for tx in (block or {}).get("transactions") or []:
                if not isinstance(tx, dict) or not tx.get("to") or tx["to"].lower() != address.lower():
                    continue
                if _int(tx.get("value", "0x0"), "value") == 0:
                    continue
                receipt = self.rpc.call("eth_getTransactionReceipt", [tx["hash"]])
                transfer = self._native_transfer(tx, receipt, head)
                if transfer is not None and transfer.status == TransferStatus.SUCCEEDED:
                    found.append(transfer)
        return found

    def reconcilable_assets(self) -> list[str]:
        return sorted(s for s in self.supported_assets() if s == "ETH" or s in self.tokens)

    def transfers_to_addresses(self, addresses: list[str], asset: str, from_block: int, to_block: int) -> list[ChainTransfer]:
        """Tokens: `eth_getLogs` for Transfer logs whose recipient topic is any of the addresses,
        in windows of EVM_SCAN_MAX_BLOCKS blocks (and at most 1000 addresses a call). Native
        ETH: a scan of every block in the range (JSON-RPC has no index of value transfers), each
        transaction to one of the addresses checked against its receipt (reverted ones dropped)."""
        spec = self._asset(asset)
        wanted = {normalize_address(chain="ethereum", address=a, field="addresses").lower() for a in addresses}
        head = self.current_block()
        start, end = max(int(from_block), 0), min(int(to_block), head)
        if not wanted or start > end:
            return []
        step = max(int(settings.EVM_SCAN_MAX_BLOCKS), 1)
        found: list[ChainTransfer] = []
        if not spec.native:
            contract, _ = self.tokens[spec.symbol]
            topics = sorted(_address_topic(a) for a in wanted)
            for low in range(start, end + 1, step):
                high = min(low + step - 1, end)
                for i in range(0, len(topics), 1000):
                    logs = self.rpc.call("eth_getLogs", [{
                        "address": contract, "fromBlock": hex(low), "toBlock": hex(high), "topics": [TRANSFER_TOPIC, None, topics[i:i + 1000]],
                    }])
                    found += [t for t in (self._log_transfer(log, head) for log in logs or []) if t is not None]
            return sorted(found, key=lambda t: (t.block_number or 0, t.log_index or 0))
        for number in range(start, end + 1):
            block = self.rpc.call("eth_getBlockByNumber", [hex(number), True])
            for tx in (block or {}).get("transactions") or []:
                if not isinstance(tx, dict) or not tx.get("to") or tx["to"].lower() not in wanted:
                    continue
                if _int(tx.get("value", "0x0"), "value") == 0:
                    continue
                transfer = self._native_transfer(tx, self.rpc.call("eth_getTransactionReceipt", [tx["hash"]]), head)
                if transfer is not None and transfer.status == TransferStatus.SUCCEEDED:
                    found.append(transfer)
        return found

    def pending_transfers_to(self, address: str, asset: str) -> list[ChainTransfer]:
        """Transfers not yet mined, from the node's pending block (`eth_getBlockByNumber("pending",
        true)`, built by geth and erigon from their mempool) and its transaction pool
        (`txpool_content`, geth's and ganache's; a node without it answers an error, which is
        ignored). Native ETH: a transaction's value to the address. ERC-20: a `transfer(address,
        amount)` call to the token's contract naming the address, decoded from its input (no
        logs before it is mined); its log index is PENDING_LOG_INDEX until the mined log gives
        the real one (payorders.services.payments matches the two, so it is counted once)."""
        spec = self._asset(asset)
        address = normalize_address(chain="ethereum", address=address, field="address")
        contract = None if spec.native else self.tokens[spec.symbol][0].lower()
        candidates: list[dict] = list((self.rpc.call("eth_getBlockByNumber", ["pending", True]) or {}).get("transactions") or [])
        try:
            pool = self.rpc.call("txpool_content") or {}
        except ChainUnavailable:
            pool = {}  # the node keeps its pool to itself: the pending block is all we can see
        for by_nonce in ((pool.get("pending") or {}) if isinstance(pool, dict) else {}).values():
            candidates.extend(by_nonce.values() if isinstance(by_nonce, dict) else [])
        found: dict[str, ChainTransfer] = {}
        for tx in candidates:
            if not isinstance(tx, dict) or not tx.get("to") or tx.get("hash") in found:
                continue
            if contract is None:
                transfer = self._native_transfer(tx, None, 0) if str(tx["to"]).lower() == address.lower() else None
            else:
                transfer = self._pending_token_transfer(tx) if str(tx["to"]).lower() == contract else None
                if transfer is not None and transfer.to_address.lower() != address.lower():
                    transfer = None
            if transfer is None:
                continue
            if tx.get("blockHash") and self.rpc.call("eth_getTransactionReceipt", [tx["hash"]]) is not None:
                continue  # a node whose "pending" block is its latest: mined, the block scan sees it
            found[tx["hash"]] = transfer
        return list(found.values())

    def get_balance(self, address: str, asset: str) -> Decimal:
        spec = self._asset(asset)
        address = normalize_address(chain="ethereum", address=address, field="address")
        if spec.native:
            return from_base_units(_int(self.rpc.call("eth_getBalance", [address, "latest"]), "balance"), 18)
        contract, decimals = self.tokens[spec.symbol]
        data = BALANCE_OF_SELECTOR + "0" * 24 + address[2:].lower()
        result = self.rpc.call("eth_call", [{"to": contract, "data": data}, "latest"])
        return from_base_units(_int(result, "balanceOf"), decimals)
