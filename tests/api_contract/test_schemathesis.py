"""The OpenAPI document against the running API (issue 12 item 13): schemathesis generates a few
requests per operation from `/api/schema/`, sends them through the WSGI app with a user's token
or an organization's key (whichever the operation documents), and checks that no response is a
server error, that every response matches its documented schema and status, and that every
error is in the envelope. Bounded: SCHEMATHESIS_EXAMPLES examples per operation (default 3)."""

import json
import os
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings as hypothesis_settings

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
# What the contract promises (SPEC 5): no server error, only documented statuses and content types,
# bodies that match their schema. Authentication and input strictness have their own tests.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _schema():
    """The document served at /api/schema/, loaded through the WSGI app (no database needed)."""
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


schema = _schema()


@pytest.fixture
def wsgi_in_test_transaction():
    """The WSGI app closes the database connection after each request (close_old_connections);
    inside a test's transaction that would close the test's connection. Django's test client
    unhooks it the same way."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def credentials(db, wsgi_in_test_transaction):
    """A user with a funded USD wallet and a JWT; an organization with an API key, a customer
    and a funded wallet of theirs."""
    from accounts.models import Customer, Organization
    from accounts.orgs.scopes import ALL_SCOPES
    from accounts.orgs.services import api_key_create
    from accounts.identity.tokens import token_pair_for_user
    from ledger.posting import Issue, ledger_post
    from ledger.services import wallet_open
    from tests.factories.wallets import asset, person

    user = person("contract@example.com")
    wallet = wallet_open(asset=asset("USD"), customer=user.customer)
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=Decimal("100.00"))], customer=user.customer).raise_for_error()
    organization = Organization.objects.create(name="Contract Org", slug="contract-org")
    _, secret = api_key_create(organization=organization, name="contract", scopes=ALL_SCOPES)
    customer = Customer.objects.create(organization=organization, external_id="c-1", name="C One")
    wallet_open(asset=asset("USD"), customer=customer)
    return {"user": f"Bearer {token_pair_for_user(user=user)['access_token']}", "org": secret}


def _headers(case, credentials) -> dict:
    security = case.operation.definition.raw.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    if schemes and "userJWT" not in schemes and "apiKey" in schemes:
        return {"X-API-Key": credentials["org"], "Idempotency-Key": os.urandom(8).hex()}
    return {"Authorization": credentials["user"], "Idempotency-Key": os.urandom(8).hex()}


def _envelope(ctx, response, case):
    if response.status_code >= 400 and case.path.startswith("/api/"):
        body = json.loads(response.content or b"{}")
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict) and {"code", "message"} <= set(error), f"not the error envelope: {response.content[:300]!r}"


@pytest.mark.postgres
@pytest.mark.slow
@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_api_contract(case, credentials):
    response = case.call(headers=_headers(case, credentials))
    case.validate_response(response, checks=CHECKS)
    _envelope(None, response, case)
