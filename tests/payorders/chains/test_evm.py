"""The EVM JSON-RPC provider against a real ganache node (and small local fake servers for the
failure modes a real node will not produce on demand)."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import ValidationFailed
from payorders.addresses import derive_address
from payorders.chains import get_chain_provider
from payorders.chains.base import PENDING_LOG_INDEX, ChainUnavailable, TransactionNotFound, TransferStatus
from payorders.chains.evm import EvmChainProvider

ETH = 10**18
TRANSFER_SELECTOR = "a9059cbb"


def _word(value: int | str) -> str:
    if isinstance(value, str):
        return value[2:].lower().rjust(64, "0")
    return value.to_bytes(32, "big").hex()


def _selector(signature: str) -> str:
    from bip_utils.utils.crypto import Kekkak256

    return Kekkak256.QuickDigest(signature.encode()).hex()[:8]


@pytest.fixture
def evm(settings, ganache, token):
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = ganache.url
    settings.EVM_RPC_RETRIES = 0
    settings.EVM_TOKENS = {"USDC": {"address": token, "decimals": 6}}
    provider = get_chain_provider("ethereum")
    assert isinstance(provider, EvmChainProvider)
    return provider


_used = iter(range(100, 10_000))  # derivation indexes: every test pays a fresh address


def _fresh_address(eth_xpub) -> str:
    return derive_address(chain="ethereum", xpub=eth_xpub, index=next(_used))


def test_native_eth_payment_seen_confirmed_and_balanced(evm, ganache, eth_xpub):
    to = _fresh_address(eth_xpub)
    start = evm.current_block()
    tx_hash = ganache.send(to=to, value=3 * ETH // 2)  # 1.5 ETH, mined at once (instamine)

    (transfer,) = evm.get_transaction(tx_hash)
    assert transfer.asset == "ETH" and transfer.chain == "ethereum"
    assert transfer.to_address == to  # EIP-55 form, as derived
    assert transfer.from_address.lower() == ganache.accounts[0]
    assert transfer.amount == Decimal("1.5") and isinstance(transfer.amount, Decimal)
    assert transfer.status == TransferStatus.SUCCEEDED
    assert transfer.block_number == start + 1
    assert transfer.confirmations == 1
    assert evm.get_confirmations(tx_hash) == 1

    ganache.mine(11)
    assert evm.get_confirmations(tx_hash) == 12 == evm.confirmations_required()
    assert evm.get_transaction(tx_hash.upper().replace("0X", "0x"))[0].confirmations == 12

    found = evm.transfers_to(to, "ETH", from_block=start)
    assert [(t.tx_hash, t.amount) for t in found] == [(tx_hash, Decimal("1.5"))]
    assert evm.transfers_to(to, "ETH", from_block=start + 2) == []
    assert evm.transfers_to(to, "ETH", from_block=evm.current_block() + 5) == []
    assert evm.get_balance(to, "ETH") == Decimal("1.5")
    assert evm.get_balance(to.lower(), "ETH") == Decimal("1.5")


def test_one_wei_is_exact(evm, ganache, eth_xpub):
    to = _fresh_address(eth_xpub)
    tx_hash = ganache.send(to=to, value=ETH + 1)
    assert evm.get_transaction(tx_hash)[0].amount == Decimal("1.000000000000000001")
    assert evm.get_balance(to, "ETH") == Decimal("1.000000000000000001")


def test_pending_transaction_has_zero_confirmations(evm, ganache, eth_xpub):
    to = _fresh_address(eth_xpub)
    ganache.rpc("miner_stop")
    try:
        tx_hash = ganache.send(to=to, value=ETH)
        (transfer,) = evm.get_transaction(tx_hash)
        assert transfer.status == TransferStatus.PENDING
        assert transfer.block_number is None and transfer.confirmations == 0
        assert evm.get_confirmations(tx_hash) == 0
        assert evm.get_balance(to, "ETH") == 0
    finally:
        ganache.rpc("miner_start")
    ganache.mine(1)
    assert evm.get_confirmations(tx_hash) >= 1
    assert evm.get_transaction(tx_hash)[0].status == TransferStatus.SUCCEEDED


def test_broadcast_payment_seen_in_the_pending_block_before_it_is_mined(evm, ganache, token, eth_xpub):
    to = _fresh_address(eth_xpub)
    other = _fresh_address(eth_xpub)
    assert evm.pending_transfers_to(to, "ETH") == []
    ganache.rpc("miner_stop")
    try:
        tx_hash = ganache.send(to=to, value=ETH // 4)
        ganache.send(to=other, value=ETH)  # pending too, but not to this address
        (seen,) = evm.pending_transfers_to(to, "ETH")
        assert seen.tx_hash == tx_hash and seen.amount == Decimal("0.25") and seen.asset == "ETH"
        assert seen.status == TransferStatus.PENDING and seen.block_number is None and seen.confirmations == 0
        assert evm.transfers_to(to, "ETH", from_block=0) == []  # not mined: the block scan does not see it
        assert evm.pending_transfers_to(to, "USDC") == []  # an ETH payment is not a token payment
    finally:
        ganache.rpc("miner_start")
    ganache.mine(1)
    assert evm.pending_transfers_to(to, "ETH") == []
    assert [t.tx_hash for t in evm.transfers_to(to, "ETH", from_block=0)] == [tx_hash]


def test_broadcast_erc20_transfer_seen_before_it_is_mined(evm, ganache, token, eth_xpub):
    """Issue 14 item 2: a `transfer(to, amount)` to the token contract waiting in the pool is
    decoded from its input (no logs yet) and reported pending with PENDING_LOG_INDEX; once mined,
    the pending view drops it and the log (with its real index) is what the block scan reports."""
    to, other = _fresh_address(eth_xpub), _fresh_address(eth_xpub)
    assert evm.pending_transfers_to(to, "USDC") == []
    ganache.rpc("miner_stop")
    try:
        tx_hash = ganache.send(to=token, data="0x" + TRANSFER_SELECTOR + _word(to) + _word(7_250_000))  # 7.25 USDC
        ganache.send(to=token, data="0x" + TRANSFER_SELECTOR + _word(other) + _word(1_000_000))  # pending, another address
        ganache.send(to=token, data="0x" + _selector("approve(address,uint256)") + _word(to) + _word(9_000_000))  # not a transfer
        ganache.send(to=to, value=ETH // 10)  # ETH to the address: not a USDC payment

        (seen,) = evm.pending_transfers_to(to, "USDC")
        assert (seen.tx_hash, seen.asset, seen.amount, seen.to_address) == (tx_hash, "USDC", Decimal("7.25"), to)
        assert seen.from_address.lower() == ganache.accounts[0]
        assert seen.status == TransferStatus.PENDING and seen.block_number is None and seen.confirmations == 0
        assert seen.log_index == PENDING_LOG_INDEX and not seen.is_mined_log
        assert [t.amount for t in evm.pending_transfers_to(other, "USDC")] == [Decimal("1")]
        assert [t.asset for t in evm.pending_transfers_to(to, "ETH")] == ["ETH"]
        assert evm.transfers_to(to, "USDC", from_block=0) == []  # no log before it is mined
        (by_hash,) = evm.get_transaction(tx_hash)  # a submitted hash is seen pending too
        assert by_hash == seen
    finally:
        ganache.rpc("miner_start")
    ganache.mine(1)
    assert evm.pending_transfers_to(to, "USDC") == []
    (mined,) = evm.transfers_to(to, "USDC", from_block=0)
    assert mined.tx_hash == tx_hash and mined.is_mined_log and mined.amount == Decimal("7.25")
    (by_hash,) = evm.get_transaction(tx_hash)
    assert by_hash.log_index == mined.log_index and by_hash.status == TransferStatus.SUCCEEDED


def test_pending_token_call_that_is_not_a_plain_transfer_is_not_a_payment(evm, ganache, token, eth_xpub):
    """Only a well-formed `transfer` to a configured token counts: a short input, dirty address
    bits, a zero amount or another contract's identical call are not payments."""
    to = _fresh_address(eth_xpub)
    addr = _word(to)
    candidates = [
        {"to": token, "from": ganache.accounts[0], "hash": "0x" + "1" * 64, "input": "0x" + TRANSFER_SELECTOR + addr},  # truncated
        {"to": token, "from": ganache.accounts[0], "hash": "0x" + "2" * 64, "input": "0x" + TRANSFER_SELECTOR + "ff" + addr[2:] + _word(5)},
        {"to": token, "from": ganache.accounts[0], "hash": "0x" + "3" * 64, "input": "0x" + TRANSFER_SELECTOR + addr + _word(0)},
        {"to": ganache.accounts[3], "from": ganache.accounts[0], "hash": "0x" + "4" * 64, "input": "0x" + TRANSFER_SELECTOR + addr + _word(5)},
    ]
    assert [evm._pending_token_transfer(tx) for tx in candidates] == [None] * 4
    ok = {**candidates[0], "input": "0x" + TRANSFER_SELECTOR + addr + _word(5)}
    assert evm._pending_token_transfer(ok).amount == Decimal("0.000005")


