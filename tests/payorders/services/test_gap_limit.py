"""Deposit addresses within the key's gap limit (issue 13 item 10): fresh indexes only while the
never-funded run after the last funded address is below `gap_limit`; past it, addresses of orders
that closed unpaid are reused after the quiet period (never a funded one), else 409
GAP_LIMIT_REACHED; the merchant is warned once per episode (webhook, dashboard, key flag); late
payments to the old order stay the old order's; racing allocators never share a live address."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from accounts.models import WebhookDelivery
from ledger.checks import ledger_check
from payorders import tasks
from payorders.chains import get_chain_provider
from payorders.errors import GapLimitReached
from payorders.models import DepositAddress, PayOrder, XpubKey
from payorders.selectors import xpub_key_unused_run
from payorders.services.quotes import payorder_select_quote
from tests.concurrency import run_in_threads
from tests.factories.accounts import MembershipFactory
from tests.payorders.support import API, merchant, mine, new_merchant, order_row, reseed, sandbox_pay  # noqa: F401

S = PayOrder.Status
EVENT = "payorder.deposit_addresses_constrained"


def _key(m, chain: str = "ethereum") -> XpubKey:
    return XpubKey.objects.get(organization=m.organization, chain=chain, is_active=True)


def _set_gap(m, gap: int, chain: str = "ethereum") -> None:
    XpubKey.objects.filter(organization=m.organization, chain=chain, is_active=True).update(gap_limit=gap)


def _details(m, order_id: str, currency: str = "ETH"):
    quote = m.quote(order_id, currency)
    return m.post(order_id, "payment-details", {"quote_id": quote["quote_id"]})


def _issued(m) -> str:
    """A new order with payment details; returns its id."""
    order = m.create()
    m.pay_details(order["id"])
    return order["id"]


def _expire(*order_ids: str) -> None:
    PayOrder.objects.filter(public_id__in=order_ids).update(expires_at=timezone.now() - timedelta(hours=2))
    tasks.expire_orders()
    assert {order_row(o).status for o in order_ids} == {S.EXPIRED}


def _quiet(*order_ids: str, hours: float = 2) -> None:
    """Their addresses were released `hours` ago (past the one-hour quiet period)."""
    for n, order_id in enumerate(order_ids):
        DepositAddress.objects.filter(pk=order_row(order_id).deposit_address_id).update(
            released_at=timezone.now() - timedelta(hours=hours, seconds=n)
        )


def _address(order_id: str) -> str:
    return order_row(order_id).deposit_address.address


def _head() -> int:
    return get_chain_provider("ethereum").current_block()


def _events(m) -> list[dict]:
    return [d.payload["data"] for d in WebhookDelivery.objects.filter(organization=m.organization, event_type=EVENT).order_by("id")]


@pytest.mark.django_db
def test_allocation_stops_at_the_gap_then_reuses_after_the_quiet_period(merchant):  # noqa: F811
    merchant.subscribe("http://127.0.0.1:9/hooks")
    _set_gap(merchant, 3)
    first = [_issued(merchant) for _ in range(3)]
    assert [order_row(o).deposit_address.index for o in first] == [0, 1, 2]

    waiting = merchant.create()
    r = _details(merchant, waiting["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "GAP_LIMIT_REACHED")
    assert r.json()["error"]["details"]["unused_addresses"] == 3 and "Retry-After" not in r  # nothing will free up by itself
    assert order_row(waiting["id"]).status == S.PENDING and DepositAddress.objects.count() == 3
    key = _key(merchant)
    assert key.next_index == 3 and key.constrained_since is not None  # the warning outlives the refused request
    assert [e["action"] for e in _events(merchant)] == ["refused"]

    _expire(first[1])  # closed unpaid: its address is released, but not reusable within the quiet period
    assert DepositAddress.objects.get(address=_address(first[1])).released_at is not None
    r = _details(merchant, waiting["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "GAP_LIMIT_REACHED")
    assert 3000 < int(r["Retry-After"]) <= 3601

    _quiet(first[1])
    head = _head()
    r = _details(merchant, waiting["id"])
    assert r.status_code == 200, r.json()
    assert r.json()["deposit_address"] == _address(first[1])
    reused, old = order_row(waiting["id"]), order_row(first[1])
    assert reused.scan_from_block == head + 1 and old.scan_until_block == head + 1
    assert DepositAddress.objects.get(address=_address(first[1])).released_at is None
    assert _key(merchant).next_index == 3 and len(_events(merchant)) == 1  # one warning per episode
    assert reused.status_changes.last().data["address_reused"] is True
    listed = merchant.client.get("/api/v1/xpub-keys").json()["results"]
    eth = next(k for k in listed if k["chain"] == "ethereum" and k["is_active"])
    assert (eth["gap_limit"], eth["unused_addresses"]) == (3, 3) and eth["constrained_since"] is not None

    # money reaches the newest address: the run restarts after it, fresh indexes again, flag cleared
    details = order_row(first[2])
    sandbox_pay(merchant.client, details.deposit_address.address, details.source_amount)
    mine(merchant.client, 1)
    tasks.watch_addresses()
    assert xpub_key_unused_run(_key(merchant)) == 0
    fresh = _issued(merchant)
    assert order_row(fresh).deposit_address.index == 3 and _key(merchant).constrained_since is None
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_address_that_ever_received_money_is_never_reused(merchant):  # noqa: F811
    _set_gap(merchant, 2)
    c, d = _issued(merchant), _issued(merchant)  # indexes 0 and 1
    _expire(c)
    sandbox_pay(merchant.client, _address(c), "0.01")  # a late payment to the closed order
    mine(merchant.client, 1)
    tasks.watch_addresses()
    assert order_row(c).late_payment and order_row(c).status == S.EXPIRED
    e = _issued(merchant)  # index 0 is funded now: the run is 1, so a fresh index is allowed
    assert order_row(e).deposit_address.index == 2
    _expire(d)
    _quiet(d, hours=5)
    _quiet(c, hours=2)  # c's address was released most recently: it would be the first pick if it were unfunded
    f = _issued(merchant)
    assert _address(f) == _address(d) != _address(c)
    g = merchant.create()
    r = _details(merchant, g["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "GAP_LIMIT_REACHED")

    # an underpaid order that expires keeps its address out of reuse too
    h_key = _key(merchant)
    h_key.gap_limit = 10
    h_key.save(update_fields=["gap_limit"])
    h = merchant.create()
    pay = merchant.pay_details(h["id"])
    sandbox_pay(merchant.client, pay["deposit_address"], Decimal(pay["amount"]) / 2)
    mine(merchant.client, 1)
    tasks.watch_addresses()
    _expire(h["id"])
    assert order_row(h["id"]).underpaid and DepositAddress.objects.get(address=pay["deposit_address"]).released_at is None


@pytest.mark.django_db
def test_a_late_payment_to_the_old_order_stays_its_own(merchant):  # noqa: F811
    _set_gap(merchant, 1)
    a = _issued(merchant)
    address = _address(a)
    _expire(a)
    _quiet(a)
    late_tx = sandbox_pay(merchant.client, address, "0.5")  # A's payer, late; mined before B takes the address
    mine(merchant.client, 1)
    b = merchant.create()
    pay = merchant.pay_details(b["id"])  # the watcher has not seen the late payment yet: the address is reused
    assert pay["deposit_address"] == address
    r = merchant.post(b["id"], "process", {"tx_hash": late_tx})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "PAYMENT_MISMATCH")  # it paid A, not B
    b_tx = sandbox_pay(merchant.client, address, pay["amount"])
    mine(merchant.client, 1)
    tasks.watch_addresses()
    tasks.watch_addresses()
    old, new = order_row(a), order_row(b["id"])
    assert [p.tx_hash for p in old.payments.all()] == [late_tx.lower()]
    assert old.late_payment and old.refund_due == Decimal("0.5") and old.status == S.EXPIRED
    assert [p.tx_hash for p in new.payments.all()] == [b_tx.lower()]
    assert new.status == S.AWAITING_CONFIRMATION and new.amount_received == Decimal(pay["amount"]) and not new.overpaid
    mine(merchant.client, 3)
    tasks.poll_confirmations()
    assert order_row(b["id"]).status == S.COMPLETED
    assert ledger_check() == []


@pytest.mark.django_db
def test_database_refuses_two_orders_awaiting_payment_on_one_address(merchant):  # noqa: F811
    a = _issued(merchant)
    other = merchant.create()
    row = order_row(other["id"])
    with pytest.raises(IntegrityError), transaction.atomic():
        PayOrder.objects.filter(pk=row.pk).update(deposit_address=order_row(a).deposit_address, status=S.AWAITING_PAYMENT)


@pytest.mark.django_db
def test_gap_limit_is_set_per_key_when_registering(merchant, seed):  # noqa: F811
    from tests.payorders.support import account_keys

    eth, _ = account_keys(seed, 91)
    for bad in (0, 1001, "x", True):
        r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth, "gap_limit": bad}, format="json")
        assert r.status_code == 400 and "gap_limit" in r.json()["error"]["details"]["fields"], bad
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth, "gap_limit": 5}, format="json")
    assert r.status_code == 201 and r.json()["gap_limit"] == 5 and r.json()["unused_addresses"] == 0
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth}, format="json")
    assert r.json()["gap_limit"] == 5  # kept when re-registered without one
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth, "gap_limit": 40}, format="json")
    assert r.json()["gap_limit"] == 40 and _key(merchant).gap_limit == 40


@pytest.mark.django_db
def test_dashboard_shows_the_constrained_key(merchant):  # noqa: F811
    owner = MembershipFactory(organization=merchant.organization).user
    client = Client()
    client.force_login(owner)
    assert b"gap-limit-warning" not in client.get("/dashboard/pay-orders/").content
    _set_gap(merchant, 1)
    _issued(merchant)
    r = _details(merchant, merchant.create()["id"])
    assert r.status_code == 409
    page = client.get("/dashboard/pay-orders/").content.decode()
    assert 'data-testid="gap-limit-warning"' in page and "gap limit of 1" in page and "ethereum" in page


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_payment_details_never_share_a_live_address(seed):
    reseed()
    m = new_merchant(seed)
    m.subscribe("http://127.0.0.1:9/hooks")
    _set_gap(m, 4)
    abandoned = [_issued(m) for _ in range(2)]  # indexes 0, 1
    _expire(*abandoned)
    _quiet(*abandoned)
    orders = [m.create()["id"] for _ in range(8)]
    quotes = {o: m.quote(o, "ETH")["quote_id"] for o in orders}
    results = run_in_threads(
        len(orders), lambda i: payorder_select_quote(organization=m.organization, public_id=orders[i], quote_id=quotes[orders[i]]), timeout=120
    )
    won = [r for r in results if isinstance(r, PayOrder)]
    refused = [r for r in results if isinstance(r, GapLimitReached)]
    assert len(won) == 4 and len(refused) == 4, results  # two fresh (indexes 2, 3) and the two released ones
    assert len({o.deposit_address_id for o in won}) == 4
    assert {order_row(o).deposit_address.index for o in [str(w.public_id) for w in won]} == {0, 1, 2, 3}
    live = PayOrder.objects.filter(status=S.AWAITING_PAYMENT)
    assert live.count() == 4 and live.values("deposit_address").distinct().count() == 4
    assert _key(m).next_index == 4 and DepositAddress.objects.count() == 4
    assert all(order_row(o).scan_until_block is not None for o in abandoned)
    assert len(_events(m)) == 1  # one warning, however many requests met the limit
    assert PayOrder.objects.filter(status=S.PENDING).count() == 4
