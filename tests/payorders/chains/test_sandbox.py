"""The sandbox chain: services, provider and the developer endpoints."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from core.errors import NotFound, ValidationFailed
from payorders.addresses import derive_address
from payorders.chains import get_chain_provider
from payorders.chains.base import TransactionNotFound, TransferStatus, UnsupportedAsset
from payorders.chains.sandbox import FAUCET_ADDRESS, SandboxChainProvider, sandbox_mine, sandbox_send
from payorders.models import SandboxBlock, SandboxTransaction
from tests.concurrency import errors_of, run_in_threads
from tests.factories.accounts import UserFactory

ETH_ADDR = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
BTC_ADDR = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"

pytestmark = pytest.mark.django_db


@pytest.fixture
def eth():
    return get_chain_provider("ethereum")


def test_default_provider_is_the_sandbox(eth):
    assert isinstance(eth, SandboxChainProvider)
    assert eth.chain == "ethereum"
    assert eth.confirmations_required() == 3
    with pytest.raises(UnsupportedAsset):
        get_chain_provider("dogecoin")


def test_send_is_pending_until_mined_then_confirms(eth):
    assert eth.current_block() == 0
    tx_hash = sandbox_send(to_address=ETH_ADDR.lower(), amount="0.015", currency="eth")
    assert len(tx_hash) == 66 and tx_hash.startswith("0x") and int(tx_hash, 16) >= 0

    (pending,) = eth.get_transaction(tx_hash)
    assert pending.status == TransferStatus.PENDING
    assert (pending.block_number, pending.confirmations) == (None, 0)
    assert pending.to_address == ETH_ADDR  # stored in EIP-55 form
    assert pending.from_address == FAUCET_ADDRESS
    assert pending.amount == Decimal("0.015") and pending.asset == "ETH"
    assert eth.get_confirmations(tx_hash) == 0
    assert eth.transfers_to(ETH_ADDR, "ETH") == []  # not mined yet
    assert eth.get_balance(ETH_ADDR, "ETH") == 0

    assert sandbox_mine(blocks=1) == 1
    (mined,) = eth.get_transaction(tx_hash)
    assert (mined.status, mined.block_number, mined.confirmations) == (TransferStatus.SUCCEEDED, 1, 1)
    assert sandbox_mine(blocks=4) == 5
    assert eth.get_confirmations(tx_hash) == 5
    assert eth.current_block() == 5
    assert SandboxBlock.objects.count() == 5
    assert eth.get_balance(ETH_ADDR, "ETH") == Decimal("0.015")
    assert [t.tx_hash for t in eth.transfers_to(ETH_ADDR, "ETH", from_block=1)] == [tx_hash]
    assert eth.transfers_to(ETH_ADDR, "ETH", from_block=2) == []
    assert eth.transfers_to(ETH_ADDR, "USDC") == []


def test_only_pending_transactions_enter_the_next_block(eth):
    first = sandbox_send(to_address=ETH_ADDR, amount="1", currency="USDC")
    sandbox_mine(blocks=2)
    second = sandbox_send(to_address=ETH_ADDR, amount="2.5", currency="USDC")
    sandbox_mine(blocks=1)
    assert eth.get_transaction(first)[0].block_number == 1
    assert eth.get_transaction(second)[0].block_number == 3
    assert [t.amount for t in eth.transfers_to(ETH_ADDR, "USDC")] == [Decimal("1"), Decimal("2.5")]
    assert eth.get_balance(ETH_ADDR, "USDC") == Decimal("3.5")


def test_chains_are_separate(eth):
    btc = get_chain_provider("bitcoin")
    tx_hash = sandbox_send(to_address=BTC_ADDR, amount="0.00012345", currency="BTC")
    sandbox_mine(blocks=2)
    (transfer,) = btc.get_transaction(tx_hash)
    assert (transfer.chain, transfer.asset, transfer.amount, transfer.confirmations) == ("bitcoin", "BTC", Decimal("0.00012345"), 2)
    assert eth.get_transaction(tx_hash) is None  # not an Ethereum transaction
    assert btc.get_balance(BTC_ADDR, "BTC") == Decimal("0.00012345")
    with pytest.raises(UnsupportedAsset):
        btc.get_balance(BTC_ADDR, "ETH")


def test_unknown_transaction(eth):
    unknown = "0x" + "0" * 64
    assert eth.get_transaction(unknown) is None
    with pytest.raises(TransactionNotFound):
        eth.get_confirmations(unknown)
    with pytest.raises(ValidationFailed):
        eth.get_transaction("not-a-hash")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"to_address": ETH_ADDR, "amount": "0", "currency": "ETH"}, "amount"),
        ({"to_address": ETH_ADDR, "amount": "-1", "currency": "ETH"}, "amount"),
        ({"to_address": ETH_ADDR, "amount": "1.0000001", "currency": "USDC"}, "amount"),  # 7 decimals
        ({"to_address": ETH_ADDR, "amount": 0.1, "currency": "ETH"}, "amount"),  # float
        ({"to_address": ETH_ADDR, "amount": "1e3", "currency": "ETH"}, "amount"),
        ({"to_address": ETH_ADDR, "amount": "NaN", "currency": "ETH"}, "amount"),
        ({"to_address": BTC_ADDR, "amount": "1", "currency": "ETH"}, "to_address"),  # wrong chain
        ({"to_address": ETH_ADDR, "amount": "1", "currency": "BTC"}, "to_address"),
        ({"to_address": "0x9858EfFD232B4033E47d90003D41EC34EcaEda95", "amount": "1", "currency": "ETH"}, "to_address"),
        ({"to_address": ETH_ADDR, "amount": "1", "currency": "DOGE"}, "currency"),
    ],
)
def test_send_refuses_bad_input(kwargs, field):
    with pytest.raises(ValidationFailed) as exc:
        sandbox_send(**kwargs)
    assert field in str(exc.value.details)
    assert SandboxTransaction.objects.count() == 0


def test_sender_must_hold_the_amount(eth):
    payer = derive_address(chain="ethereum", xpub=_ETH_XPUB_OTHER(), index=0)
    with pytest.raises(ValidationFailed) as exc:
        sandbox_send(to_address=ETH_ADDR, amount="1", currency="ETH", from_address=payer)
    assert "from_address" in str(exc.value.details)
    sandbox_send(to_address=payer, amount="1", currency="ETH")
    with pytest.raises(ValidationFailed):  # received but not mined yet: not spendable
        sandbox_send(to_address=ETH_ADDR, amount="1", currency="ETH", from_address=payer)
    sandbox_mine(blocks=1)
    sandbox_send(to_address=ETH_ADDR, amount="0.6", currency="ETH", from_address=payer)
    with pytest.raises(ValidationFailed):  # 0.6 already pending out of 1
        sandbox_send(to_address=ETH_ADDR, amount="0.5", currency="ETH", from_address=payer)
    sandbox_mine(blocks=1)
    assert eth.get_balance(payer, "ETH") == Decimal("0.4")
    assert eth.get_balance(ETH_ADDR, "ETH") == Decimal("0.6")


def _ETH_XPUB_OTHER() -> str:
    from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

    seed = Bip39SeedGenerator("legal winner thank year wave sausage worth useful legal winner thank yellow").Generate()
    return Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0).PublicKey().ToExtended()


@pytest.mark.parametrize("blocks", [0, 1001, -1, True, "3"])
def test_mine_bounds(blocks):
    with pytest.raises(ValidationFailed):
        sandbox_mine(blocks=blocks)


def test_mine_1000_blocks_at_once(eth):
    tx_hash = sandbox_send(to_address=ETH_ADDR, amount="1", currency="ETH")
    assert sandbox_mine(blocks=1000) == 1000
    assert eth.get_confirmations(tx_hash) == 1000


# --- concurrency (PostgreSQL) -------------------------------------------------------------------


def _race(n, work):
    """(what the calls returned, what they raised)."""
    outcomes = run_in_threads(n, work, timeout=60)
    return [o for o in outcomes if not isinstance(o, BaseException)], errors_of(outcomes)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_mines_number_blocks_consecutively():
    sandbox_send(to_address=ETH_ADDR, amount="1", currency="ETH")
    results, errors = _race(8, lambda i: sandbox_mine(blocks=5))
    assert errors == []
    assert sorted(results) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert list(SandboxBlock.objects.values_list("number", flat=True)) == list(range(1, 41))
    assert SandboxTransaction.objects.get().block_id == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_cannot_overdraw_a_sandbox_address():
    payer = derive_address(chain="ethereum", xpub=_ETH_XPUB_OTHER(), index=1)
    sandbox_send(to_address=payer, amount="1", currency="ETH")
    sandbox_mine(blocks=1)
    results, errors = _race(6, lambda i: sandbox_send(to_address=ETH_ADDR, amount="0.4", currency="ETH", from_address=payer))
    assert len(results) == 2  # 2 x 0.4 fit in 1; the other four are refused
    assert len(errors) == 4 and all(isinstance(e, ValidationFailed) for e in errors)


# --- endpoints ------------------------------------------------------------------------------------


@pytest.fixture
def user_client(api_client):
    user = UserFactory()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return api_client


def test_api_send_and_mine(user_client):
    response = user_client.post(
        "/api/v1/sandbox/chain/transactions", {"to_address": ETH_ADDR, "amount": "0.015", "currency": "ETH"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tx_hash"].startswith("0x") and len(body["tx_hash"]) == 66
    assert body | {"tx_hash": None} == {
        "tx_hash": None,
        "chain": "ethereum",
        "currency": "ETH",
        "from_address": FAUCET_ADDRESS,
        "to_address": ETH_ADDR,
        "amount": "0.015000000000000000",
        "status": "pending",
        "block_number": None,
        "confirmations": 0,
    }
    response = user_client.post("/api/v1/sandbox/chain/mine", {"blocks": 3}, format="json")
    assert response.status_code == 200 and response.json() == {"block_number": 3}
    assert get_chain_provider("ethereum").get_confirmations(body["tx_hash"]) == 3
    assert user_client.post("/api/v1/sandbox/chain/mine", {}, format="json").json() == {"block_number": 4}


def test_api_accepts_an_organization_api_key(api_client):
    from accounts.orgs.services import api_key_create
    from tests.factories.accounts import OrganizationFactory

    _, secret = api_key_create(organization=OrganizationFactory(), name="sandbox", scopes=["read", "payorders:write"])
    api_client.credentials(HTTP_X_API_KEY=secret)
    response = api_client.post(
        "/api/v1/sandbox/chain/transactions", {"to_address": BTC_ADDR, "amount": "0.5", "currency": "BTC"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert api_client.post("/api/v1/sandbox/chain/mine", {"blocks": 2}, format="json").json() == {"block_number": 2}
    api_client.credentials(HTTP_X_API_KEY="sk_wrong")
    assert api_client.post("/api/v1/sandbox/chain/mine", {"blocks": 1}, format="json").status_code == 401


def test_api_accepts_json_numbers_exactly(user_client):
    response = user_client.post(
        "/api/v1/sandbox/chain/transactions",
        data='{"to_address": "%s", "amount": 0.00000001, "currency": "BTC"}' % BTC_ADDR,
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "0.00000001"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"to_address": ETH_ADDR, "amount": "0.1234567", "currency": "USDC"}, "amount"),
        ({"to_address": ETH_ADDR, "amount": True, "currency": "ETH"}, "amount"),
        ({"to_address": ETH_ADDR, "currency": "ETH"}, "amount"),
        ({"to_address": "nope", "amount": "1", "currency": "ETH"}, "to_address"),
        ({"to_address": ETH_ADDR, "amount": "1", "currency": "XRP"}, "currency"),
    ],
)
def test_api_validation_errors_use_the_envelope(user_client, payload, field):
    response = user_client.post("/api/v1/sandbox/chain/transactions", payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and field in str(error)
    assert SandboxTransaction.objects.count() == 0


@pytest.mark.parametrize("payload", [{"blocks": 0}, {"blocks": 1001}, {"blocks": "many"}])
def test_api_mine_bounds(user_client, payload):
    response = user_client.post("/api/v1/sandbox/chain/mine", payload, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert SandboxBlock.objects.count() == 0


def test_api_requires_authentication(api_client):
    for path, payload in [
        ("/api/v1/sandbox/chain/transactions", {"to_address": ETH_ADDR, "amount": "1", "currency": "ETH"}),
        ("/api/v1/sandbox/chain/mine", {"blocks": 1}),
    ]:
        response = api_client.post(path, payload, format="json")
        assert response.status_code == 401 and response.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert SandboxTransaction.objects.count() == 0 and SandboxBlock.objects.count() == 0


def test_api_is_404_when_sandbox_off(settings, user_client, api_client):
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    for client in (user_client, api_client):  # 404 before authentication: nothing to discover
        for path, payload in [
            ("/api/v1/sandbox/chain/transactions", {"to_address": ETH_ADDR, "amount": "1", "currency": "ETH"}),
            ("/api/v1/sandbox/chain/mine", {"blocks": 1}),
        ]:
            response = client.post(path, payload, format="json")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == NotFound.code
    assert SandboxTransaction.objects.count() == 0 and SandboxBlock.objects.count() == 0
    settings.CHAIN_PROVIDER = "sandbox"  # checked per request, not at import
    assert user_client.post("/api/v1/sandbox/chain/mine", {"blocks": 1}, format="json").status_code == 200


def test_api_in_openapi_schema(user_client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in ("/api/v1/sandbox/chain/transactions", "/api/v1/sandbox/chain/mine"):
        operation = schema["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["examples"]
