"""The pay-order flow against a real EVM node (ganache, started by the session fixture): native
ETH and a deployed ERC-20 standing in for USDC, submitted hashes and the watcher, confirmations,
settlement, and a refund that waits for the merchant's own signed transaction."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.checks import ledger_check
from ledger.models import Wallet
from payorders import tasks
from payorders.models import PayOrder
from payorders.services.settlement import payorder_settle
from tests.factories.payorders import GANACHE_CHAIN_ID
from tests.payorders.support import merchant, order_row  # noqa: F401

pytestmark = pytest.mark.django_db
S = PayOrder.Status
PAYER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"


@pytest.fixture
def evm(settings, ganache, token):
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = ganache.url
    settings.EVM_RPC_RETRIES = 0
    settings.EVM_CHAIN_ID = GANACHE_CHAIN_ID
    settings.EVM_TOKENS = {"USDC": {"address": token, "decimals": 6}}
    settings.CHAIN_CONFIRMATIONS = {**settings.CHAIN_CONFIRMATIONS, "ethereum": 3}
    return ganache


def _pay_eth(ganache, address: str, amount: str) -> str:
    return ganache.send(to=address, value=int(Decimal(amount).scaleb(18)))


def _pay_token(ganache, token: str, address: str, amount: str) -> str:
    units = int(Decimal(amount).scaleb(6))
    data = "0xa9059cbb" + "0" * 24 + address[2:].lower() + units.to_bytes(32, "big").hex()
    return ganache.send(to=token, data=data)


def _complete(ganache, order_id: str) -> None:
    tasks.poll_confirmations()
    assert order_row(order_id).status == S.AWAITING_CONFIRMATION  # ganache mined it: 1 of 3
    ganache.mine(2)
    tasks.poll_confirmations()
    assert order_row(order_id).status == S.COMPLETED
    payorder_settle(order_id=order_row(order_id).pk)


def test_eth_order_paid_on_ganache(evm, merchant):  # noqa: F811
    order = merchant.create()
    quotes = merchant.post(order["id"], "quote", {"wallet_address": evm.accounts[0]}).json()["quotes"]
    assert {q["source_currency"] for q in quotes} == {"ETH", "USDC"}  # the payer holds both; BTC is not for this address
    details = merchant.pay_details(order["id"], "ETH")
    assert details["payment_uri"].startswith(f"ethereum:{details['deposit_address']}@{GANACHE_CHAIN_ID}?value=")
    short = _pay_eth(evm, details["deposit_address"], "0.001")
    r = merchant.post(order["id"], "process", {"tx_hash": short})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH")
    elsewhere = _pay_eth(evm, PAYER, details["amount"])
    r = merchant.post(order["id"], "process", {"tx_hash": elsewhere})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH")
    assert order_row(order["id"]).status == S.AWAITING_PAYMENT

    due = Decimal(details["amount"]) - Decimal("0.001")
    tasks.watch_addresses()  # finds the short payment: underpaid
    row = order_row(order["id"])
    assert row.underpaid and row.amount_received == Decimal("0.001")
    rest = _pay_eth(evm, details["deposit_address"], str(due))
    assert merchant.post(order["id"], "process", {"tx_hash": rest}).json()["status"] == "AWAITING_CONFIRMATION"
    _complete(evm, order["id"])
    wallet = Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD")
    assert wallet.balance == Decimal("99.00")

    # an EVM refund waits for the merchant's own transaction, then checks it on chain
    r = merchant.post(order["id"], "refund", {"destination_address": PAYER}, HTTP_IDEMPOTENCY_KEY="evm-refund")
    assert r.status_code == 201 and r.json()["status"] == "awaiting_transaction" and r.json()["tx_hash"] is None
    refund_id = r.json()["id"]
    assert order_row(order["id"]).status == S.REFUNDED and Wallet.objects.get(pk=wallet.pk).balance == 0
    r = merchant.post(order["id"], f"refunds/{refund_id}/transaction", {"tx_hash": rest})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "TRANSACTION_ALREADY_USED")
    too_little = _pay_eth(evm, PAYER, "0.0001")
    r = merchant.post(order["id"], f"refunds/{refund_id}/transaction", {"tx_hash": too_little})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH")
    sent = _pay_eth(evm, PAYER, details["amount"])
    r = merchant.post(order["id"], f"refunds/{refund_id}/transaction", {"tx_hash": sent})
    assert r.status_code == 200 and r.json()["status"] == "sent" and r.json()["tx_hash"] == sent
    r = merchant.post(order["id"], f"refunds/{refund_id}/transaction", {"tx_hash": sent})
    assert r.status_code == 409
    assert ledger_check() == []


def test_erc20_order_found_by_the_watcher_on_ganache(evm, merchant, token):  # noqa: F811
    order = merchant.create(amount="25.00")
    details = merchant.pay_details(order["id"], "USDC")
    assert details["amount"] == "25.062657"
    expected_uri = f"ethereum:{token}@{GANACHE_CHAIN_ID}/transfer?address={details['deposit_address']}&uint256=25062657"
    assert details["payment_uri"].lower() == expected_uri.lower()  # the contract in EIP-55 case
    tx = _pay_token(evm, token, details["deposit_address"], details["amount"])
    assert evm.receipt(tx)["status"] == "0x1"
    tasks.watch_addresses()
    row = order_row(order["id"])
    assert row.status == S.AWAITING_CONFIRMATION
    payment = row.payments.get()
    assert (payment.source, payment.asset, payment.tx_hash, payment.log_index >= 0) == ("watcher", "USDC", tx.lower(), True)
    r = merchant.post(order["id"], "process", {"tx_hash": tx})
    assert r.status_code == 200  # the same transfer again: taken already, nothing new
    assert order_row(order["id"]).payments.count() == 1
    _complete(evm, order["id"])
    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD").balance == Decimal("24.75")
    assert ledger_check() == []


def test_unreachable_node_is_503_and_changes_nothing(settings, merchant):  # noqa: F811
    settings.CHAIN_PROVIDER = "evm"
    settings.EVM_RPC_URL = "http://127.0.0.1:9"
    settings.EVM_RPC_RETRIES = 0
    order = merchant.create()
    details = merchant.pay_details(order["id"], "ETH")  # the address is derived without the node
    r = merchant.post(order["id"], "process", {"tx_hash": "0x" + "ab" * 32})
    assert (r.status_code, r.json()["error"]["code"]) == (503, "CHAIN_UNAVAILABLE")
    from payorders.chains.base import ChainUnavailable

    with pytest.raises(ChainUnavailable):
        tasks.watch_addresses()
    from datetime import timedelta

    from django.utils import timezone

    PayOrder.objects.filter(public_id=order["id"]).update(expires_at=timezone.now() - timedelta(hours=1))
    assert tasks.expire_orders() == 0  # never concluded that nothing was paid
    assert order_row(order["id"]).status == S.AWAITING_PAYMENT and details["chain"] == "ethereum"


def test_chain_reconciliation_on_ganache(evm, merchant):  # noqa: F811
    """Receipts on a real node against settled orders: a settled ETH order is explained; a
    payment to another order's address that nobody processed is reported."""
    from payorders.chains import get_chain_provider
    from payorders.services.reconciliation import chain_reconcile

    start = get_chain_provider("ethereum").current_block() + 1
    order = merchant.create()
    details = merchant.pay_details(order["id"], "ETH")
    paid = _pay_eth(evm, details["deposit_address"], details["amount"])
    assert merchant.post(order["id"], "process", {"tx_hash": paid}).json()["status"] == "AWAITING_CONFIRMATION"
    _complete(evm, order["id"])
    stray_order = merchant.create()
    stray = _pay_eth(evm, merchant.pay_details(stray_order["id"], "ETH")["deposit_address"], "0.002")

    report = chain_reconcile(chain="ethereum", from_block=start, organization=merchant.organization)
    assert report.explained == 1 and report.settled_orders_without_receipt == []
    (unexplained,) = report.receipts_without_settled_order
    assert (unexplained.tx_hash, unexplained.amount, unexplained.reason) == (stray, Decimal("0.002"), "No pay-order payment records this transfer.")
    assert ledger_check() == []


