"""Review 2: an extended public key is identified by its key material (chain code + public key),
not by its serialization. The parent fingerprint and child number of a BIP32 serialization do not
change the derived addresses, so a re-encoded copy of a registered key is the same key."""

from __future__ import annotations

import pytest
from bip_utils import Base58Decoder, Base58Encoder
from rest_framework.test import APIClient

from payorders.services.addresses import xpub_key_register
from payorders.models import XpubKey
from tests.factories.orgs import make_org_key

pytestmark = pytest.mark.django_db


def _reencoded(xpub: str, *, fingerprint: bytes = b"\xde\xad\xbe\xef", child: bytes = b"\x80\x00\x00\x07") -> str:
    """The same key (same chain code and public key) with another parent fingerprint and child number."""
    raw = Base58Decoder.CheckDecode(xpub)
    # version(4) depth(1) fingerprint(4) child(4) chaincode(32) key(33)
    return Base58Encoder.CheckEncode(raw[:5] + fingerprint + child + raw[13:])


def _client(org_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=org_key.secret)
    return client


def _pay_details(client, currency="ETH"):
    order = client.post("/api/v1/pay-orders", {"type": "SALE", "amount": "10.00", "currency": "USD"}, format="json").json()
    quote = client.post(f"/api/v1/pay-orders/{order['id']}/quote", {"source_currencies": [currency]}, format="json").json()["quotes"][0]
    return client.post(f"/api/v1/pay-orders/{order['id']}/payment-details", {"quote_id": quote["quote_id"]}, format="json")


@pytest.mark.parametrize("chain", ["ethereum", "bitcoin"])
def test_another_organization_cannot_register_a_reencoded_copy_of_a_key(chain, eth_xpub, zpub):
    xpub = eth_xpub if chain == "ethereum" else zpub
    alpha, beta = make_org_key("Alpha"), make_org_key("Beta")
    xpub_key_register(organization=alpha.organization, chain=chain, xpub=xpub)
    variant = _reencoded(xpub)
    assert variant != xpub

    response = _client(beta).post("/api/v1/xpub-keys", {"chain": chain, "xpub": variant}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not XpubKey.objects.filter(organization=beta.organization).exists()


def test_a_copy_cannot_take_the_addresses_of_the_organization_that_owns_the_key(eth_xpub):
    """Before the fix Beta's copy started at index 0 and took Alpha's next address, so Alpha's
    checkout then failed on the unique address (a 500)."""
    alpha, beta = make_org_key("Alpha"), make_org_key("Beta")
    xpub_key_register(organization=alpha.organization, chain="ethereum", xpub=eth_xpub)
    _client(beta).post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": _reencoded(eth_xpub)}, format="json")
    _pay_details(_client(beta))  # refused (no key) or not: Alpha must be unaffected
    response = _pay_details(_client(alpha))
    assert response.status_code == 200, response.content


def test_reregistering_a_reencoded_copy_of_an_own_key_keeps_its_counter(eth_xpub, seed):
    from bip_utils import Bip44, Bip44Coins

    alpha = make_org_key("Alpha")
    client = _client(alpha)
    first = xpub_key_register(organization=alpha.organization, chain="ethereum", xpub=eth_xpub)
    assert _pay_details(client).status_code == 200
    other = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(5).PublicKey().ToExtended()
    xpub_key_register(organization=alpha.organization, chain="ethereum", xpub=other)
    response = client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": _reencoded(eth_xpub)}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["id"] == first.pk and response.json()["next_index"] == 1
    assert _pay_details(client).status_code == 200  # index 1, not index 0 a second time
