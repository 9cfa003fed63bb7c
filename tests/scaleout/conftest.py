"""Fixtures of the scale-out tests (issue 15): a real PgBouncer in front of the test database's
server, and a throwaway primary with a streaming replica. Both skip, with their reason, when the
binaries are missing, and are stopped after the module, also when a test fails."""

import pytest
from django.conf import settings
from django.db import connection

from scripts.pgservers import Cluster, PgBouncer, missing_pgbouncer, missing_postgres_binaries


def _postgres_or_skip() -> dict:
    params = settings.DATABASES["default"]
    if not params["ENGINE"].endswith("postgresql"):
        pytest.skip("needs PostgreSQL: set DATABASE_URL")
    return params


@pytest.fixture(scope="module")
def pgbouncer(django_db_setup, django_db_blocker):
    """PgBouncer 1.18, transaction pooling, in front of the server of the test database. The
    test settings' startup option (coffer.allow_audit_truncate) is set by its connect_query."""
    params = _postgres_or_skip()
    reason = missing_pgbouncer()
    if reason:
        pytest.skip(reason)
    bouncer = PgBouncer(upstream_host=params["HOST"] or "127.0.0.1", upstream_port=int(params["PORT"] or 5432),
                        connect_query="SET coffer.allow_audit_truncate = on", pool_size=8)
    with bouncer:
        yield bouncer


@pytest.fixture
def test_database_name(django_db_blocker) -> str:
    return connection.settings_dict["NAME"]


@pytest.fixture(scope="module")
def primary_and_replica():
    """A throwaway primary (initdb in a temporary directory) and its streaming replica
    (`pg_basebackup -R`), each on its own port."""
    reason = missing_postgres_binaries()
    if reason:
        pytest.skip(reason)
    with Cluster.create() as primary, primary.replica() as replica:
        yield primary, replica