def test_erc20_transfer_log_decoded(evm, ganache, token, eth_xpub):
    to = _fresh_address(eth_xpub)
    start = evm.current_block()
    data = "0x" + TRANSFER_SELECTOR + _word(to) + _word(25_500_001)  # 25.500001 USDC
    tx_hash = ganache.send(to=token, data=data)

    (transfer,) = evm.get_transaction(tx_hash)
    assert transfer.asset == "USDC"
    assert transfer.amount == Decimal("25.500001")
    assert transfer.to_address == to
    assert transfer.from_address.lower() == ganache.accounts[0]
    assert transfer.status == TransferStatus.SUCCEEDED and transfer.log_index is not None
    assert evm.get_balance(to, "USDC") == Decimal("25.500001")
    assert evm.get_balance(to, "ETH") == 0

    found = evm.transfers_to(to, "USDC", from_block=start)
    assert [(t.tx_hash, t.amount, t.asset) for t in found] == [(tx_hash, Decimal("25.500001"), "USDC")]
    assert evm.transfers_to(to, "ETH", from_block=start) == []  # a token payment is not an ETH payment


def test_transaction_with_native_value_and_two_token_logs(evm, ganache, token, eth_xpub):
    a, b = _fresh_address(eth_xpub), _fresh_address(eth_xpub)
    data = "0x" + _selector("split(address,uint256,address,uint256)") + _word(a) + _word(1_000_000) + _word(b) + _word(2_500_000)
    tx_hash = ganache.send(to=token, data=data, value=ETH // 4)

    transfers = evm.get_transaction(tx_hash)
    assert [(t.asset, t.to_address.lower(), t.amount) for t in transfers] == [
        ("ETH", token.lower(), Decimal("0.25")),
        ("USDC", a.lower(), Decimal("1")),
        ("USDC", b.lower(), Decimal("2.5")),
    ]
    assert transfers[1].log_index < transfers[2].log_index


def test_reverted_transaction_is_failed_and_moves_no_tokens(evm, ganache, token, eth_xpub):
    to = _fresh_address(eth_xpub)
    poor = ganache.accounts[5]  # holds ETH but no tokens: transfer() reverts with "balance"
    data = "0x" + TRANSFER_SELECTOR + _word(to) + _word(1)
    tx_hash = ganache.send(to=token, data=data, **{"from": poor})
    assert ganache.receipt(tx_hash)["status"] == "0x0"
    assert evm.get_transaction(tx_hash) == []  # known, but nothing moved

    # ETH sent along with a reverting call: reported, but as FAILED.
    tx_hash = ganache.send(to=token, data=data, value=ETH, **{"from": poor})
    (transfer,) = evm.get_transaction(tx_hash)
    assert transfer.asset == "ETH" and transfer.status == TransferStatus.FAILED
    assert evm.transfers_to(token, "ETH", from_block=evm.current_block() - 1) == []


def test_transfers_to_several_addresses_in_a_block_range(settings, evm, ganache, token, eth_xpub):
    """The reconciliation's read: native ETH by a block scan, tokens by one eth_getLogs over all
    addresses, bounded by the range, reverted transfers and other recipients left out."""
    a, b, stranger = _fresh_address(eth_xpub), _fresh_address(eth_xpub), _fresh_address(eth_xpub)
    start = evm.current_block() + 1
    eth_a = ganache.send(to=a, value=ETH // 2)
    usdc_b = ganache.send(to=token, data="0x" + TRANSFER_SELECTOR + _word(b) + _word(7_000_000))  # 7 USDC
    ganache.send(to=stranger, value=ETH)
    ganache.send(to=token, data="0x" + TRANSFER_SELECTOR + _word(a) + _word(1), value=ETH, **{"from": ganache.accounts[5]})  # reverts
    middle = evm.current_block()
    eth_b = ganache.send(to=b, value=ETH // 4)
    end = evm.current_block()

    native = evm.transfers_to_addresses([a, b.lower()], "ETH", start, end)
    assert [(t.tx_hash, t.to_address, t.amount) for t in native] == [(eth_a, a, Decimal("0.5")), (eth_b, b, Decimal("0.25"))]
    assert [t.tx_hash for t in evm.transfers_to_addresses([a, b], "ETH", start, middle)] == [eth_a]
    tokens = evm.transfers_to_addresses([a, b], "USDC", start, end + 100)  # past the head: up to the head
    assert [(t.tx_hash, t.to_address, t.amount, t.log_index is not None) for t in tokens] == [(usdc_b, b, Decimal("7"), True)]
    assert evm.transfers_to_addresses([a, b], "USDC", end + 1, end + 5) == []
    settings.EVM_SCAN_MAX_BLOCKS = 1  # windows of one block: the same answer
    assert [t.tx_hash for t in get_chain_provider("ethereum").transfers_to_addresses([b], "USDC", start, end)] == [usdc_b]
    assert evm.reconcilable_assets() == ["ETH", "USDC"]


def test_unconfigured_token_is_ignored(settings, evm, ganache, token, eth_xpub):
    to = _fresh_address(eth_xpub)
    tx_hash = ganache.send(to=token, data="0x" + TRANSFER_SELECTOR + _word(to) + _word(5))
    settings.EVM_TOKENS = {"USDC": {"address": "0x" + "11" * 20, "decimals": 6}}  # a different contract
    other = get_chain_provider("ethereum")
    assert other.get_transaction(tx_hash) == []
    assert other.transfers_to(to, "USDC", from_block=0) == []


def test_unknown_and_malformed_hashes(evm):
    unknown = "0x" + "ab" * 32
    assert evm.get_transaction(unknown) is None
    with pytest.raises(TransactionNotFound) as exc:
        evm.get_confirmations(unknown)
    assert exc.value.status == 404
    for bad in ["", "0x123", "ab" * 32, "0x" + "zz" * 32, None, 12]:
        with pytest.raises(ValidationFailed):
            evm.get_transaction(bad)


def test_bad_addresses_and_assets_refused(evm):
    with pytest.raises(ValidationFailed):
        evm.get_balance("0x1234", "ETH")
    with pytest.raises(ValidationFailed):  # BTC is not on ethereum
        evm.get_balance("0x" + "11" * 20, "BTC")
    with pytest.raises(ValidationFailed):
        evm.transfers_to("0x" + "11" * 20, "DOGE", from_block=0)


def test_closed_port_is_chain_unavailable(settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = f"http://127.0.0.1:{port}"
    settings.EVM_RPC_RETRIES = 1
    provider = get_chain_provider("ethereum")
    with pytest.raises(ChainUnavailable) as exc:
        provider.current_block()
    assert exc.value.status == 503 and exc.value.code == "CHAIN_UNAVAILABLE"


class _FakeNode(BaseHTTPRequestHandler):
    """Answers the first `fail_first` requests with HTTP 503, then with `answer`."""

    fail_first = 0
    answer: dict | bytes = {}
    seen: list

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(request["method"])
        if len(self.seen) <= self.fail_first:
            self.send_response(503)
            self.end_headers()
            return
        body = self.answer if isinstance(self.answer, bytes) else json.dumps({"jsonrpc": "2.0", "id": request["id"], **self.answer}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_node(settings):
    servers = []

    def start(*, answer, fail_first=0, retries=2):
        handler = type("Handler", (_FakeNode,), {"answer": answer, "fail_first": fail_first, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        settings.CHAIN_PROVIDER = "evm"
        settings.EVM_RPC_URL = f"http://127.0.0.1:{server.server_address[1]}"
        settings.EVM_RPC_RETRIES = retries
        return get_chain_provider("ethereum"), handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_transient_http_errors_are_retried(fake_node):
    provider, handler = fake_node(answer={"result": "0x2a"}, fail_first=2, retries=2)
    assert provider.current_block() == 42
    assert handler.seen == ["eth_blockNumber"] * 3


def test_retries_exhausted_is_unavailable(fake_node):
    provider, handler = fake_node(answer={"result": "0x2a"}, fail_first=5, retries=1)
    with pytest.raises(ChainUnavailable) as exc:
        provider.current_block()
    assert exc.value.details["reason"] == "HTTP 503"
    assert len(handler.seen) == 2


def test_json_rpc_error_is_unavailable_without_retry(fake_node):
    provider, handler = fake_node(answer={"error": {"code": -32000, "message": "header not found"}})
    with pytest.raises(ChainUnavailable) as exc:
        provider.get_balance("0x" + "11" * 20, "ETH")
    assert exc.value.details["rpc_code"] == -32000
    assert handler.seen == ["eth_getBalance"]


@pytest.mark.parametrize("answer", [b"<html>502</html>", b"[1, 2]", {"result": "42"}, {"result": None, "unexpected": 1}])
def test_garbage_answers_are_unavailable(fake_node, answer):
    provider, _ = fake_node(answer=answer)
    with pytest.raises(ChainUnavailable):
        provider.current_block()


def test_evm_provider_refuses_bitcoin(settings):
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    with pytest.raises(ChainUnavailable):
        get_chain_provider("bitcoin")


@pytest.mark.parametrize(
    "tokens",
    [
        {"USDC": {"address": "0x9858EfFD232B4033E47d90003D41EC34EcaEda95", "decimals": 6}},  # bad checksum
        {"USDC": {"address": "0x" + "11" * 20}},
        {"USDC": {"address": "0x" + "11" * 20, "decimals": "six"}},
    ],
)
def test_misconfigured_tokens_fail_loudly(settings, tokens):
    from django.core.exceptions import ImproperlyConfigured

    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    settings.EVM_TOKENS = tokens
    with pytest.raises(ImproperlyConfigured):
        get_chain_provider("ethereum")