def test_broadcast_eth_payment_is_seen_before_it_is_mined(evm, merchant):  # noqa: F811
    """Issue 14 item 2: with ganache's miner stopped the payment sits in its pool; the checkout's
    quick look (pending only) records it with 0 confirmations and the payer's page says so."""
    from django.core.cache import cache

    from payorders.checkout.services import checkout_look_for_payment, checkout_state

    order = merchant.create()
    details = merchant.pay_details(order["id"], "ETH")
    assert "@1337?" in details["payment_uri"] and details["livemode"] is True
    cache.delete(f"checkout-pending-scan:{order['id']}")
    evm.rpc("miner_stop")
    try:
        tx_hash = _pay_eth(evm, details["deposit_address"], details["amount"])
        row = checkout_look_for_payment(order_row(order["id"]))
        assert row.status == S.AWAITING_CONFIRMATION
        (payment,) = row.payments.all()
        assert payment.tx_hash == tx_hash and payment.block_number is None and payment.confirmations == 0
        state = checkout_state(row)
        assert state["phase"] == "confirming" and state["headline"] == "Payment detected, waiting for confirmations"
        assert state["receipt"][0]["tx_hash"] == tx_hash
    finally:
        evm.rpc("miner_start")
    evm.mine(1)
    tasks.watch_addresses()  # the mined block: the same transfer, not a second payment
    assert order_row(order["id"]).payments.count() == 1
    _complete(evm, order["id"])
    (payment,) = order_row(order["id"]).payments.all()
    assert payment.block_number is not None and payment.confirmations >= 3


