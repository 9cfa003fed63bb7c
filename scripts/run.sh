#!/usr/bin/env bash
# Starts a Celery worker with beat in the background and the web server in the foreground;
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# The entry points (config.wsgi, config.celery) default to production settings: a local run says so.
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://$HOST:$PORT}
mkdir -p var
$BIN/python manage.py seed_demo
$BIN/python manage.py collectstatic --noinput >/dev/null
$BIN/celery -A config worker --beat --loglevel=INFO --concurrency=2 --pool=threads >var/celery.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM
echo "Celery worker + beat running (pid $WORKER, log var/celery.log)"
echo "Coffer on http://$HOST:$PORT/  (API docs http://$HOST:$PORT/api/docs/, admin http://$HOST:$PORT/admin/)"
exec_cmd=($BIN/gunicorn config.wsgi:application --bind "$HOST:$PORT" --workers "${WEB_WORKERS:-2}" --threads 4 --access-logfile -)
"${exec_cmd[@]}"
