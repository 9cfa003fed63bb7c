"""Production settings: what `config.wsgi`, `config.asgi` and the Celery app (`config.celery`)
run unless DJANGO_SETTINGS_MODULE says otherwise. They refuse to start, naming every missing or
unsafe piece at once, unless the deployment has:

- DEBUG off, a SECRET_KEY of its own (32+ characters, not the development default), an
  AUDIT_CHAIN_KEY (32+), the EVM chain (not the sandbox), private webhook URLs refused;
- PostgreSQL (`DATABASE_URL`): SQLite is the embedded mode of `make run`, not a deployment;
- Redis as the cache (`REDIS_URL`): locks, throttles and the idempotency fast path are shared
  between processes, which the local-memory cache is not;
- a real broker (`CELERY_BROKER_URL`, or `REDIS_URL`): amqp:// or redis://, not the filesystem or
  in-memory transports;
- an e-mail backend that sends (`EMAIL_URL` for SMTP, or `EMAIL_BACKEND` naming a provider's);
- a field encryption key (`FIELD_ENCRYPTION_KEY`, 32+ characters, not SECRET_KEY): stored API-key,
  webhook and authenticator secrets must survive a SECRET_KEY rotation.
"""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import env

from .base import *  # noqa: F403
from .base import (
    AUDIT_CHAIN_KEY,
    CACHES,
    CELERY_BROKER_URL,
    CHAIN_PROVIDER,
    DATABASES,
    EVM_RPC_URL,
    EVM_TEST_RPC_URL,
    TEST_CHAIN_PROVIDER,
    DEBUG,
    EMAIL_BACKEND,
    FIELD_ENCRYPTION_KEYS,
    INSECURE_DEFAULT_SECRET_KEY,
    SECRET_KEY,
    WEBHOOK_ALLOW_PRIVATE_URLS,
)

REAL_BROKER_SCHEMES = {"amqp", "amqps", "pyamqp", "librabbitmq", "redis", "rediss", "sentinel", "sqs"}
# Backends that keep mail on this machine (console, file, memory, nowhere).
NON_SENDING_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "core.mail.RedactingConsoleEmailBackend",
}


def production_problems(
    *, debug: bool, secret_key: str, chain_provider: str, allow_private: bool, audit_chain_key: str,
    database_engine: str, cache_backend: str, broker_url: str, email_backend: str, field_keys: list[str],
    test_chain_provider: str = "sandbox", evm_test_rpc_url: str = "", evm_rpc_url: str = "",
) -> list[str]:
    problems = []
    if debug:
        problems.append("DEBUG is on")
    if not secret_key or secret_key == INSECURE_DEFAULT_SECRET_KEY or len(secret_key) < 32:
        problems.append("SECRET_KEY is missing, the default, or shorter than 32 characters")
    if chain_provider == "sandbox":
        problems.append("CHAIN_PROVIDER is the sandbox")
    if test_chain_provider not in ("sandbox", "evm"):
        problems.append("TEST_CHAIN_PROVIDER is neither 'sandbox' nor 'evm'")
    elif test_chain_provider == "evm" and not evm_test_rpc_url:
        problems.append("TEST_CHAIN_PROVIDER is evm without EVM_TEST_RPC_URL")
    elif test_chain_provider == "evm" and evm_test_rpc_url.rstrip("/") == evm_rpc_url.rstrip("/"):
        problems.append("EVM_TEST_RPC_URL is the main network's node (EVM_RPC_URL): test keys would pay on it")
    if allow_private:
        problems.append("WEBHOOK_ALLOW_PRIVATE_URLS is on")
    if len(audit_chain_key) < 32:
        problems.append("AUDIT_CHAIN_KEY is missing or shorter than 32 characters")
    if not database_engine.endswith("postgresql"):
        problems.append("DATABASE_URL is not a PostgreSQL database (postgres://...)")
    if not cache_backend.startswith("django_redis."):
        problems.append("REDIS_URL is missing: the cache must be Redis (redis://...)")
    if urlsplit(broker_url).scheme.split("+")[0] not in REAL_BROKER_SCHEMES:
        problems.append("CELERY_BROKER_URL is not a real broker (amqp:// or redis://, or set REDIS_URL)")
    if email_backend in NON_SENDING_EMAIL_BACKENDS:
        problems.append("EMAIL_URL is missing: no e-mail backend that sends (smtp+tls://... or a provider's EMAIL_BACKEND)")
    current = field_keys[0] if field_keys else ""
    if len(current) < 32:
        problems.append("FIELD_ENCRYPTION_KEY is missing or shorter than 32 characters")
    elif current == secret_key:
        problems.append("FIELD_ENCRYPTION_KEY is the same as SECRET_KEY")
    return problems


def check_production_settings(**settings) -> None:
    problems = production_problems(**settings)
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems))


check_production_settings(
    debug=DEBUG,
    secret_key=env("SECRET_KEY", default="") and SECRET_KEY,
    chain_provider=CHAIN_PROVIDER,
    test_chain_provider=TEST_CHAIN_PROVIDER,
    evm_test_rpc_url=EVM_TEST_RPC_URL,
    evm_rpc_url=EVM_RPC_URL,
    allow_private=WEBHOOK_ALLOW_PRIVATE_URLS,
    audit_chain_key=AUDIT_CHAIN_KEY,
    database_engine=DATABASES["default"]["ENGINE"] if env("DATABASE_URL", default="") else "",
    cache_backend=CACHES["default"]["BACKEND"],
    broker_url=CELERY_BROKER_URL,
    email_backend=EMAIL_BACKEND,  # noqa: F405 - set by base from EMAIL_URL or EMAIL_BACKEND
    field_keys=FIELD_ENCRYPTION_KEYS,
)

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_CONTENT_TYPE_NOSNIFF = True
WEBHOOK_REQUIRE_HTTPS = True
