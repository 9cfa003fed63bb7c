"""Re-encrypting secrets at rest under the current field key (`manage.py rotate_field_keys`).

Rotation, with no downtime: put a new key in front, `FIELD_ENCRYPTION_KEY=new,old`, and restart
(new secrets are encrypted under `new`; `old` still decrypts, and an API key is still found by its
`old` lookup hash); run `rotate_field_keys`, which re-encrypts every stored secret under `new` and
recomputes the API keys' lookup hashes; then drop `old`. The command is safe to run twice or
while the platform serves requests: each row is rewritten under its row lock, in small batches.

What is encrypted (accounts.crypto): API-key secrets (with their keyed lookup hash), webhook
endpoint secrets, authenticator (TOTP) secrets confirmed or pending, payout and scheduled-withdrawal
beneficiaries (name and IBAN/account, with their keyed hashes: wallets.beneficiaries), and the e-mail codes still
waiting in the outbox. An e-mail code's own hash is not rotated: it lives ten minutes, and it is
checked under every configured key meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import transaction
from django.utils.module_loading import import_string

from accounts.crypto import SecretDecryptionError, decrypt_secret, lookup_hash, rotate_secret
from accounts.identity.twofactor import EMAIL_CODE_TOPIC
from core.models import OutboxMessage

BATCH = 200


@dataclass(frozen=True)
class EncryptedColumns:
    model: str  # app_label.ModelName
    fields: tuple[str, ...]
    lookup_hash_of: dict[str, str] | None = None  # hash field -> the encrypted field it hashes
    # dotted path of a function(plain values by encrypted field) -> {hash field: new hash}
    rehash: str = ""


ENCRYPTED = (
    EncryptedColumns("accounts.ApiKey", ("secret_encrypted",), {"secret_hash": "secret_encrypted"}),
    EncryptedColumns("accounts.WebhookEndpoint", ("secret_encrypted",)),
    EncryptedColumns("accounts.TotpDevice", ("secret_encrypted", "pending_secret_encrypted")),
    EncryptedColumns("wallets.Payout", ("beneficiary_name_encrypted", "destination_encrypted"),
                     rehash="wallets.beneficiaries.beneficiary_rehashed_fields"),
    EncryptedColumns("wallets.Schedule", ("beneficiary_name_encrypted", "destination_encrypted"),
                     rehash="wallets.beneficiaries.beneficiary_rehashed_fields"),
)


@dataclass
class RotationReport:
    rotated: dict[str, int]
    unreadable: list[str]  # "model #pk field": not decryptable with any configured key


def _rotate_rows(columns: EncryptedColumns, report: RotationReport) -> None:
    model = apps.get_model(columns.model)
    rehash = import_string(columns.rehash) if columns.rehash else None
    pks = list(model.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), BATCH):
        with transaction.atomic():
            for row in model.objects.select_for_update().filter(pk__in=pks[start:start + BATCH]).order_by("pk"):
                changes: dict[str, str] = {}
                for field in columns.fields:
                    value = getattr(row, field)
                    if not value:
                        continue
                    try:
                        changes[field] = rotate_secret(value)
                    except SecretDecryptionError:
                        report.unreadable.append(f"{columns.model} #{row.pk} {field}")
                for hash_field, source in (columns.lookup_hash_of or {}).items():
                    if source in changes:
                        changes[hash_field] = lookup_hash(decrypt_secret(changes[source]))
                if rehash is not None and changes:
                    changes.update(rehash({field: decrypt_secret(value) for field, value in changes.items() if field in columns.fields}))
                if changes:
                    model.objects.filter(pk=row.pk).update(**changes)
                    report.rotated[columns.model] = report.rotated.get(columns.model, 0) + 1


def _rotate_pending_email_codes(report: RotationReport) -> None:
    label = "core.OutboxMessage (e-mail codes)"
    with transaction.atomic():
        pending = OutboxMessage.objects.select_for_update().filter(topic=EMAIL_CODE_TOPIC).exclude(status=OutboxMessage.Status.DONE)
        for message in pending.order_by("pk"):
            code = message.payload.get("code")
            if not code:
                continue
            try:
                payload = {**message.payload, "code": rotate_secret(code)}
            except SecretDecryptionError:
                report.unreadable.append(f"{label} #{message.pk} code")
                continue
            OutboxMessage.objects.filter(pk=message.pk, created_at=message.created_at).update(payload=payload)
            report.rotated[label] = report.rotated.get(label, 0) + 1


def field_keys_rotate() -> RotationReport:
    """Re-encrypt every stored secret under the first configured field key."""
    report = RotationReport(rotated={}, unreadable=[])
    for columns in ENCRYPTED:
        _rotate_rows(columns, report)
    _rotate_pending_email_codes(report)
    return report
