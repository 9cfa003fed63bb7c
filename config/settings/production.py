"""Production settings, chosen explicitly. They refuse to start on an unsafe configuration."""

from django.core.exceptions import ImproperlyConfigured

from config.env import env

from .base import *  # noqa: F403
from .base import AUDIT_CHAIN_KEY, CHAIN_PROVIDER, DEBUG, INSECURE_DEFAULT_SECRET_KEY, SECRET_KEY, WEBHOOK_ALLOW_PRIVATE_URLS


def check_production_settings(
    *, debug: bool, secret_key: str, chain_provider: str, allow_private: bool, audit_chain_key: str
) -> None:
    problems = []
    if debug:
        problems.append("DEBUG is on")
    if not secret_key or secret_key == INSECURE_DEFAULT_SECRET_KEY or len(secret_key) < 32:
        problems.append("SECRET_KEY is missing, the default, or shorter than 32 characters")
    if chain_provider == "sandbox":
        problems.append("CHAIN_PROVIDER is the sandbox")
    if allow_private:
        problems.append("WEBHOOK_ALLOW_PRIVATE_URLS is on")
    if len(audit_chain_key) < 32:
        problems.append("AUDIT_CHAIN_KEY is missing or shorter than 32 characters")
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems))


check_production_settings(
    debug=DEBUG,
    secret_key=env("SECRET_KEY", default="") and SECRET_KEY,
    chain_provider=CHAIN_PROVIDER,
    allow_private=WEBHOOK_ALLOW_PRIVATE_URLS,
    audit_chain_key=AUDIT_CHAIN_KEY,
)

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_CONTENT_TYPE_NOSNIFF = True
WEBHOOK_REQUIRE_HTTPS = True
