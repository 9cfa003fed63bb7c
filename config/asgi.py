import os

from django.core.asgi import get_asgi_application

# Production unless told otherwise (as cookiecutter-django): `make run`, manage.py and the tests
# choose their settings explicitly; production refuses to start on an unsafe configuration.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_asgi_application()
