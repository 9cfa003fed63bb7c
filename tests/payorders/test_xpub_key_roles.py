"""Only an owner replaces the extended public key customers pay to (found in review 2)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.identity.tokens import token_pair_for_user
from payorders.models import XpubKey
from tests.factories.accounts import MembershipFactory, UserFactory
from tests.factories.orgs import make_org_key

pytestmark = pytest.mark.django_db


def _user_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + token_pair_for_user(user=user)["access_token"])
    return client


def test_only_an_owner_replaces_the_key_customers_pay_to(eth_xpub, seed):
    """The active extended public key decides whose wallet every new deposit address belongs to:
    replacing it redirects all future payments. A developer (who may not even create API keys)
    must not be able to; an owner may."""
    from bip_utils import Bip44, Bip44Coins

    org = make_org_key("Alpha")
    developer, viewer = UserFactory(), UserFactory()
    MembershipFactory(organization=org.organization, user=developer, role="developer")
    MembershipFactory(organization=org.organization, user=viewer, role="viewer")
    attacker_key = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(9).PublicKey().ToExtended()
    body = {"chain": "ethereum", "xpub": attacker_key}

    for user in (developer, viewer):
        response = _user_client(user).post("/api/v1/xpub-keys", body, format="json")
        assert response.status_code == 403, (user, response.json())
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert not XpubKey.objects.filter(organization=org.organization).exists()
    # everyone in the organization may still read which keys are registered
    assert _user_client(developer).get("/api/v1/xpub-keys").status_code == 200

    response = _user_client(org.owner).post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth_xpub}, format="json")
    assert response.status_code == 201, response.json()
