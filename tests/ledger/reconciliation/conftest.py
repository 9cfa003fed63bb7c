"""Fixtures of tests/ledger/reconciliation/: defined with their helpers in `tests.factories.reconciliation`."""

from tests.factories.ledger_api import client_a, client_b, org, other_org, usd  # noqa: F401  (pytest fixtures)
from tests.factories.reconciliation import bank  # noqa: F401  (pytest fixture)
