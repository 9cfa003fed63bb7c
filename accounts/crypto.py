"""Secrets at rest and keyed lookups.

`encrypt_secret`/`decrypt_secret` wrap Fernet (AES-128-CBC + HMAC-SHA256, authenticated) with a
key derived by HKDF-SHA256 from `settings.FIELD_ENCRYPTION_KEY`, or from `SECRET_KEY` when that is
empty (local runs). `lookup_hash` is an HMAC-SHA256 under a second derived key: API keys are
found by it, so the database never holds a secret in a form that can be used or reversed
without the key.
"""

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretDecryptionError(Exception):
    """The ciphertext was not made with the configured key (or was tampered with)."""


def _master_key() -> bytes:
    return (settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY).encode()


@lru_cache(maxsize=8)
def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"coffer-field-keys", info=purpose).derive(master)


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(_master_key(), b"fernet-encryption-v1")))


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("cannot decrypt a stored secret with the configured key") from exc


def lookup_hash(value: str) -> str:
    key = _derive(_master_key(), b"lookup-hmac-v1")
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
