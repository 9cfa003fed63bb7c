"""Fixtures of tests/wallets/: defined with their helpers in `tests.factories.wallets`, which other folders import."""

from tests.factories.wallets import jane, john, usd  # noqa: F401  (pytest fixtures)
