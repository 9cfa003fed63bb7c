"""Secrets at rest and keyed lookups.

`encrypt_secret`/`decrypt_secret` wrap Fernet (AES-128-CBC + HMAC-SHA256, authenticated) with
keys derived by HKDF-SHA256 from `settings.FIELD_ENCRYPTION_KEYS`, newest first (MultiFernet):
the first encrypts, every one decrypts, so a new key can be put in front of the old ones and the
stored secrets re-encrypted at leisure (`manage.py rotate_field_keys`) before the old key is
dropped. Local runs with no field key fall back to `SECRET_KEY`; production refuses to start
without a field key of its own, so rotating `SECRET_KEY` never touches stored secrets.
`lookup_hash` is an HMAC-SHA256 under a second key derived from the first field key: API keys are
found by it (`lookup_hashes` gives one per configured key, so a key stays findable until its row
is rotated), and the database never holds a secret in a form that can be used or reversed
without the key.
"""

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretDecryptionError(Exception):
    """The ciphertext was not made with the configured key (or was tampered with)."""


def _master_keys() -> list[bytes]:
    keys = [key for key in getattr(settings, "FIELD_ENCRYPTION_KEYS", None) or [] if key]
    return [key.encode() for key in keys] or [settings.SECRET_KEY.encode()]


@lru_cache(maxsize=8)
def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"coffer-field-keys", info=purpose).derive(master)


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(base64.urlsafe_b64encode(_derive(master, b"fernet-encryption-v1"))) for master in _master_keys()])


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("cannot decrypt a stored secret with the configured key") from exc


def rotate_secret(token: str) -> str:
    """`token` re-encrypted under the first (current) field key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("cannot decrypt a stored secret with any configured key") from exc


def _lookup_hash(master: bytes, value: str) -> str:
    return hmac.new(_derive(master, b"lookup-hmac-v1"), value.encode(), hashlib.sha256).hexdigest()


def lookup_hash(value: str) -> str:
    """The keyed hash to store, under the current field key."""
    return _lookup_hash(_master_keys()[0], value)


def lookup_hashes(value: str) -> list[str]:
    """The keyed hashes to look a value up by: one per configured field key, the current first."""
    return [_lookup_hash(master, value) for master in _master_keys()]