def test_broadcast_erc20_payment_is_seen_before_it_is_mined_and_credited_once_confirmed(evm, merchant, token):  # noqa: F811
    """Issue 14 item 2 for tokens: a USDC `transfer` waiting in ganache's pool (miner stopped) is
    decoded from its input; the checkout's quick look records it (0 confirmations, log position
    unknown) and says "Payment detected"; the watcher and the confirmation poll neither count it
    twice nor credit anything before the block and its confirmations; once mined the payment
    takes the log's index and, at 3 confirmations, the order completes and settles once."""
    from django.core.cache import cache

    from ledger.models import Transaction
    from payorders.chains.base import PENDING_LOG_INDEX
    from payorders.checkout.services import checkout_look_for_payment, checkout_state

    order = merchant.create(amount="25.00")
    details = merchant.pay_details(order["id"], "USDC")
    cache.delete(f"checkout-pending-scan:{order['id']}")
    evm.rpc("miner_stop")
    try:
        tx_hash = _pay_token(evm, token, details["deposit_address"], details["amount"])
        assert evm.receipt(tx_hash) is None  # in the pool, not in a block
        row = checkout_look_for_payment(order_row(order["id"]))
        assert row.status == S.AWAITING_CONFIRMATION
        (payment,) = row.payments.all()
        assert (payment.tx_hash, payment.asset, payment.amount) == (tx_hash, "USDC", Decimal(details["amount"]))
        assert payment.log_index == PENDING_LOG_INDEX and payment.block_number is None and payment.confirmations == 0
        state = checkout_state(row)
        assert state["phase"] == "confirming" and state["headline"] == "Payment detected, waiting for confirmations"
        tasks.watch_addresses()  # the pending transfer again: the same payment
        tasks.poll_confirmations()  # not mined: no confirmation, nothing credited
        row = order_row(order["id"])
        assert row.status == S.AWAITING_CONFIRMATION and row.payments.count() == 1
        assert row.payments.get().status == "pending" and row.amount_received == Decimal(details["amount"])
        assert not Transaction.objects.filter(organization=merchant.organization).exists()
    finally:
        evm.rpc("miner_start")
    evm.mine(1)
    tasks.poll_confirmations()  # mined (ganache may mine the pool as its miner restarts: 1 or 2 of 3): the payment takes the mined log's index
    (payment,) = order_row(order["id"]).payments.all()
    assert payment.log_index >= 0 and payment.block_number is not None and 1 <= payment.confirmations < 3
    assert payment.status == "pending" and order_row(order["id"]).status == S.AWAITING_CONFIRMATION
    tasks.watch_addresses()  # the block scan's log is that payment, not a second one
    assert order_row(order["id"]).payments.count() == 1
    assert not Wallet.objects.filter(organization=merchant.organization, purpose="settlement", balance__gt=0).exists()
    evm.mine(2)
    tasks.poll_confirmations()
    assert order_row(order["id"]).status == S.COMPLETED
    payorder_settle(order_id=order_row(order["id"]).pk)
    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD").balance == Decimal("24.75")
    assert order_row(order["id"]).amount_received == Decimal(details["amount"])
    assert ledger_check() == []


