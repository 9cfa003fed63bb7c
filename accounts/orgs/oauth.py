"""OAuth2 `grant_type=client_credentials` for organizations (SPEC 5/6, `POST /api/v1/auth/token`).

client_id = an API key's id, client_secret = its secret, sent in the form/JSON body or as HTTP
Basic (`Authorization: Basic base64(client_id:client_secret)`, RFC 6749 2.3.1). The answer is a
short-lived bearer JWT with claims `org_id`, `key_id`, `token_use=org`, which only
`accounts.orgs.authentication.OrganizationTokenAuthentication` accepts; revoking the key makes it
useless at once. Plugged into the token endpoint by `token_grant_register` (AccountsConfig.ready).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from accounts.crypto import lookup_hashes
from accounts.models import ApiKey
from accounts.orgs.authentication import org_access_token, org_token_lifetime_seconds
from accounts.orgs.services import api_key_auth_failed, api_key_mark_used
from core.errors import AuthenticationFailed, ValidationFailed

GRANT_TYPE = "client_credentials"
SCHEME = "oauth_client_credentials"
BASIC_CREDENTIALS_FIELD = "_basic_client_credentials"


def with_basic_client_credentials(request, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The token request's data, plus HTTP Basic client credentials when the header carries
    them (the token view passes its data through this)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return data
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, sep, client_secret = decoded.partition(":")
    merged = {k: data.get(k) for k in data} if hasattr(data, "keys") else {}
    merged[BASIC_CREDENTIALS_FIELD] = (unquote_plus(client_id), unquote_plus(client_secret)) if sep else ("", "")
    return merged


def client_credentials_grant(*, data: Mapping[str, Any], client_ip: str = "") -> dict[str, Any]:
    basic = data.get(BASIC_CREDENTIALS_FIELD)
    body_id, body_secret = data.get("client_id"), data.get("client_secret")
    if basic is not None and (body_id or body_secret):
        raise ValidationFailed("Send client credentials either in the body or as HTTP Basic, not both.",
                               details={"error": "invalid_request"})
    client_id, client_secret = basic if basic is not None else (body_id, body_secret)
    if not isinstance(client_id, str) or not isinstance(client_secret, str) or not client_id or not client_secret:
        missing = {name: ["This field is required."] for name, v in (("client_id", client_id), ("client_secret", client_secret)) if not isinstance(v, str) or not v}
        raise ValidationFailed("client_id and client_secret are required.", details={"fields": missing, "error": "invalid_request"})

    api_key = ApiKey.objects.select_related("organization").filter(key_id=client_id[:64]).first()
    presented = lookup_hashes(client_secret)  # one per field key: a key not yet rotated still matches
    if api_key is None or not any(hmac.compare_digest(candidate, api_key.secret_hash) for candidate in presented):
        api_key_auth_failed(scheme=SCHEME, reason="bad client credentials", key_id=client_id, api_key=api_key, client_ip=client_ip)
        raise AuthenticationFailed("Invalid client credentials.", details={"error": "invalid_client"})
    if api_key.revoked_at is not None:
        api_key_auth_failed(scheme=SCHEME, reason="revoked key", key_id=client_id, api_key=api_key, client_ip=client_ip)
        raise AuthenticationFailed("This API key has been revoked.", details={"error": "invalid_client"})
    api_key_mark_used(api_key=api_key)
    return {
        "access_token": str(org_access_token(api_key=api_key)),
        "token_type": "bearer",
        "expires_in": org_token_lifetime_seconds(),
    }
