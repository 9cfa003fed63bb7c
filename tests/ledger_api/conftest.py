"""Fixtures of tests/ledger_api/: defined with their helpers in `tests.factories.ledger_api`, which other folders import."""

from tests.factories.ledger_api import org, other_org, client_a, client_b, points, usd  # noqa: F401  (pytest fixtures)
