"""The Celery app (`celery -A config worker`, `celery -A config beat`).

Logging: the worker and beat log through Django's LOGGING (config/settings/base.py: one console
handler behind the redaction filter), at the level given by `-l`. Celery's own set-up is skipped
(the `setup_logging` receiver below): it would empty the handlers of the `celery` logger, which
does not propagate, and the worker's ready line, received/succeeded lines and task failures with
their tracebacks would reach no handler at all.
"""

import logging
import logging.config
import os

from celery import Celery, signals

# Production unless told otherwise (as cookiecutter-django): `make run`, manage.py and the tests
# choose their settings explicitly; production refuses to start on an unsafe configuration.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("coffer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _log_through_django_settings(loglevel=None, **kwargs) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        for name in ("", "celery"):
            logging.getLogger(name).setLevel(loglevel)
