"""Limits: seeded levels (single / daily / monthly, enhanced unlimited), usage derived from real
ledger postings, racing requests under `customer_lock`, and the /limits endpoints."""

import datetime as dt
import importlib
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import transaction
from rest_framework.test import APIClient

from accounts.models import Customer
from compliance.limits import LimitExceeded, customer_lock, customer_movements, limits_enforce, limits_status
from compliance.models import LimitRule
from ledger.models import Asset, Transaction, Wallet
from ledger.posting import (
    Issue,
    PlatformAccount,
    Redeem,
    Transfer,
    ledger_complete_reviewed,
    ledger_post,
    ledger_reject_reviewed,
    ledger_reverse,
)
from tests.concurrency import run_in_threads
from wallets.pipeline import LimitScope, MoneyMovement, money_path
from tests.usage import backdate_transaction
from tests.factories.accounts import CustomerFactory, OrgCustomerFactory
from tests.factories.ledger import WalletFactory, platform_asset
from tests.factories.ledger import deposit as ledger_deposit
from tests.factories.orgs import key_client, make_org_key
from tests.factories.wallets import client_for

SEED = importlib.import_module("compliance.migrations.0005_seed_defaults")
NOW = dt.datetime(2030, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
LEVELS = {
    "none": (Decimal(1000), Decimal(2000), Decimal(5000)),
    "basic": (Decimal(10000), Decimal(20000), Decimal(50000)),
    "verified": (Decimal(100000), Decimal(200000), Decimal(1000000)),
}


def asset(code: str = "USD") -> Asset:
    return platform_asset(code)


def wallet_for(customer, code: str = "USD", label: str = "") -> Wallet:
    return WalletFactory(asset=asset(code), customer=customer, label=label)


def deposit(wallet: Wallet, amount, **kwargs) -> Transaction:
    return ledger_deposit(wallet, amount, customer=wallet.customer, **kwargs)


def backdate(tx: Transaction, when: dt.datetime) -> None:
    backdate_transaction(tx, when)


def status(customer, movement_type, direction=None, amount=None, code="USD", now=NOW):
    return limits_status(
        customer=Customer.objects.get(pk=customer.pk), asset=asset(code), movement_type=movement_type,
        direction=direction, amount=None if amount is None else Decimal(amount), now=now, always_usage=True,
    )


def enforce(customer, movement_type, amount, direction=None, code="USD", now=NOW):
    with transaction.atomic():
        locked = customer_lock(customer)
        return limits_enforce(customer=locked, asset=asset(code), movement_type=movement_type, direction=direction, amount=Decimal(amount), now=now)


# --- seeded levels -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize(("movement_type", "direction"), [("deposit", "incoming"), ("withdrawal", "outgoing"), ("transfer", "outgoing"), ("transfer", "incoming"), ("exchange", "outgoing"), ("exchange", "incoming")])
def test_single_limit_per_level(level, movement_type, direction):
    single, daily, monthly = LEVELS[level]
    customer = CustomerFactory(kyc_level=level)
    wallet_for(customer)
    enforce(customer, movement_type, single, direction)  # exactly the limit passes
    with pytest.raises(LimitExceeded) as exc:
        enforce(customer, movement_type, single + Decimal("0.01"), direction)
    assert exc.value.status == 422 and exc.value.code == "LIMIT_EXCEEDED"
    assert exc.value.details == {
        "limit_type": "single", "limit": f"{single}.00", "used": "0.00", "remaining": f"{single}.00",
        "requested": f"{single + Decimal('0.01')}", "currency": "USD", "type": movement_type, "direction": direction, "kyc_level": level,
        # the default rules are USD reference amounts; USD is the reference currency, at rate 1
        "limit_currency": "USD", "reference_currency": "USD", "rate": "1",
        "reference": {"limit": f"{single}.00", "used": "0.00", "remaining": f"{single}.00", "requested": f"{single + Decimal('0.01')}"},
    }
    shown = status(customer, movement_type, direction).as_dict()
    assert (shown["single_transaction_limit"], shown["daily_limit"], shown["monthly_limit"]) == (f"{single}.00", f"{daily}.00", f"{monthly}.00")


@pytest.mark.django_db
@pytest.mark.parametrize("level", list(LEVELS))
def test_daily_limit_per_level_counts_todays_deposits(level):
    single, daily, _ = LEVELS[level]
    customer = CustomerFactory(kyc_level=level)
    wallet = wallet_for(customer)
    for _ in range(int(daily / single)):
        backdate(deposit(wallet, single), NOW - dt.timedelta(hours=1))
    backdate(deposit(wallet, single), NOW - dt.timedelta(days=1))  # yesterday: not today's usage
    with pytest.raises(LimitExceeded) as exc:
        enforce(customer, "deposit", "0.01")
    assert exc.value.details["limit_type"] == "daily"
    assert exc.value.details["used"] == f"{daily}.00" and exc.value.details["remaining"] == "0.00"
    shown = status(customer, "deposit").as_dict()
    assert shown["limit_check"] == "FAILED" and shown["failed_limit"] == "daily"
    assert shown["daily_used"] == f"{daily}.00" and shown["daily_remaining"] == "0.00"
    assert shown["monthly_used"] == f"{daily + single}.00"
    enforce(customer, "deposit", "0.01", now=NOW + dt.timedelta(days=1))  # a new UTC day


@pytest.mark.django_db
@pytest.mark.parametrize("level", list(LEVELS))
def test_monthly_limit_per_level(level):
    single, _, monthly = LEVELS[level]
    customer = CustomerFactory(kyc_level=level)
    wallet = wallet_for(customer)
    for i in range(int((monthly - single) / single)):
        backdate(deposit(wallet, single), dt.datetime(2030, 6, 1 + i % 10, 9, tzinfo=dt.timezone.utc))
    backdate(deposit(wallet, single), dt.datetime(2030, 5, 31, 23, 59, tzinfo=dt.timezone.utc))  # last month
    enforce(customer, "deposit", single)  # reaches the monthly limit exactly
    backdate(deposit(wallet, single), NOW - dt.timedelta(minutes=5))
    with pytest.raises(LimitExceeded) as exc:
        enforce(customer, "deposit", "0.01")
    assert exc.value.details["limit_type"] == "monthly"
    assert exc.value.details["used"] == f"{monthly}.00"
    enforce(customer, "deposit", single, now=dt.datetime(2030, 7, 1, 0, 0, tzinfo=dt.timezone.utc))  # a new month


@pytest.mark.django_db
def test_enhanced_has_no_limits_but_shows_usage():
    customer = CustomerFactory(kyc_level="enhanced")
    wallet = wallet_for(customer)
    backdate(deposit(wallet, "5000000.00"), NOW - dt.timedelta(hours=1))
    enforce(customer, "deposit", "99999999999999.99")
    enforce(customer, "withdrawal", "99999999999999.99")
    shown = status(customer, "deposit").as_dict()
    assert shown == {
        "limit_check": "PASSED", "single_transaction_limit": None, "daily_limit": None, "daily_used": "5000000.00",
        "daily_remaining": None, "monthly_limit": None, "monthly_used": "5000000.00", "monthly_remaining": None,
        "failed_limit": None, "type": "deposit", "direction": "incoming", "currency": "USD", "kyc_level": "enhanced",
        "limit_currency": "USD", "reference_currency": "USD", "rate": "1",
        "reference": {
            "single_transaction_limit": None, "daily_limit": None, "daily_used": "5000000.00", "daily_remaining": None,
            "monthly_limit": None, "monthly_used": "5000000.00", "monthly_remaining": None, "amount": None,
        },
    }


@pytest.mark.django_db
def test_a_currency_rule_beats_the_generic_rule_and_limits_are_per_asset():
    customer = CustomerFactory(kyc_level="none")
    LimitRule.objects.create(kyc_level="none", movement_type="deposit", direction="incoming", currency="BTC",
                             single_limit=Decimal("0.5"), daily_limit=Decimal("1"), monthly_limit=None)
    usd_wallet, btc_wallet = wallet_for(customer), wallet_for(customer, "BTC")
    backdate(deposit(usd_wallet, "1500"), NOW - dt.timedelta(hours=1))
    with pytest.raises(LimitExceeded) as exc:
        enforce(customer, "deposit", "0.50000001", code="BTC")
    assert exc.value.details["limit"] == "0.50000000"
    backdate(deposit(btc_wallet, "0.6"), NOW - dt.timedelta(hours=1))
    assert status(customer, "deposit", code="BTC").daily_used == Decimal("0.6")  # USD does not count for BTC
    assert status(customer, "deposit", code="BTC").monthly_limit is None
    enforce(customer, "deposit", "0.4", code="BTC")
    with pytest.raises(LimitExceeded):
        enforce(customer, "deposit", "0.40000001", code="BTC")


@pytest.mark.django_db
def test_no_rule_means_no_limit():
    customer = CustomerFactory(kyc_level="none")
    wallet_for(customer)
    LimitRule.objects.filter(movement_type="deposit").delete()
    enforce(customer, "deposit", "1000000")
    assert status(customer, "deposit").single_limit is None


# --- what counts as usage ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_usage_comes_from_the_ledger():
    alice, bob = CustomerFactory(kyc_level="basic"), CustomerFactory(kyc_level="basic")
    a1, a2, b1 = wallet_for(alice), wallet_for(alice, label="savings"), wallet_for(bob)
    a_eur = wallet_for(alice, "EUR")
    recent = NOW - dt.timedelta(hours=2)
    posted = []

    posted.append(deposit(a1, "5000"))  # incoming deposit 5000
    posted.append(deposit(a_eur, "700"))  # other asset
    posted.append(deposit(b1, "300"))  # other customer
    # own wallets: neither outgoing nor incoming
    posted.append(ledger_post(type="transfer", operations=[Transfer(source=a1, destination=a2, amount=Decimal("1000"))], customer=alice).raise_for_error())
    # to bob: alice outgoing 200, bob incoming 200
    posted.append(ledger_post(type="transfer", operations=[Transfer(source=a1, destination=b1, amount=Decimal("200"))], customer=alice).raise_for_error())
    # withdrawal 100 with a 1.00 fee leg: counts 100
    posted.append(ledger_post(type="withdrawal", operations=[Redeem(wallet=a1, amount=Decimal("100")), Transfer(source=a1, destination=PlatformAccount("fee"), amount=Decimal("1.00"))], customer=alice).raise_for_error())
    # refused for insufficient funds: recorded as failed, not counted
    failed = ledger_post(type="transfer", operations=[Transfer(source=a1, destination=b1, amount=Decimal("999999"))], customer=alice)
    assert not failed.ok and failed.transaction.status == "failed"
    posted.append(failed.transaction)
    # pending (payout in flight): counted
    posted.append(ledger_post(type="withdrawal", operations=[Redeem(wallet=a1, amount=Decimal("50"))], customer=alice, status_on_success="pending").raise_for_error())
    # in review: counted; rejected in review: not; approved: counted once
    in_review = ledger_post(type="transfer", operations=[Transfer(source=a1, destination=b1, amount=Decimal("30"))], customer=alice, hold_for_review=True).raise_for_error()
    rejected = ledger_post(type="transfer", operations=[Transfer(source=a1, destination=b1, amount=Decimal("7"))], customer=alice, hold_for_review=True).raise_for_error()
    approved = ledger_post(type="transfer", operations=[Transfer(source=a1, destination=b1, amount=Decimal("11"))], customer=alice, hold_for_review=True).raise_for_error()
    deposit_in_review = ledger_post(type="deposit", operations=[Issue(wallet=a1, amount=Decimal("40"))], customer=alice, hold_for_review=True).raise_for_error()
    posted += [in_review, rejected, approved, deposit_in_review]
    ledger_reject_reviewed(rejected, reason="no")
    assert ledger_complete_reviewed(approved).ok
    # reversed: not counted
    reversed_tx = deposit(a1, "13")
    assert ledger_reverse(reversed_tx).ok
    posted.append(reversed_tx)
    for tx in posted:
        backdate(tx, recent)

    def used(customer, movement_type, direction=None, code="USD"):
        return status(customer, movement_type, direction, code=code).daily_used

    assert used(alice, "deposit") == Decimal("5040")
    assert used(alice, "transfer") == Decimal("241")  # 200 + 30 (in review) + 11 (approved)
    assert used(alice, "transfer", "incoming") == Decimal("0")
    assert used(alice, "withdrawal") == Decimal("150")  # 100 (fee excluded) + 50 pending
    assert used(alice, "deposit", code="EUR") == Decimal("700")
    assert used(bob, "deposit") == Decimal("300")
    # 200 + 11 + the 30 still in review: it was checked against bob's incoming limit when requested
    # and posts without another check when approved, so it uses his allowance already
    assert used(bob, "transfer", "incoming") == Decimal("241")
    assert used(bob, "transfer") == Decimal("0")
    movements = customer_movements(customer=alice, asset=asset(), movement_type="transfer", direction="outgoing", since=recent)
    assert sorted(m.amount for m in movements) == [Decimal("11"), Decimal("30"), Decimal("200")]
    assert {m.status for m in movements} == {"completed", "in_review"}


@pytest.mark.django_db
def test_usage_of_a_customer_without_wallets_is_zero():
    customer = CustomerFactory(kyc_level="none")
    assert status(customer, "withdrawal").daily_used == 0
    enforce(customer, "withdrawal", "1000")


@pytest.mark.django_db(transaction=True)
def test_lock_and_enforce_refuse_to_run_outside_a_transaction():
    customer = CustomerFactory()  # (a plain django_db test runs inside an atomic block already)
    with pytest.raises(RuntimeError):
        customer_lock(customer)
    with pytest.raises(RuntimeError):
        limits_enforce(customer=customer, asset=asset(), movement_type="deposit", amount=Decimal(1))


def _through_the_money_path(*, wallet, movement_type, direction, amount, operations, others=()):
    """One movement through the money path, limited for the wallet's customer (and `others`:
    (customer, direction) scopes, as an organization transaction limits both its customers)."""
    scopes = [LimitScope(wallet.asset, movement_type, direction, Decimal(amount))]
    scopes += [LimitScope(wallet.asset, movement_type, d, Decimal(amount), customer_id=c.pk) for c, d in others]
    with transaction.atomic():
        result = money_path(MoneyMovement(
            actor=None, movement_type=movement_type, ledger_type=movement_type, wallet=wallet, amount=Decimal(amount),
            operations=operations, direction=direction, limits=scopes, customers=[c.pk for c, _ in others],
            step_up=False, risk=False,
        ))
    return result.raise_for_error()


@pytest.mark.django_db
def test_the_money_path_enforces_a_recipients_incoming_limit_when_asked():
    sender, recipient = CustomerFactory(kyc_level="verified"), CustomerFactory(kyc_level="none")
    source, destination = wallet_for(sender), wallet_for(recipient)
    deposit(source, "50000")
    ledger_post(type="transfer", operations=[Transfer(source=source, destination=destination, amount=Decimal("1500"))], customer=sender).raise_for_error()

    def send(amount):
        return _through_the_money_path(
            wallet=source, movement_type="transfer", direction="outgoing", amount=amount,
            operations=[Transfer(source=source, destination=destination, amount=Decimal(amount))], others=[(recipient, "incoming")],
        )

    with pytest.raises(LimitExceeded) as exc:
        send("500.01")
    assert exc.value.details["direction"] == "incoming" and exc.value.details["kyc_level"] == "none"
    assert exc.value.details["limit_type"] == "daily" and exc.value.details["remaining"] == "500.00"
    assert send("500").status == "completed"


@pytest.mark.django_db
def test_the_money_path_reads_the_kyc_level_under_the_lock():
    customer = CustomerFactory(kyc_level="none")
    wallet = wallet_for(customer)
    Customer.objects.filter(pk=customer.pk).update(kyc_level="basic")  # upgraded after we loaded it
    tx = _through_the_money_path(
        wallet=wallet, movement_type="deposit", direction="incoming", amount="5000", operations=[Issue(wallet=wallet, amount=Decimal("5000"))]
    )
    assert tx.status == "completed"


# --- racing requests ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_deposits_cannot_pass_the_daily_limit_together():
    SEED.seed(django_apps)
    customer = CustomerFactory(kyc_level="none")  # daily incoming deposit limit 2,000
    wallet = wallet_for(customer)
    threads_n, amount = 10, Decimal("300")

    def attempt(i: int) -> str:
        try:
            _through_the_money_path(
                wallet=wallet, movement_type="deposit", direction="incoming", amount=amount, operations=[Issue(wallet=wallet.pk, amount=amount)]
            )
            return "ok"
        except LimitExceeded:
            return "limit"
        except Exception as exc:  # noqa: BLE001 - reported below
            return f"error: {exc!r}"

    outcomes = run_in_threads(threads_n, attempt)

    assert sorted(outcomes) == ["limit"] * 4 + ["ok"] * 6, outcomes
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("1800")
    assert status(customer, "deposit", now=dt.datetime.now(dt.timezone.utc)).daily_used == Decimal("1800")


# --- API ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_limits_check_api():
    customer = CustomerFactory(kyc_level="none")
    deposit(wallet_for(customer), "1500")
    client = client_for(customer.user)

    ok = client.post("/api/v1/limits/check", {"type": "deposit", "amount": "500", "currency": "USD"}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json() == {
        "limit_check": "PASSED", "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "1500.00",
        "daily_remaining": "500.00", "monthly_limit": "5000.00", "monthly_used": "1500.00", "monthly_remaining": "3500.00",
        "failed_limit": None, "type": "deposit", "direction": "incoming", "currency": "USD", "kyc_level": "none",
        "limit_currency": "USD", "reference_currency": "USD", "rate": "1",
        "reference": {
            "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "1500.00", "daily_remaining": "500.00",
            "monthly_limit": "5000.00", "monthly_used": "1500.00", "monthly_remaining": "3500.00", "amount": "500.00",
        },
    }
    failed = client.post("/api/v1/limits/check", {"type": "deposit", "amount": "500.01", "currency": "USD"}, format="json")
    assert failed.status_code == 200
    assert (failed.json()["limit_check"], failed.json()["failed_limit"]) == ("FAILED", "daily")
    single = client.post("/api/v1/limits/check", {"type": "withdrawal", "amount": 1000.01, "currency": "USD"}, format="json")
    assert (single.json()["limit_check"], single.json()["failed_limit"], single.json()["direction"]) == ("FAILED", "single", "outgoing")


@pytest.mark.django_db
def test_limits_get_api():
    customer = CustomerFactory(kyc_level="basic")
    deposit(wallet_for(customer), "20000")
    client = client_for(customer.user)
    response = client.get("/api/v1/limits", {"type": "deposit", "currency": "usd"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["limit_check"] == "FAILED" and body["failed_limit"] == "daily"  # the day's allowance is used up
    assert (body["daily_used"], body["daily_remaining"], body["monthly_remaining"]) == ("20000.00", "0.00", "30000.00")
    transfer_in = client.get("/api/v1/limits", {"type": "transfer", "currency": "USD", "direction": "incoming"}).json()
    assert transfer_in["limit_check"] == "PASSED" and transfer_in["daily_used"] == "0.00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "data", "field"),
    [
        ("get", "/api/v1/limits", {"currency": "USD"}, "type"),
        ("get", "/api/v1/limits", {"type": "deposit"}, "currency"),
        ("get", "/api/v1/limits", {"type": "deposit", "currency": "ZZZ"}, "currency"),
        ("get", "/api/v1/limits", {"type": "deposit", "currency": "USD", "direction": "sideways"}, "direction"),
        ("post", "/api/v1/limits/check", {"type": "deposit", "currency": "USD"}, "amount"),
        ("post", "/api/v1/limits/check", {"type": "deposit", "currency": "USD", "amount": "1.001"}, "amount"),
        ("post", "/api/v1/limits/check", {"type": "deposit", "currency": "USD", "amount": "-1"}, "amount"),
        ("post", "/api/v1/limits/check", {"type": "nope", "currency": "USD", "amount": "1"}, "type"),
    ],
)
def test_limits_api_refuses_bad_input(method, url, data, field):
    client = client_for(CustomerFactory().user)
    response = client.get(url, data) if method == "get" else client.post(url, data, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]


@pytest.mark.django_db
def test_limits_api_needs_authentication():
    assert APIClient().get("/api/v1/limits", {"type": "deposit", "currency": "USD"}).status_code == 401
    assert APIClient().post("/api/v1/limits/check", {}, format="json").status_code == 401


@pytest.mark.django_db
def test_organizations_ask_about_their_own_customers():
    alpha, beta = make_org_key("Alpha"), make_org_key("Beta")
    customer = OrgCustomerFactory(organization=alpha.organization, external_id="c-1", kyc_level="verified")
    deposit(wallet_for(customer), "1234.50")
    query = {"type": "deposit", "currency": "USD", "customer_external_id": "c-1"}

    mine = key_client(alpha).get("/api/v1/limits", query)
    assert mine.status_code == 200, mine.content
    assert mine.json()["daily_used"] == "1234.50" and mine.json()["kyc_level"] == "verified"
    assert key_client(beta).get("/api/v1/limits", query).status_code == 404  # someone else's customer
    missing = key_client(alpha).get("/api/v1/limits", {"type": "deposit", "currency": "USD"})
    assert missing.status_code == 400 and "customer_external_id" in missing.json()["error"]["details"]["fields"]
