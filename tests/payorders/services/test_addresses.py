"""Registering extended public keys and allocating deposit addresses (payorders.services.addresses):
sequential indexes, key rotation, one owner per key, the database backstops and racing allocators."""

from __future__ import annotations

import pytest

from compliance.models import AuditEvent
from core.errors import ValidationFailed
from payorders.addresses import derive_address
from payorders.errors import DepositKeyMissing
from payorders.models import DepositAddress, XpubKey
from payorders.services.addresses import deposit_address_allocate, xpub_key_register
from tests.concurrency import errors_of, run_in_threads
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.payorders.test_addresses import BIP84_RECEIVE, BIP84_ZPUB, ETH_INDEX0, _with_version


@pytest.mark.django_db
def test_register_and_allocate_sequentially(eth_xpub, zpub):
    org, owner = OrganizationFactory(), UserFactory()
    key = xpub_key_register(organization=org, chain="ethereum", xpub=f" {eth_xpub} ", actor=owner)
    assert (key.xpub, key.network, key.next_index, key.is_active) == (eth_xpub, "mainnet", 0, True)
    event = AuditEvent.objects.get(action="payorders.xpub_key.register")
    assert event.actor_id == owner.pk and event.data["chain"] == "ethereum"

    first = deposit_address_allocate(organization=org, chain="ethereum")
    second = deposit_address_allocate(organization=org, chain="ethereum")
    assert (first.index, first.address) == (0, ETH_INDEX0)
    assert second.index == 1 and second.address != first.address
    key.refresh_from_db()
    assert key.next_index == 2

    xpub_key_register(organization=org, chain="bitcoin", xpub=_with_version(zpub, "0488b21e"))
    btc = deposit_address_allocate(organization=org, chain="bitcoin")
    assert (btc.chain, btc.address) == ("bitcoin", BIP84_RECEIVE[0])
    assert XpubKey.objects.get(chain="bitcoin").xpub == BIP84_ZPUB  # stored in the form we derive from


@pytest.mark.django_db
def test_allocation_needs_a_key(eth_xpub):
    org = OrganizationFactory()
    with pytest.raises(DepositKeyMissing) as exc:
        deposit_address_allocate(organization=org, chain="ethereum")
    assert exc.value.status == 409
    xpub_key_register(organization=org, chain="ethereum", xpub=eth_xpub)
    with pytest.raises(DepositKeyMissing):  # a key for one chain is not a key for another
        deposit_address_allocate(organization=org, chain="bitcoin")
    with pytest.raises(ValidationFailed):
        deposit_address_allocate(organization=org, chain="tron")


@pytest.mark.django_db
def test_key_rotation_never_reuses_an_index(eth_xpub, seed):
    from bip_utils import Bip44, Bip44Coins

    second_key = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(1).PublicKey().ToExtended()
    org = OrganizationFactory()
    xpub_key_register(organization=org, chain="ethereum", xpub=eth_xpub)
    a0 = deposit_address_allocate(organization=org, chain="ethereum")
    xpub_key_register(organization=org, chain="ethereum", xpub=second_key)
    b0 = deposit_address_allocate(organization=org, chain="ethereum")
    assert b0.xpub_key.xpub == second_key and b0.index == 0
    assert XpubKey.objects.filter(organization=org, chain="ethereum", is_active=True).count() == 1

    xpub_key_register(organization=org, chain="ethereum", xpub=eth_xpub)  # back to the first key
    a1 = deposit_address_allocate(organization=org, chain="ethereum")
    assert (a1.xpub_key_id, a1.index) == (a0.xpub_key_id, 1)
    assert len({a0.address, b0.address, a1.address}) == 3


@pytest.mark.django_db
def test_a_key_belongs_to_one_organization(eth_xpub):
    xpub_key_register(organization=OrganizationFactory(), chain="ethereum", xpub=eth_xpub)
    with pytest.raises(ValidationFailed, match="already registered"):
        xpub_key_register(organization=OrganizationFactory(), chain="ethereum", xpub=eth_xpub)
    assert XpubKey.objects.count() == 1


@pytest.mark.django_db
def test_private_key_registration_stores_nothing(eth_account):
    with pytest.raises(ValidationFailed):
        xpub_key_register(organization=OrganizationFactory(), chain="ethereum", xpub=eth_account.PrivateKey().ToExtended())
    assert XpubKey.objects.count() == 0 and not AuditEvent.objects.filter(action="payorders.xpub_key.register").exists()


@pytest.mark.django_db
def test_database_refuses_a_duplicate_address(eth_xpub):
    from django.db import IntegrityError, transaction

    org = OrganizationFactory()
    xpub_key_register(organization=org, chain="ethereum", xpub=eth_xpub)
    first = deposit_address_allocate(organization=org, chain="ethereum")
    with pytest.raises(IntegrityError), transaction.atomic():
        DepositAddress.objects.create(xpub_key=first.xpub_key, chain="ethereum", index=first.index, address="0x" + "1" * 40)
    with pytest.raises(IntegrityError), transaction.atomic():
        DepositAddress.objects.create(xpub_key=first.xpub_key, chain="ethereum", index=99, address=first.address)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_racing_allocations_get_sixteen_addresses(eth_xpub):
    org = OrganizationFactory()
    xpub_key_register(organization=org, chain="ethereum", xpub=eth_xpub)
    n = 16
    results = run_in_threads(n, lambda i: deposit_address_allocate(organization=org, chain="ethereum"), timeout=60)
    assert errors_of(results) == []
    assert sorted(a.index for a in results) == list(range(n))
    assert len({a.address for a in results}) == n
    expected = {derive_address(chain="ethereum", xpub=eth_xpub, index=i) for i in range(n)}
    assert {a.address for a in results} == expected
    assert XpubKey.objects.get().next_index == n
