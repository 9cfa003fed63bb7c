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
}


def _boot(**overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env.update(GOOD)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('booted')"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


def test_a_safe_configuration_boots():
    result = _boot()
    assert result.returncode == 0, result.stderr
    assert "booted" in result.stdout


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
        ({"AUDIT_CHAIN_KEY": None}, "AUDIT_CHAIN_KEY is missing"),
        ({"AUDIT_CHAIN_KEY": "short"}, "AUDIT_CHAIN_KEY is missing or shorter than 32"),
    ],
)
def test_an_unsafe_configuration_refuses_to_start(overrides, reason):
    result = _boot(**overrides)
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr
    assert reason in result.stderr


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
