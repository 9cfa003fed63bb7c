"""The pay-order API's OpenAPI schema and the xpub-keys endpoint."""

from __future__ import annotations

import pytest

from payorders.models import Refund
from tests.payorders.support import merchant  # noqa: F401

pytestmark = pytest.mark.django_db


def test_schema_has_every_pay_order_endpoint_with_examples(api_client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    ops = {
        ("/api/v1/pay-orders", "get"), ("/api/v1/pay-orders", "post"), ("/api/v1/pay-orders/{public_id}", "get"),
        ("/api/v1/pay-orders/{public_id}/cancel", "post"), ("/api/v1/pay-orders/{public_id}/quote", "post"),
        ("/api/v1/pay-orders/{public_id}/payment-details", "post"), ("/api/v1/pay-orders/{public_id}/process", "post"),
        ("/api/v1/pay-orders/{public_id}/refund", "post"), ("/api/v1/pay-orders/{public_id}/refunds/{refund_id}/transaction", "post"),
        ("/api/v1/xpub-keys", "get"), ("/api/v1/xpub-keys", "post"),
    }
    for path, method in ops:
        op = schema["paths"][path][method]
        responses = op["responses"]
        ok = next(code for code in responses if code.startswith("2"))
        assert "examples" in responses[ok]["content"]["application/json"], (path, method)
        if method == "post":
            assert "examples" in op["requestBody"]["content"]["application/json"], (path, method)


def test_xpub_keys_endpoint(merchant, seed):  # noqa: F811
    from tests.payorders.support import account_keys

    eth, _ = account_keys(seed, 90)
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": eth}, format="json")
    assert r.status_code == 201 and r.json()["is_active"] and r.json()["next_index"] == 0
    listed = merchant.client.get("/api/v1/xpub-keys").json()
    assert listed["count"] == 3 and sum(k["is_active"] for k in listed["results"]) == 2
    r = merchant.client.post("/api/v1/xpub-keys", {"chain": "ethereum", "xpub": "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"}, format="json")
    assert r.status_code == 400 and "xprv9s21" not in r.content.decode()
    assert Refund.objects.count() == 0
