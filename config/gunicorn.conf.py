"""gunicorn settings file (`gunicorn -c config/gunicorn.conf.py config.wsgi:application`), for
prometheus-client's multiprocess mode (docs/deploy.md): a dead worker's live gauges go with it."""

import os


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
