"""Fixtures of tests/ledger/: defined with their helpers in `tests.factories.ledger`, which other folders import."""

from tests.factories.ledger import usd, eur, eth, make_wallet, organization  # noqa: F401  (pytest fixtures)
