"""ledger.demo.seed_ledger_demo (called by `seed_demo`) and the check_ledger command."""

import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from ledger.demo import BOB_EMAIL, DEMO_EMAIL, seed_ledger_demo
from ledger.models import Transaction, Wallet
from tests.factories.accounts import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_demo_seed_is_idempotent(usd, eur):
    for email in (DEMO_EMAIL, BOB_EMAIL):
        CustomerFactory(user=UserFactory(email=email))
    out = io.StringIO()
    seed_ledger_demo(out)
    assert "deposited 1000.00 USD" in out.getvalue()
    demo_wallets = {w.asset.code: w.balance for w in Wallet.objects.filter(customer__user__email=DEMO_EMAIL)}
    assert demo_wallets == {"USD": Decimal("1000.00"), "EUR": Decimal("0")}
    assert [w.asset.code for w in Wallet.objects.filter(customer__user__email=BOB_EMAIL)] == ["USD"]
    count = Transaction.objects.count()

    again = io.StringIO()
    seed_ledger_demo(again)
    assert "deposited" not in again.getvalue()
    assert Transaction.objects.count() == count
    assert Wallet.objects.get(customer__user__email=DEMO_EMAIL, asset=usd).balance == Decimal("1000.00")

    out = io.StringIO()
    call_command("check_ledger", stdout=out)
    assert "Ledger OK" in out.getvalue()


def test_demo_seed_skips_missing_users(usd, eur):
    out = io.StringIO()
    seed_ledger_demo(out)
    assert "no user demo@coffer.local" in out.getvalue()
    assert not Transaction.objects.exists()


def test_seed_demo_command_funds_the_demo_user(usd, eur):
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    assert Wallet.objects.get(customer__user__email=DEMO_EMAIL, asset=usd).balance == Decimal("1000.00")


def test_check_ledger_command_fails_on_a_breach(usd, make_wallet):
    wallet = make_wallet(usd, "3")
    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("4"))
    err = io.StringIO()
    with pytest.raises(SystemExit) as info:
        call_command("check_ledger", stderr=err)
    assert info.value.code == 1 and f"wallet {wallet.pk}: balance 4" in err.getvalue()
