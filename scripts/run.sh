#!/usr/bin/env bash
# Starts the Celery workers and beat in the background and the web server in the foreground;
# Ctrl-C stops everything.
#
# WORKERS=one (default, the embedded `make run`): one worker with beat consuming every queue.
# WORKERS=queues: one worker pool per queue (core/queues.py) and a separate beat, as production
# runs them (docs/deploy.md, "Worker pools by queue"); each pool's concurrency comes from
# <QUEUE>_CONCURRENCY (MONEY_CONCURRENCY=4 ...). The commands it runs are the production ones:
#   celery -A config worker -Q money       --pool=threads --concurrency=4  -n money@%h
#   celery -A config worker -Q chain       --pool=threads --concurrency=2  -n chain@%h
#   celery -A config worker -Q webhooks    --pool=threads --concurrency=16 -n webhooks@%h
#   celery -A config worker -Q email       --pool=threads --concurrency=2  -n email@%h
#   celery -A config worker -Q maintenance --pool=threads --concurrency=2  -n maintenance@%h
#   celery -A config beat   (any number: one leads, core.beat)
# (queue names get CELERY_QUEUE_PREFIX in front when it is set).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
# The entry points (config.wsgi, config.celery) default to production settings: a local run says so.
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORKERS=${WORKERS:-one}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://$HOST:$PORT}
mkdir -p var
$BIN/python manage.py seed_demo
$BIN/python manage.py collectstatic --noinput >/dev/null
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT INT TERM
if [ "$WORKERS" = queues ]; then
  PREFIX=${CELERY_QUEUE_PREFIX:-}
  declare -A CONCURRENCY=([money]=${MONEY_CONCURRENCY:-4} [chain]=${CHAIN_CONCURRENCY:-2} [webhooks]=${WEBHOOKS_CONCURRENCY:-16}
                          [email]=${EMAIL_CONCURRENCY:-2} [maintenance]=${MAINTENANCE_CONCURRENCY:-2})
  for queue in money chain webhooks email maintenance; do
    $BIN/celery -A config worker -Q "$PREFIX$queue" --pool=threads --concurrency="${CONCURRENCY[$queue]}" \
      -n "$queue@%h" --loglevel=INFO >"var/celery-$queue.log" 2>&1 &
    PIDS+=($!)
    echo "Celery pool $queue (concurrency ${CONCURRENCY[$queue]}, pid $!, log var/celery-$queue.log)"
  done
  $BIN/celery -A config beat --loglevel=INFO >var/celery-beat.log 2>&1 &
  PIDS+=($!)
  echo "Celery beat (pid $!, log var/celery-beat.log)"
else
  # Embedded: one worker consumes every queue (no -Q) and runs beat.
  $BIN/celery -A config worker --beat --loglevel=INFO --concurrency=2 --pool=threads >var/celery.log 2>&1 &
  PIDS+=($!)
  echo "Celery worker + beat running (pid $!, every queue, log var/celery.log)"
fi
echo "Coffer on http://$HOST:$PORT/  (API docs http://$HOST:$PORT/api/docs/, admin http://$HOST:$PORT/admin/)"
exec_cmd=($BIN/gunicorn config.wsgi:application --bind "$HOST:$PORT" --workers "${WEB_WORKERS:-2}" --threads 4 --access-logfile -)
"${exec_cmd[@]}"
