"""Test settings: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set (CI), else SQLite."""

from config.env import env

from .base import *  # noqa: F403
from .base import CACHES, DATABASES, REST_FRAMEWORK

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
    # One prefix per pytest-xdist worker: the workers share one Redis database, and each test
    # empties only its own worker's keys (tests/conftest.py).
    CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", default="coffer-test") + env("PYTEST_XDIST_WORKER", default="")
AUDIT_CHAIN_KEY = env("AUDIT_CHAIN_KEY", default="") or "coffer-test-audit-chain-key-0123456789abcdef"
# tests/conftest.py gives every test its own checkpoint file.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # The test runner empties tables with TRUNCATE between transactional tests; the audit tables'
    # TRUNCATE trigger (compliance migration 0007) lets that through only in a test_ database on
    # a connection that sets this.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (_options.get("options", "") + " -c coffer.allow_audit_truncate=on").strip()

# Rules changed in a test apply at once, whatever the process read before (compliance.rules).
RULES_VERSION_TTL_SECONDS = 0
# Rates are re-read from the price provider at once (a test may switch providers; core.reference).
LIMITS_RATE_CACHE_SECONDS = 0
