"""Fixtures of tests/payorders/: defined with their helpers in `tests.factories.payorders`, which other folders import."""

from tests.factories.payorders import seed, btc_account, zpub, vpub, eth_account, eth_xpub, ganache, token_artifact, token  # noqa: F401  (pytest fixtures)
