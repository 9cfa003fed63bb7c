from tests.payorders.conftest import btc_account, eth_account, eth_xpub, seed, zpub  # noqa: F401
