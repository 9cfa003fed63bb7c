"""Reconciling on-chain receipts to our deposit addresses against settled pay orders, on the
sandbox chain (its own stored chain state): the provider's transfers_to_addresses, the service
and the reconcile_chain command."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from payorders import tasks
from payorders.chains import get_chain_provider
from payorders.models import PayOrder, SandboxTransaction
from payorders.services.reconciliation import chain_reconcile
from payorders.services.settlement import payorder_settle
from tests.payorders.support import merchant, mine, new_merchant, order_row, sandbox_pay  # noqa: F401

pytestmark = pytest.mark.django_db
OTHER = "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe"


def _paid(merchant, *, process: bool = True):  # noqa: F811
    order = merchant.create()
    details = merchant.pay_details(order["id"], "ETH")
    tx = sandbox_pay(merchant.client, details["deposit_address"], details["amount"])
    if process:
        assert merchant.post(order["id"], "process", {"tx_hash": tx}).status_code == 200
    return order["id"], details["deposit_address"], tx


def _run(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("reconcile_chain", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_sandbox_lists_transfers_to_addresses_in_a_block_range(merchant):  # noqa: F811
    provider = get_chain_provider("ethereum")
    _, a, tx_a = _paid(merchant, process=False)
    first = mine(merchant.client)
    _, b, tx_b = _paid(merchant, process=False)
    sandbox_pay(merchant.client, OTHER, "1.0")  # not one of ours
    sandbox_pay(merchant.client, b, "5", currency="USDC")  # another asset
    second = mine(merchant.client)
    _paid(merchant, process=False)  # pending: in no block yet
    assert [t.tx_hash for t in provider.transfers_to_addresses([a, b], "ETH", 0, second)] == [tx_a, tx_b]
    assert [t.tx_hash for t in provider.transfers_to_addresses([a, b], "ETH", first + 1, second + 50)] == [tx_b]
    assert [t.amount for t in provider.transfers_to_addresses([b], "USDC", 0, second)] == [Decimal("5.000000")]
    assert provider.transfers_to_addresses([a.lower()], "ETH", 0, first)[0].tx_hash == tx_a  # addresses compare as the chain does
    assert provider.transfers_to_addresses([], "ETH", 0, second) == [] and provider.transfers_to_addresses([a], "ETH", 5, 1) == []


def test_receipts_without_a_settled_order_and_settled_orders_without_a_receipt(merchant, seed):  # noqa: F811
    settled_id, _, settled_tx = _paid(merchant)
    unsettled_id, _, unsettled_tx = _paid(merchant)
    _, unclaimed_address, unclaimed_tx = _paid(merchant, process=False)  # paid, never processed nor watched
    sandbox_pay(merchant.client, OTHER, "2.0")  # not our address: not a receipt
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    assert order_row(settled_id).status == order_row(unsettled_id).status == PayOrder.Status.COMPLETED
    payorder_settle(order_id=order_row(settled_id).pk)

    report = chain_reconcile(chain="ethereum")
    assert (report.addresses, report.receipts, report.explained) == (3, 3, 1)
    reasons = {r.tx_hash: r.reason for r in report.receipts_without_settled_order}
    assert reasons == {unsettled_tx: f"Order {unsettled_id} is COMPLETED and not settled.",
                       unclaimed_tx: "No pay-order payment records this transfer."}
    assert report.settled_orders_without_receipt == [] and not report.clean

    # settle the other; the chain "forgets" the first payment (a reorganisation): reported the other way round
    payorder_settle(order_id=order_row(unsettled_id).pk)
    SandboxTransaction.objects.filter(tx_hash=settled_tx).delete()
    report = chain_reconcile(chain="ethereum")
    assert [r.tx_hash for r in report.receipts_without_settled_order] == [unclaimed_tx]
    (missing,) = report.settled_orders_without_receipt
    assert (missing.pay_order, missing.tx_hash, missing.order_status) == (settled_id, settled_tx, "COMPLETED")
    assert missing.settlement_transaction_id == order_row(settled_id).settlement_transaction_id

    # a range after every payment: nothing to say; another organization: none of this is theirs
    head = get_chain_provider("ethereum").current_block()
    assert chain_reconcile(chain="ethereum", from_block=head + 1).clean
    other = new_merchant(seed)
    assert chain_reconcile(chain="ethereum", organization=other.organization).clean

    code, out = _run("--chain", "ethereum", "--json")
    body = json.loads(out)
    assert code == 1 and body["receipts"] == 2 and body["settled_orders_without_receipt"][0]["pay_order"] == settled_id
    assert body["receipts_without_settled_order"][0]["amount"] == str(SandboxTransaction.objects.get(tx_hash=unclaimed_tx).amount.normalize())
    code, out = _run("--chain", "ethereum", "--organization", other.organization.slug)
    assert code == 0 and "Clean." in out
    code, out = _run("--chain", "ethereum")
    assert code == 1 and f"SETTLED ORDER WITHOUT RECEIPT {settled_id}" in out and unclaimed_address in out


def test_admin_action_shows_the_report(merchant, admin_client):  # noqa: F811
    _, _, settled_tx = _paid(merchant)
    order_id, _, unclaimed_tx = _paid(merchant, process=False)
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    ids = list(PayOrder.objects.values_list("pk", flat=True))
    page = admin_client.post("/admin/payorders/payorder/", {"action": "reconcile_chain", "_selected_action": ids})
    assert page.status_code == 200
    text = page.content.decode()
    assert "Receipts without a settled order" in text and unclaimed_tx in text and "No pay-order payment records this transfer." in text
    assert "is COMPLETED and not settled" in text  # the processed order, confirmed but not settled yet
