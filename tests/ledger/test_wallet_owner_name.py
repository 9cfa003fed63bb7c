"""`ledger.selectors.wallet_owner_name`: the one name a wallet's owner goes by in wallet and
transaction representations (the customer wallets API, the organization API, /transactions)."""

import pytest

from ledger.models import Wallet
from ledger.selectors import wallet_owner_name
from ledger.posting import platform_wallets_ensure
from ledger.services import wallet_open
from tests.factories.accounts import CustomerFactory, OrganizationFactory, OrgCustomerFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_no_wallet_has_no_name():
    assert wallet_owner_name(None) is None


def test_a_users_wallet_goes_by_the_users_full_name_not_the_customer_record(usd):
    user = UserFactory(first_name="Jane", last_name="Doe")
    wallet = wallet_open(asset=usd, customer=CustomerFactory(user=user, name="J. D. (stale copy)"))
    assert wallet_owner_name(wallet) == "Jane Doe"


def test_a_user_without_a_name_goes_by_their_email(usd):
    user = UserFactory(first_name="", last_name="", email="nameless@example.com")
    assert wallet_owner_name(wallet_open(asset=usd, customer=CustomerFactory(user=user))) == "nameless@example.com"


def test_an_organizations_customer_goes_by_name_then_external_id_then_id(usd):
    org = OrganizationFactory()
    named = OrgCustomerFactory(organization=org, name="Ada Lovelace", external_id="ada")
    unnamed = OrgCustomerFactory(organization=org, name="", external_id="cust-7")
    bare = OrgCustomerFactory(organization=org, name="", external_id="")
    assert wallet_owner_name(wallet_open(asset=usd, customer=named)) == "Ada Lovelace"
    assert wallet_owner_name(wallet_open(asset=usd, customer=unnamed)) == "cust-7"
    assert wallet_owner_name(wallet_open(asset=usd, customer=bare)) == f"customer {bare.pk}"


def test_an_organizations_system_wallet_goes_by_its_label_else_the_organization(usd):
    org = OrganizationFactory(name="Acme Ltd")
    assert wallet_owner_name(wallet_open(asset=usd, organization=org, label="fees")) == "fees"
    assert wallet_owner_name(wallet_open(asset=usd, organization=org)) == "Acme Ltd"


def test_a_platform_wallet_is_coffer_whatever_its_label(usd):
    platform_wallets_ensure(asset=usd, purpose=Wallet.Purpose.FEE)
    fee = Wallet.objects.filter(asset=usd, purpose=Wallet.Purpose.FEE, customer__isnull=True, organization__isnull=True).first()
    assert fee is not None and fee.label  # "platform fee #0"
    assert wallet_owner_name(fee) == "Coffer"
