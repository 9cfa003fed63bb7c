"""Statement budgets of the money path (issue 10 item 6): an API transfer, deposit, withdrawal and
organization transaction each run at most 10 SQL statements, authentication, idempotency and
BEGIN/COMMIT included, once the process is warm (rules and the authenticated user cached). A
change that adds a statement to the hot path fails here with the statements listed."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from compliance.models import LimitRule
from ledger.posting import Issue, ledger_post
from ledger.services import wallet_open
from tests.factories.accounts import OrgCustomerFactory
from tests.factories.orgs import key_client, make_org_key
from tests.factories.wallets import asset, open_wallet, person

BUDGET = 10

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _bearer(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def _within_budget(send, expected_status=(201,), budget=BUDGET):
    """The statements of one request once warm (the rules snapshot, the cached user or key). The
    fewest of three requests counts: a once-a-minute write (an API key's last use) or a cache
    entry expiring on a loaded box must not fail the budget, while a statement every request
    runs still does."""
    assert send().status_code in expected_status
    attempts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as ctx:
            response = send()
        assert response.status_code in expected_status, response.content
        attempts.append([q["sql"][:150] for q in ctx.captured_queries])
    statements = min(attempts, key=len)
    assert len(statements) <= budget, f"{len(statements)} statements (budget {budget}):\n" + "\n".join(statements)
    return statements


def _key() -> dict:
    return {"Idempotency-Key": str(uuid.uuid4())}


def test_transfer():
    jane, john = person(), person()
    source, destination = open_wallet(jane, "USD", funded="100.00"), open_wallet(john, "USD")
    client = _bearer(jane)
    body = {"source_wallet_id": source.pk, "destination_wallet_id": destination.pk, "amount": "1.00", "currency": "USD"}
    # BEGIN, idempotency claim, wallets + customer lock, usage, engine lock, engine write, audit
    # event + idempotency record, COMMIT
    statements = _within_budget(lambda: client.post("/api/v1/transfers", body, format="json", headers=_key()), budget=8)
    assert not any("ledger_entry" in s and s.startswith("SELECT") for s in statements), "the answer re-read the entries"


def test_deposit():
    jane = person()
    wallet = open_wallet(jane, "USD")
    client = _bearer(jane)
    # The seeded default limits of incoming deposits (SPEC 11), whether or not an earlier
    # transactional test on this worker flushed the seed rows: with them the deposit reads its
    # usage, without them it did not, and the budget depended on the order the tests ran in.
    LimitRule.objects.get_or_create(
        kyc_level=jane.customer.kyc_level, movement_type="deposit", direction="incoming", currency="",
        defaults={"single_limit": Decimal("1000"), "daily_limit": Decimal("2000"), "monthly_limit": Decimal("5000")},
    )
    # BEGIN, idempotency claim, wallet + customer lock, usage, engine lock, engine write, audit
    # event + idempotency record, COMMIT
    _within_budget(lambda: client.post("/api/v1/deposits", {"wallet_id": wallet.pk, "amount": "5.00"}, format="json", headers=_key()), budget=8)


def test_withdrawal():
    jane = person()
    wallet = open_wallet(jane, "EUR", funded="500.00")
    client = _bearer(jane)
    body = {"wallet_id": wallet.pk, "amount": "10.00", "destination": {"type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Doe"}}
    _within_budget(lambda: client.post("/api/v1/withdrawals", body, format="json", headers=_key()), expected_status=(201, 202), budget=8)


def test_organization_transaction():
    org = make_org_key("Budget")
    usd = asset("USD")
    a = wallet_open(asset=usd, customer=OrgCustomerFactory(organization=org.organization))
    b = wallet_open(asset=usd, customer=OrgCustomerFactory(organization=org.organization))
    ledger_post(type="deposit", operations=[Issue(wallet=a, amount=Decimal("100"))]).raise_for_error()
    client = key_client(org)
    references = iter(range(20))

    def send():
        body = {"reference": f"budget-{next(references)}", "operations": [
            {"type": "transfer", "source_wallet_id": a.pk, "destination_wallet_id": b.pk, "amount": "1"}]}
        return client.post("/api/v1/transactions", body, format="json")  # the reference is the retry key

    _within_budget(send, budget=9)
