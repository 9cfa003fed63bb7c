"""Fixtures of tests/accounts/dashboard/: defined with their helpers in `tests.factories.dashboard`, which other folders import."""

from tests.factories.dashboard import alpha, beta, owner_client, developer_client, viewer_client, assets  # noqa: F401  (pytest fixtures)
