"""Fixtures of tests/accounts/: defined with their helpers in `tests.factories.orgs`, which other folders import."""

from tests.factories.orgs import org, other_org, client_a, client_b, receiver, eager_celery  # noqa: F401  (pytest fixtures)
