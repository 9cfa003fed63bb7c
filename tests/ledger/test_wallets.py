"""Wallet lifecycle services, assets and the hot-account (sharded platform wallet) helpers."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings

from compliance.models import AuditEvent
from core.errors import InvalidState, ValidationFailed
from ledger.checks import ledger_check
from ledger.errors import WalletAlreadyExists, WalletNotEmpty
from ledger.models import Asset, Wallet
from ledger.selectors import asset_get, assets_visible, platform_account_balance, wallet_entries, wallet_list
from ledger.posting import (
    Issue,
    PlatformAccount,
    Redeem,
    Transfer,
    ledger_fail_pending,
    ledger_post,
    platform_wallet_covering,
)
from ledger.services import asset_create, wallet_activate, wallet_close, wallet_open, wallet_suspend
from tests.factories.accounts import CustomerFactory, OrganizationFactory, StaffUserFactory
from tests.factories.ledger import balance, hold_pending

pytestmark = pytest.mark.django_db


def test_seeded_assets(db):
    assert {a.code: a.exponent for a in Asset.objects.filter(organization__isnull=True)} == {
        "USD": 2, "EUR": 2, "GBP": 2, "BTC": 8, "ETH": 18, "USDC": 6, "SOL": 9,
    }


def test_open_one_unlabelled_wallet_per_owner_and_asset(usd, eur):
    customer = CustomerFactory()
    first = wallet_open(asset=usd, customer=customer)
    assert (first.kind, first.status, first.balance, first.held) == ("customer", "active", 0, 0)
    with pytest.raises(WalletAlreadyExists) as info:
        wallet_open(asset=usd, customer=customer)
    assert info.value.status == 409 and info.value.details == {"wallet_id": first.pk}
    wallet_open(asset=usd, customer=customer, label="savings")
    wallet_open(asset=eur, customer=customer)
    wallet_close(wallet=first)
    again = wallet_open(asset=usd, customer=customer)  # the closed one no longer counts
    assert again.pk != first.pk


def test_system_wallets_of_an_organization(usd):
    org = OrganizationFactory()
    fees = wallet_open(asset=usd, organization=org, purpose="fee")
    settlement = wallet_open(asset=usd, organization=org, purpose="settlement")
    assert fees.kind == settlement.kind == "system"
    with pytest.raises(WalletAlreadyExists):
        wallet_open(asset=usd, organization=org, purpose="fee")
    customer = CustomerFactory(organization=org, user=None, external_id="c-1")
    mine = wallet_open(asset=usd, customer=customer)
    assert set(wallet_list(organization=org)) == {fees, settlement, mine}
    assert list(wallet_list(customer=customer)) == [mine]


def test_open_refuses_bad_owners(usd):
    with pytest.raises(ValueError):
        wallet_open(asset=usd)
    with pytest.raises(ValueError):
        wallet_open(asset=usd, customer=CustomerFactory(), organization=OrganizationFactory())
    with pytest.raises(ValueError):
        wallet_open(asset=usd, customer=CustomerFactory(), kind="system")


def test_custom_assets_are_private_to_their_organization():
    org, other = OrganizationFactory(), OrganizationFactory()
    points = asset_create(code="pts", name="Points", exponent=0, organization=org)
    assert points.code == "PTS" and points.kind == "custom"
    assert Wallet.objects.filter(asset=points, kind="issuance").count() == 16
    assert points in assets_visible(organization=org) and points not in assets_visible(organization=other)
    assert asset_get(code="pts", organization=org) == points
    with pytest.raises(Asset.DoesNotExist):
        asset_get(code="PTS", organization=other)
    with pytest.raises(ValidationFailed):
        wallet_open(asset=points, organization=other)
    with pytest.raises(ValidationFailed):
        asset_create(code="PTS", name="again", exponent=0, organization=org)
    with pytest.raises(ValidationFailed):
        asset_create(code="USD", name="shadowing a platform asset", exponent=2, organization=org)
    with pytest.raises(ValidationFailed) as info:
        asset_create(code="bad code!", name="x", exponent=19, kind="weird", organization=org)
    assert set(info.value.details["fields"]) == {"code", "exponent", "kind"}
    asset_create(code="PTS", name="Other points", exponent=0, organization=other)  # per organization
    wallet = wallet_open(asset=points, customer=CustomerFactory(organization=org, user=None, external_id="x"))
    ledger_post(type="ledger", operations=[Issue(wallet, 500)], organization=org).raise_for_error()
    assert balance(wallet) == 500


def test_suspend_activate_close_with_audit(usd, make_wallet):
    staff = StaffUserFactory()
    wallet = make_wallet(usd)
    suspended = wallet_suspend(wallet=wallet, actor=staff, reason="fraud check")
    assert suspended.status == "suspended"
    with pytest.raises(InvalidState) as info:
        wallet_suspend(wallet=wallet)
    assert info.value.status == 409 and info.value.code == "INVALID_STATE"
    assert wallet_activate(wallet=wallet.pk, actor=staff).status == "active"
    with pytest.raises(InvalidState):
        wallet_activate(wallet=wallet)
    wallet_suspend(wallet=wallet)
    assert wallet_close(wallet=wallet).status == "closed"  # suspended -> closed at zero
    for transition in (wallet_activate, wallet_suspend, wallet_close):
        with pytest.raises(InvalidState):
            transition(wallet=wallet)
    actions = list(AuditEvent.objects.filter(target_id=str(wallet.pk), action__startswith="wallet.").order_by("id").values_list("action", flat=True))
    assert actions == ["wallet.suspend", "wallet.activate", "wallet.suspend", "wallet.close"]


def test_close_refuses_a_wallet_with_funds_or_holds(usd, make_wallet):
    wallet = make_wallet(usd, "1")
    with pytest.raises(WalletNotEmpty) as info:
        wallet_close(wallet=wallet)
    assert info.value.status == 409 and info.value.details["balance"] == "1.00"
    ledger_post(type="withdrawal", operations=[Redeem(wallet, "1")]).raise_for_error()
    ledger_post(type="deposit", operations=[Issue(wallet, "1")]).raise_for_error()
    payout = hold_pending(wallet, "1")
    with pytest.raises(WalletNotEmpty):
        wallet_close(wallet=wallet)
    ledger_fail_pending(payout, code="PAYOUT_FAILED")
    ledger_post(type="withdrawal", operations=[Redeem(wallet, "1")]).raise_for_error()
    assert wallet_close(wallet=wallet).status == "closed"
    assert ledger_post(type="deposit", operations=[Issue(wallet, "1")]).error.code == "WALLET_INACTIVE"


def test_status_cannot_be_assigned_directly(usd, make_wallet):
    wallet = make_wallet(usd)
    with pytest.raises(AttributeError):
        wallet.status = "closed"


def test_the_database_refuses_a_second_open_wallet(usd):
    customer = CustomerFactory()
    wallet_open(asset=usd, customer=customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.create(asset=usd, customer=customer, kind="customer")


# --- hot accounts ---------------------------------------------------------------------------


def test_deposits_spread_over_issuance_shards(usd, make_wallet):
    wallets = [make_wallet(usd, "1") for _ in range(20)]
    shards = Wallet.objects.filter(asset=usd, kind="issuance")
    assert shards.count() == 16
    used = {w.shard: w.balance for w in shards if w.balance}
    assert set(used) == {w.pk % 16 for w in wallets}
    assert sum(used.values()) == Decimal("-20") == platform_account_balance(usd, "issuance")
    assert ledger_check() == []


@override_settings(LEDGER_HOT_ACCOUNT_SHARDS=4)
def test_a_posting_to_a_platform_account_uses_the_counterparty_shard(usd, make_wallet):
    payer = make_wallet(usd, "10")
    tx = ledger_post(type="fee", operations=[Transfer(payer, PlatformAccount("fee"), "2")]).raise_for_error()
    assert Wallet.objects.filter(asset=usd, purpose="fee").count() == 4  # the account's shards, made on first use
    [fee] = Wallet.objects.filter(pk__in=tx.entries.exclude(wallet=payer).values("wallet_id"))
    assert (fee.purpose, fee.kind, fee.shard, fee.customer_id, fee.organization_id) == ("fee", "system", payer.pk % 4, None, None)
    assert balance(fee) == Decimal("2") == platform_account_balance(usd, "fee")


@override_settings(LEDGER_HOT_ACCOUNT_SHARDS=4)
def test_paying_out_of_a_sharded_account_picks_a_covering_shard(usd, make_wallet):
    payers = [make_wallet(usd, "10") for _ in range(6)]
    for i, payer in enumerate(payers):
        ledger_post(type="fee", operations=[Transfer(payer, PlatformAccount("fee"), str(i + 1))]).raise_for_error()
    total = platform_account_balance(usd, "fee")
    assert total == Decimal("21")
    richest = max(Wallet.objects.filter(asset=usd, purpose="fee"), key=lambda w: w.balance)
    source = platform_wallet_covering(usd, "fee", richest.balance)
    assert source.pk == richest.pk
    treasury = make_wallet(usd)
    ledger_post(type="transfer", operations=[Transfer(source, treasury, richest.balance)]).raise_for_error()
    assert platform_account_balance(usd, "fee") == total - richest.balance
    # more than any one shard holds: refused under lock, nothing moves
    too_much = platform_wallet_covering(usd, "fee", Decimal("1000"))
    assert ledger_post(type="transfer", operations=[Transfer(too_much, treasury, "1000")]).error.code == "INSUFFICIENT_FUNDS"
    assert ledger_check() == []


def test_statement_selector_is_newest_first(usd, make_wallet):
    wallet = make_wallet(usd, "5")
    ledger_post(type="withdrawal", operations=[Redeem(wallet, "2")]).raise_for_error()
    assert [e.balance_after for e in wallet_entries(wallet=wallet)] == [Decimal("3"), Decimal("5")]
