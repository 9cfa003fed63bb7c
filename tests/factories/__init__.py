"""Test data per app: factory-boy factories (`accounts`) and the helpers and fixtures each test
folder builds its rows with (`orgs`, `dashboard`, `ledger`, `ledger_api`, `wallets`, `payorders`).
A folder's conftest.py imports its fixtures from here, and a test that needs another folder's
helpers imports them from here too: no test module or conftest imports a conftest."""
