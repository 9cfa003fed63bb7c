"""Shared fixtures. The suite runs on PostgreSQL + Redis in CI; on SQLite (a laptop) tests marked
`postgres` are skipped with their reason."""

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

POSTGRES_REASON = "needs PostgreSQL (row locks, triggers, real concurrency): set DATABASE_URL"


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip_pg = pytest.mark.skip(reason=POSTGRES_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip_pg)


def _cache_clear() -> None:
    # django-redis's clear() is FLUSHDB, which would also empty the other xdist workers' keys
    # (one Redis database, one key prefix per worker): delete only this prefix's keys.
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _clear_cache():
    _cache_clear()
    yield
    _cache_clear()


@pytest.fixture(autouse=True)
def _project_celery_app_stays_current():
    """Celery's test worker (`celery.contrib.testing.worker.start_worker`) makes its app the current
    and default one; shared tasks publish through the current app, so a test that ran a worker for
    an app of its own (memory://) sent every later test's tasks to that app's broker in this
    process. Put the project's app back after every test."""
    yield
    from celery import current_app

    from config.celery import app

    if current_app._get_current_object() is not app:
        app.set_current()
        app.set_default()


@pytest.fixture(autouse=True)
def _audit_checkpoint_file(settings, tmp_path):
    """Each test its own audit checkpoint file: the database is emptied between tests, and a
    checkpoint left by another test would read as a truncated chain."""
    settings.AUDIT_CHECKPOINT_PATH = str(tmp_path / "audit" / "checkpoints.jsonl")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture(scope="module")
def browser(django_db_setup):
    """One headless Chromium for the module (tests/browser.py; mark the module `needs_chromium`)."""
    from tests.browser import chromium_launched

    with chromium_launched() as chromium:
        yield chromium
