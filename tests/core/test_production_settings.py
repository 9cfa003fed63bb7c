"""config.settings.production refuses to start on an unsafe configuration (SPEC 10)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "DEBUG": "0",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789abcdef",
    "CHAIN_PROVIDER": "evm",
    "EVM_RPC_URL": "http://127.0.0.1:8545",
    "WEBHOOK_ALLOW_PRIVATE_URLS": "0",
    "ALLOWED_HOSTS": "coffer.example",
    "AUDIT_CHAIN_KEY": "a-long-random-audit-chain-hmac-key-0123456789abcdef",
    "DATABASE_URL": "postgres://coffer:pw@db.coffer.example:5432/coffer",
    "REDIS_URL": "redis://cache.coffer.example:6379/0",
    "CELERY_BROKER_URL": "amqp://coffer:pw@mq.coffer.example:5672//",
    "EMAIL_URL": "smtp+tls://mailer:pw@smtp.coffer.example:587",
    "FIELD_ENCRYPTION_KEY": "a-long-random-field-encryption-key-0123456789abcdef",
}
# Every variable production reads for the checks above: a test starts from GOOD, not from the
# environment the suite runs in (which carries the test database, Redis and broker).
CONTROLLED = (*GOOD, "EMAIL_BACKEND", "DJANGO_SETTINGS_MODULE", "TEST_CHAIN_PROVIDER", "EVM_TEST_RPC_URL")


def _environment(overrides: dict[str, str | None], settings_module: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(GOOD)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    return env


def _boot(**overrides: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('booted')"],
        cwd=ROOT, env=_environment(overrides, "config.settings.production"), capture_output=True, text=True, timeout=60,
    )


def test_a_safe_configuration_boots():
    result = _boot()
    assert result.returncode == 0, result.stderr
    assert "booted" in result.stdout


def test_a_test_network_node_for_test_keys_boots():
    result = _boot(TEST_CHAIN_PROVIDER="evm", EVM_TEST_RPC_URL="https://sepolia.node.example")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"DEBUG": "1"}, "DEBUG is on"),
        ({"SECRET_KEY": None}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "django-insecure-coffer-local-development-key-do-not-use"}, "SECRET_KEY is missing, the default"),
        ({"SECRET_KEY": "short"}, "shorter than 32"),
        ({"CHAIN_PROVIDER": None}, "CHAIN_PROVIDER is the sandbox"),
        ({"CHAIN_PROVIDER": "sandbox"}, "CHAIN_PROVIDER is the sandbox"),
        ({"WEBHOOK_ALLOW_PRIVATE_URLS": "1"}, "WEBHOOK_ALLOW_PRIVATE_URLS is on"),
        ({"TEST_CHAIN_PROVIDER": "evm"}, "TEST_CHAIN_PROVIDER is evm without EVM_TEST_RPC_URL"),
        ({"TEST_CHAIN_PROVIDER": "evm", "EVM_TEST_RPC_URL": "http://127.0.0.1:8545/"}, "EVM_TEST_RPC_URL is the main network's node"),
        ({"TEST_CHAIN_PROVIDER": "mainnet"}, "TEST_CHAIN_PROVIDER is neither"),
        ({"AUDIT_CHAIN_KEY": None}, "AUDIT_CHAIN_KEY is missing"),
        ({"AUDIT_CHAIN_KEY": "short"}, "AUDIT_CHAIN_KEY is missing or shorter than 32"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not a PostgreSQL database"),
        ({"DATABASE_URL": "sqlite:////srv/coffer/db.sqlite3"}, "DATABASE_URL is not a PostgreSQL database"),
        ({"REDIS_URL": None, "CELERY_BROKER_URL": "amqp://mq.coffer.example//"}, "REDIS_URL is missing: the cache must be Redis"),
        ({"CELERY_BROKER_URL": "filesystem://"}, "CELERY_BROKER_URL is not a real broker"),
        ({"CELERY_BROKER_URL": "memory://"}, "CELERY_BROKER_URL is not a real broker"),
        ({"REDIS_URL": None, "CELERY_BROKER_URL": None}, "CELERY_BROKER_URL is not a real broker"),
        ({"EMAIL_URL": None}, "EMAIL_URL is missing"),
        ({"EMAIL_URL": "consolemail://"}, "EMAIL_URL is missing"),
        ({"EMAIL_URL": None, "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}, "EMAIL_URL is missing"),
        ({"FIELD_ENCRYPTION_KEY": None}, "FIELD_ENCRYPTION_KEY is missing"),
        ({"FIELD_ENCRYPTION_KEY": "short,a-long-random-field-encryption-key-0123456789abcdef"}, "FIELD_ENCRYPTION_KEY is missing or shorter than 32"),
        ({"FIELD_ENCRYPTION_KEY": GOOD["SECRET_KEY"]}, "FIELD_ENCRYPTION_KEY is the same as SECRET_KEY"),
    ],
)
def test_an_unsafe_configuration_refuses_to_start(overrides, reason):
    result = _boot(**overrides)
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr
    assert reason in result.stderr


def test_every_missing_piece_is_named_at_once():
    result = _boot(DATABASE_URL=None, REDIS_URL=None, CELERY_BROKER_URL=None, EMAIL_URL=None, FIELD_ENCRYPTION_KEY=None)
    assert result.returncode != 0
    for piece in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMAIL_URL", "FIELD_ENCRYPTION_KEY"):
        assert piece in result.stderr, piece


def test_a_provider_backend_or_an_older_field_key_in_the_list_is_accepted():
    provider = _boot(EMAIL_URL=None, EMAIL_BACKEND="anymail.backends.postmark.EmailBackend")
    assert provider.returncode == 0, provider.stderr
    # The old key after the new one, during a rotation (even a key that was derived from SECRET_KEY).
    rotating = _boot(FIELD_ENCRYPTION_KEY=f"{GOOD['FIELD_ENCRYPTION_KEY']}-new,{GOOD['SECRET_KEY']}")
    assert rotating.returncode == 0, rotating.stderr


_PRINT_SETTINGS = "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG)"
ENTRY_POINTS = {
    "wsgi": f"import config.wsgi; {_PRINT_SETTINGS}",
    "asgi": f"import config.asgi; {_PRINT_SETTINGS}",
    "celery": f"from config.celery import app; app.loader.import_default_modules(); {_PRINT_SETTINGS}",
}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_entry_points_default_to_production_settings(entry_point):
    script = ENTRY_POINTS[entry_point]
    env = _environment({}, None)
    good = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["config.settings.production", "False"]
    unsafe = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_environment({"DATABASE_URL": None, "SECRET_KEY": None}, None),
                            capture_output=True, text=True, timeout=60)
    assert unsafe.returncode != 0
    assert "Refusing to start in production" in unsafe.stderr and "DATABASE_URL" in unsafe.stderr


def test_the_run_and_test_scripts_choose_their_settings():
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert "DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}" in run
    assert "export DJANGO_SETTINGS_MODULE=config.settings.test" in (ROOT / "scripts" / "test.sh").read_text()


def test_debug_off_outside_production_keeps_the_sandbox(settings):
    # The acceptance environment runs the ordinary settings with DEBUG off and the sandbox on.
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG, s.CHAIN_PROVIDER)"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "CHAIN_PROVIDER"}, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DEBUG": "0"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "sandbox"]
