"""Test settings: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set (CI), else SQLite."""

from config.env import env

from .base import *  # noqa: F403
from .base import CACHES, REST_FRAMEWORK

DEBUG = False
PASSWORD_HASHERS = [
    # Argon2 is what production uses; tests that check it name it. MD5 keeps factories fast.
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WEBHOOK_ALLOW_PRIVATE_URLS = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
# Throttles are exercised by dedicated tests that lower the rates; everything else runs freely.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "10000/min", "money": "10000/second"}}
if "KEY_PREFIX" in CACHES["default"]:
    CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", default="coffer-test")
