"""Pay-order factories, and fixtures for the chain, address and URI tests.

`PayOrderFactory`: a pay order created by `payorder_create` (the API's service), a SALE of
25.00 USD by default, for a new organization unless given one.

Keys: the BIP39 test mnemonic "abandon ×11 about" gives well-known account keys; the tests derive
the *public* account keys from it here (tests may hold private keys; the server never does).

`ganache`: a real local Ethereum node (npm `ganache`, pinned in package-lock.json and installed by
scripts/test-deps.sh), started once per session on a free port and killed afterwards.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import factory
import httpx
import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins, Bip84, Bip84Coins

from payorders.models import PayOrder
from tests.factories.accounts import OrganizationFactory

REPO = Path(__file__).resolve().parents[2]
GANACHE = REPO / "node_modules" / ".bin" / "ganache"
SOLC_SCRIPT = REPO / "tests" / "payorders" / "contracts" / "compile.js"
TEST_MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
GANACHE_CHAIN_ID = 1337


class PayOrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PayOrder

    organization = factory.SubFactory(OrganizationFactory)
    actor = None
    type = "SALE"
    amount = "25.00"
    currency = "USD"
    description = "order"

    @classmethod
    def _create(cls, model_class, **kwargs):
        from payorders.services.lifecycle import payorder_create

        return payorder_create(**kwargs)


@pytest.fixture(scope="session")
def seed() -> bytes:
    return Bip39SeedGenerator(TEST_MNEMONIC).Generate()


@pytest.fixture(scope="session")
def btc_account(seed):
    return Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(0)


@pytest.fixture(scope="session")
def zpub(btc_account) -> str:
    return btc_account.PublicKey().ToExtended()


@pytest.fixture(scope="session")
def vpub(seed) -> str:
    return Bip84.FromSeed(seed, Bip84Coins.BITCOIN_TESTNET).Purpose().Coin().Account(0).PublicKey().ToExtended()


@pytest.fixture(scope="session")
def eth_account(seed):
    return Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0)


@pytest.fixture(scope="session")
def eth_xpub(eth_account) -> str:
    return eth_account.PublicKey().ToExtended()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ganache:
    def __init__(self, url: str):
        self.url = url
        self.accounts: list[str] = self.rpc("eth_accounts")

    def rpc(self, method: str, params: list | None = None):
        body = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=10).json()
        if "error" in body:
            raise AssertionError(f"{method}: {body['error']}")
        return body["result"]

    def send(self, **tx) -> str:
        tx.setdefault("from", self.accounts[0])
        tx.setdefault("gas", hex(500_000))
        return self.rpc("eth_sendTransaction", [{k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()}])

    def mine(self, blocks: int = 1) -> int:
        for _ in range(blocks):
            self.rpc("evm_mine")
        return int(self.rpc("eth_blockNumber"), 16)

    def receipt(self, tx_hash: str) -> dict:
        return self.rpc("eth_getTransactionReceipt", [tx_hash])


@pytest.fixture(scope="session")
def ganache():
    if not GANACHE.exists():
        pytest.skip("needs node_modules/.bin/ganache: run `bash scripts/test-deps.sh` (npm ci)")
    if shutil.which("node") is None:
        pytest.skip("needs Node.js for ganache")
    port = _free_port()
    log = tempfile.TemporaryFile()  # not a pipe: a chatty node must never block on a full pipe
    proc = subprocess.Popen(
        [str(GANACHE), "--port", str(port), "--host", "127.0.0.1", "--wallet.deterministic",
         "--chain.chainId", str(GANACHE_CHAIN_ID), "--logging.quiet"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                node = Ganache(url)
                break
            except (httpx.HTTPError, ValueError):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("ganache exited: " + log.read().decode(errors="replace")[-2000:]) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("ganache did not answer within 60 s") from None
                time.sleep(0.2)
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def token_artifact() -> dict:
    if shutil.which("node") is None or not (REPO / "node_modules" / "solc").exists():
        pytest.skip("needs node_modules/solc: run `bash scripts/test-deps.sh` (npm ci)")
    out = subprocess.run(["node", str(SOLC_SCRIPT)], capture_output=True, check=True, cwd=REPO, timeout=120)
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def token(ganache, token_artifact) -> str:
    """A TestToken with 6 decimals and 1,000,000.000000 supply owned by ganache account 0."""
    args = (6).to_bytes(32, "big").hex() + (1_000_000 * 10**6).to_bytes(32, "big").hex()
    tx_hash = ganache.send(data=token_artifact["bytecode"] + args, gas=3_000_000)
    receipt = ganache.receipt(tx_hash)
    assert receipt["status"] == "0x1"
    return receipt["contractAddress"]
