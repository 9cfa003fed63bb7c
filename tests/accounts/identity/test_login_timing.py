"""Review 2: a locked account must cost the token endpoint the same password hashing as an
unknown address that "locked" after as many failures. Before, a locked real account answered
without hashing at all, while an unknown address still ran the hasher: the response time told
who has an account (the message and status were already the same)."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import override_settings

from accounts.identity.login import LOCKED_MESSAGE, login_lock_seconds
from accounts.models import User
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


class CountingHasher(MD5PasswordHasher):
    """Django's MD5 hasher, counting how often a password is hashed."""

    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)


HASHERS = override_settings(PASSWORD_HASHERS=[f"{__name__}.CountingHasher"], LOGIN_LOCK_THRESHOLD=3)


def _hashes_for(api_client, email: str) -> tuple[int, dict]:
    CountingHasher.calls = 0
    response = api_client.post("/api/v1/auth/token", {"username": email, "password": "wrong-guess"}, format="json")
    return CountingHasher.calls, response


@HASHERS
def test_a_locked_account_and_a_locked_unknown_address_hash_alike(api_client):
    user = UserFactory(email="real@example.com")
    for _ in range(3):
        _hashes_for(api_client, "real@example.com")
        _hashes_for(api_client, "nobody@example.com")
    assert User.objects.get(pk=user.pk).failed_login_count == 3
    # locked for this address (issue 12 item 7: the lock is per account and client address)
    assert login_lock_seconds(email="real@example.com", client_ip="127.0.0.1") > 0
    assert login_lock_seconds(email="nobody@example.com", client_ip="127.0.0.1") > 0

    real_calls, real = _hashes_for(api_client, "real@example.com")
    ghost_calls, ghost = _hashes_for(api_client, "nobody@example.com")
    assert (real.status_code, real.json()["error"]["message"]) == (401, LOCKED_MESSAGE)
    assert (ghost.status_code, ghost.json()["error"]["message"]) == (401, LOCKED_MESSAGE)
    assert ghost_calls >= 1
    assert real_calls == ghost_calls
