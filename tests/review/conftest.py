"""The review's regression tests reuse the customer wallets fixtures (users with a Customer,
platform assets, funded wallets)."""

from tests.wallets.conftest import jane, john, usd  # noqa: F401  (pytest fixtures)
