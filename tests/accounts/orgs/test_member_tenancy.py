"""Who may act for an organization through a member's token (found in review 2)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.identity.tokens import token_pair_for_user
from tests.factories.orgs import make_org_key

pytestmark = pytest.mark.django_db


def _user_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + token_pair_for_user(user=user)["access_token"])
    return client


@pytest.mark.parametrize("header", ["\u00b2", "\u00b9\u00b2", "1\u00b3"])
def test_a_non_ascii_digit_in_x_organization_is_refused_not_a_server_error(header):
    """`"²".isdigit()` is True but `int("²")` raises: the header reached int() and the API
    answered 500. Latin-1 header bytes make these characters reachable over HTTP."""
    org = make_org_key("Alpha")
    response = _user_client(org.owner).get("/api/v1/pay-orders", HTTP_X_ORGANIZATION=header)
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
