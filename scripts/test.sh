#!/usr/bin/env bash
# The whole suite. In CI (.ci/run) DATABASE_URL and REDIS_URL point at PostgreSQL and Redis;
# without them the suite runs on SQLite and skips, with a reason, what needs PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DJANGO_SETTINGS_MODULE=config.settings.test
if [ -f scripts/test-deps.sh ]; then bash scripts/test-deps.sh; fi
# The import contract first (.importlinter, docs/architecture.md): a wrong-way import fails here,
# naming the layers it crosses and the chain of imports.
$BIN/lint-imports --no-cache
echo "database: ${DATABASE_URL:-sqlite (DATABASE_URL not set)}; cache: ${REDIS_URL:-local memory (REDIS_URL not set)}"
# Two pytest-xdist workers by default (the suite's tests are independent: each worker has its own
# test database and cache prefix); PYTEST_WORKERS=0 runs in one process.
status=0
$BIN/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@" || status=$?
# The outbox's retry timing is measured with a Celery worker thread on kombu's in-process memory
# transport; with a shared broker configured (RabbitMQ in CI) the run above skips those tests, so
# they run here on their own.
if [ -n "${CELERY_BROKER_URL:-}" ] && [ "${CELERY_BROKER_URL}" != "memory://" ]; then
  env -u CELERY_BROKER_URL $BIN/python -m pytest -p no:randomly -q tests/accounts/webhooks/test_gone_and_retries.py -k "retried or retry_runs or last_step" || status=$?
fi
exit $status
