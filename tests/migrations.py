"""Moving the test database between migration states (the migration tests of every app)."""

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets) -> Apps:
    """Migrate the test database to `targets` ([(app, migration name)], forward or back) and
    return the historical models of that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest_migrations() -> list[tuple[str, str]]:
    """Every app's newest migration: where a migration test puts the database back."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes()