def test_pending_erc20_payment_the_watcher_meets_after_it_is_mined_is_not_counted_twice(evm, merchant, token):  # noqa: F811
    """The other order of events: seen pending, then the watcher's block scan meets the mined log
    before any confirmation poll: it takes the log's index on the recorded payment."""
    from django.core.cache import cache

    from payorders.chains.base import PENDING_LOG_INDEX
    from payorders.checkout.services import checkout_look_for_payment

    order = merchant.create(amount="25.00")
    details = merchant.pay_details(order["id"], "USDC")
    cache.delete(f"checkout-pending-scan:{order['id']}")
    evm.rpc("miner_stop")
    try:
        tx_hash = _pay_token(evm, token, details["deposit_address"], details["amount"])
        assert checkout_look_for_payment(order_row(order["id"])).payments.get().log_index == PENDING_LOG_INDEX
    finally:
        evm.rpc("miner_start")
    evm.mine(1)
    tasks.watch_addresses()
    (payment,) = order_row(order["id"]).payments.all()
    assert payment.tx_hash == tx_hash and payment.log_index == int(evm.receipt(tx_hash)["logs"][0]["logIndex"], 16) >= 0
    _complete(evm, order["id"])
    assert order_row(order["id"]).payments.count() == 1
    assert Wallet.objects.get(organization=merchant.organization, purpose="settlement", asset__code="USD").balance == Decimal("24.75")


def test_test_key_orders_are_paid_on_the_configured_test_network(evm, merchant, settings, token):  # noqa: F811
    """TEST_CHAIN_PROVIDER=evm: on a live deployment (its mainnet node down here), a test key's
    order is quoted, addressed, watched and confirmed on the TEST network's node (ganache, with
    its chain id in the URI), never the main network's; it completes without reaching the ledger,
    and the sandbox chain is not offered to the test key."""
    import copy
    import socket

    from accounts.orgs.services import api_key_create
    from ledger.models import Transaction
    from tests.factories.orgs import OrgKey, key_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    settings.EVM_RPC_URL, settings.EVM_RPC_RETRIES, settings.EVM_CHAIN_ID = dead, 0, 1  # the "mainnet" node: unreachable
    settings.TEST_CHAIN_PROVIDER = "evm"
    settings.EVM_TEST_RPC_URL = evm.url
    settings.EVM_TEST_CHAIN_ID = GANACHE_CHAIN_ID
    settings.EVM_TEST_TOKENS = {"USDC": {"address": token, "decimals": 6}}
    api_key, secret = api_key_create(organization=merchant.organization, name="test", actor=merchant.key.owner,
                                     scopes=merchant.key.api_key.scopes, livemode=False)
    tester = copy.copy(merchant)
    tester.client = key_client(OrgKey(merchant.organization, api_key, secret, merchant.key.owner))

    order = tester.create()
    details = tester.pay_details(order["id"], "ETH")
    assert details["livemode"] is False
    assert details["payment_uri"].startswith(f"ethereum:{details['deposit_address']}@{GANACHE_CHAIN_ID}?value=")
    assert tester.client.post("/api/v1/sandbox/chain/mine", {"blocks": 1}, format="json").status_code == 404
    _pay_eth(evm, details["deposit_address"], details["amount"])
    tasks.watch_addresses()
    assert order_row(order["id"]).status == S.AWAITING_CONFIRMATION
    evm.mine(2)
    tasks.poll_confirmations()
    row = order_row(order["id"])
    assert row.status == S.COMPLETED and row.settlement_transaction_id is None
    assert "test mode: not settled" in row.status_changes.order_by("-id").first().cause
    assert not Transaction.objects.filter(organization=merchant.organization).exists()
    assert not Wallet.objects.filter(organization=merchant.organization).exists()

    settings.EVM_TEST_RPC_URL = ""  # misconfigured: refused loudly, never the main network's node instead
    from django.core.exceptions import ImproperlyConfigured

    from payorders.chains import get_chain_provider

    with pytest.raises(ImproperlyConfigured, match="EVM_TEST_RPC_URL"):
        get_chain_provider("ethereum", livemode=False)
