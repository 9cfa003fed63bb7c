"""Secrets at rest outlive key changes (issue 12 item 1): field keys are a list (the first encrypts,
all decrypt), `rotate_field_keys` re-encrypts every stored secret under the first, and rotating
SECRET_KEY leaves them readable when a field key is set."""

import io
from datetime import timedelta

import pyotp
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.crypto import SecretDecryptionError, decrypt_secret, encrypt_secret
from accounts.identity.email_codes import email_otp_send
from accounts.identity.totp import totp_confirm, totp_enrol
from accounts.identity.twofactor import EMAIL_CODE_TOPIC
from accounts.models import ApiKey, TotpDevice, WebhookEndpoint
from accounts.webhooks.services import webhook_endpoint_create
from core.models import OutboxMessage
from tests.factories.orgs import make_org_key
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

OLD = "old-field-key-0123456789abcdefghijklmnopqrstuvwxyz"
NEW = "new-field-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _authenticates(secret: str) -> bool:
    response = APIClient().get("/api/v1/customers", HTTP_X_API_KEY=secret)
    assert response.status_code in (200, 401), response.content
    return response.status_code == 200


def _token(secret: str, key_id: str) -> int:
    return APIClient().post("/api/v1/auth/token", {"grant_type": "client_credentials", "client_id": key_id, "client_secret": secret}).status_code


@pytest.fixture
def stored(settings):
    """An API key, a webhook endpoint, a confirmed authenticator and a pending e-mail code, all
    written under OLD."""
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    org = make_org_key("Keys")
    endpoint, webhook_secret = webhook_endpoint_create(organization=org.organization, url="https://127.0.0.1:9/in", events=["*"])
    user = UserFactory()
    now = timezone.now()
    enrolment = totp_enrol(user=user, now=now - timedelta(minutes=5))
    totp_confirm(user=user, code=pyotp.TOTP(enrolment.secret).at(now - timedelta(minutes=5)), now=now - timedelta(minutes=5))
    email_otp_send(user=user)
    return {"org": org, "endpoint": endpoint, "webhook_secret": webhook_secret, "totp_secret": enrolment.secret}


def _readable(stored) -> bool:
    try:
        endpoint = WebhookEndpoint.objects.get(pk=stored["endpoint"].pk)
        device = TotpDevice.objects.get(user__isnull=False, secret_encrypted__gt="")
        message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC)
        return (
            decrypt_secret(endpoint.secret_encrypted) == stored["webhook_secret"]
            and decrypt_secret(device.secret_encrypted) == stored["totp_secret"]
            and decrypt_secret(ApiKey.objects.get(pk=stored["org"].api_key.pk).secret_encrypted) == stored["org"].secret
            and len(decrypt_secret(message.payload["code"])) == 6
        )
    except SecretDecryptionError:
        return False


def test_a_new_key_in_front_keeps_old_secrets_working_and_rotation_moves_them_to_it(settings, stored):
    org = stored["org"]
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]  # step 1: the new key in front
    assert _readable(stored)
    assert _authenticates(org.secret) and _token(org.secret, org.key_id) == 200  # found by its OLD lookup hash
    assert encrypt_secret("fresh") != "" and decrypt_secret(encrypt_secret("fresh")) == "fresh"

    out = io.StringIO()
    call_command("rotate_field_keys", stdout=out)  # step 2
    assert "accounts.ApiKey: 1 re-encrypted" in out.getvalue()
    assert "accounts.WebhookEndpoint: 1 re-encrypted" in out.getvalue()
    assert "accounts.TotpDevice: 1 re-encrypted" in out.getvalue()
    assert "e-mail codes): 1 re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # step 3: the old key dropped
    assert _readable(stored)
    assert _authenticates(org.secret) and _token(org.secret, org.key_id) == 200

    settings.FIELD_ENCRYPTION_KEYS = [OLD]  # and nothing is left under the old key
    assert not _readable(stored)
    assert not _authenticates(org.secret)


def test_without_rotation_dropping_the_old_key_makes_secrets_unreadable_and_the_command_names_them(settings, stored):
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert not _readable(stored)
    with pytest.raises(CommandError, match=r"cannot be decrypted with any configured key: .*accounts.ApiKey #"):
        call_command("rotate_field_keys", stdout=io.StringIO())


def test_rotating_secret_key_leaves_stored_secrets_readable(settings, stored):
    org = stored["org"]
    settings.SECRET_KEY = "a-completely-different-secret-key-after-rotation-0123456789"
    assert _readable(stored)
    assert _authenticates(org.secret)


def test_rotation_twice_is_harmless(settings, stored):
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_field_keys", stdout=io.StringIO())
    call_command("rotate_field_keys", stdout=io.StringIO())
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert _readable(stored) and _authenticates(stored["org"].secret)


def test_an_emailed_code_sent_before_a_new_key_was_put_in_front_still_verifies(settings, stored):
    from accounts.identity.twofactor import twofactor_verify

    user = TotpDevice.objects.get(secret_encrypted__gt="").user
    message = OutboxMessage.objects.get(topic=EMAIL_CODE_TOPIC)
    code = decrypt_secret(message.payload["code"])  # sent under OLD
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]  # the rotation's first step, while the code is live
    assert twofactor_verify(user=user, code=code).ok
