"""How an organization authenticates (SPEC 5), as DRF authentication classes.

Each class returns None for a request that does not use its scheme (the next one tries) and
raises AuthenticationFailed (401) when it does with bad credentials; every failure is counted
for the audit chain. A key without the scope the request needs is a 403 (accounts.orgs.scopes).
On success `request.user` is an `OrganizationPrincipal`, `request.organization` its organization.

- `X-API-Key: sk_...` (the secret itself; looked up by its keyed hash);
- `Authorization: APIKey=<key_id>,signature=<hex SHA512(key_id + secret + timestamp)>,timestamp=<s>` (+-300 s);
- `Authorization: Coffer-HMAC-SHA256 KeyId=..,Timestamp=..,Nonce=..,Signature=<hex HMAC-SHA256(secret,
  "METHOD\\npath\\nquery\\ntimestamp\\nnonce\\nhex(sha256(body))")>` (+-300 s; a nonce once per key);
- `Authorization: Bearer <jwt>` from `grant_type=client_credentials` (claims org_id, key_id,
  token_use=org); user JWTs (accounts.identity.authentication) are not interchangeable with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http.request import RawPostDataException
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.crypto import SecretDecryptionError, decrypt_secret, lookup_hashes
from accounts.identity.authentication import ORG_TOKEN_USE
from accounts.identity.throttles import client_address
from accounts.models import ApiKey, Organization
from accounts.orgs.scopes import SCOPES, scope_check
from accounts.orgs.selectors import api_key_by_hashes
from accounts.orgs.services import api_key_auth_failed, api_key_mark_used

TIMESTAMP_TOLERANCE_SECONDS = 300
NONCE_TTL_SECONDS = 2 * TIMESTAMP_TOLERANCE_SECONDS  # covers the whole window a timestamp is valid in
HMAC_SCHEME = "Coffer-HMAC-SHA256"
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")


@dataclass(eq=False)
class OrganizationPrincipal:
    """`request.user` for a request authenticated as an organization (by one of its keys)."""

    organization: Organization
    api_key: ApiKey
    scheme: str

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None

    def __str__(self) -> str:
        return f"{self.organization} ({self.api_key.key_id})"

    def has_perm(self, perm, obj=None) -> bool:
        return False


def _client_ip(request) -> str:
    return client_address(request)


def _fail(request, scheme: str, reason: str, *, key_id: str = "", api_key: ApiKey | None = None, message: str | None = None):
    api_key_auth_failed(scheme=scheme, reason=reason, key_id=key_id, api_key=api_key, client_ip=_client_ip(request))
    return exceptions.AuthenticationFailed(message or "Invalid API credentials.")


def _active_key_by_id(request, scheme: str, key_id: str) -> ApiKey:
    api_key = ApiKey.objects.select_related("organization").filter(key_id=key_id).first()
    if api_key is None:
        raise _fail(request, scheme, "unknown key id", key_id=key_id)
    if api_key.revoked_at is not None:
        raise _fail(request, scheme, "revoked key", key_id=key_id, api_key=api_key, message="This API key has been revoked.")
    return api_key


def _secret_of(request, scheme: str, api_key: ApiKey) -> str:
    try:
        return decrypt_secret(api_key.secret_encrypted)
    except SecretDecryptionError:
        raise _fail(request, scheme, "stored secret unreadable", key_id=api_key.key_id, api_key=api_key) from None


def _check_timestamp(request, scheme: str, raw: str, api_key: ApiKey) -> int:
    try:
        timestamp = int(raw)
    except (TypeError, ValueError):
        raise _fail(request, scheme, "malformed timestamp", key_id=api_key.key_id, api_key=api_key, message="The timestamp must be unix seconds.") from None
    if abs(time.time() - timestamp) > TIMESTAMP_TOLERANCE_SECONDS:
        raise _fail(request, scheme, "timestamp outside window", key_id=api_key.key_id, api_key=api_key,
                    message=f"The timestamp is more than {TIMESTAMP_TOLERANCE_SECONDS} seconds away from the server's clock.")
    return timestamp


def _parse_params(value: str) -> dict[str, str]:
    """`a=1,b=2` -> {"a": "1", "b": "2"}; a part without `=` or a repeated name is malformed."""
    params: dict[str, str] = {}
    for part in value.split(","):
        name, sep, val = part.strip().partition("=")
        if not sep or not name or name in params:
            raise ValueError(part)
        params[name] = val.strip()
    return params


def _authenticated(request, api_key: ApiKey, scheme: str):
    scope_check(request, api_key)  # 403 before anything else: the key's scopes (accounts.orgs.scopes)
    api_key_mark_used(api_key=api_key)
    principal = OrganizationPrincipal(organization=api_key.organization, api_key=api_key, scheme=scheme)
    request.organization = api_key.organization
    request._request.organization = api_key.organization
    return principal, api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`X-API-Key: <secret>`."""

    scheme = "api_key"

    def authenticate(self, request):
        secret = request.META.get("HTTP_X_API_KEY")
        if secret is None:
            return None
        secret = secret.strip()
        api_key = None
        if secret.startswith("sk_") and len(secret) <= 200:
            api_key = api_key_by_hashes(lookup_hashes(secret))
        if api_key is None:
            raise _fail(request, self.scheme, "unknown secret")
        if api_key.revoked_at is not None:
            raise _fail(request, self.scheme, "revoked key", key_id=api_key.key_id, api_key=api_key, message="This API key has been revoked.")
        return _authenticated(request, api_key, self.scheme)

    def authenticate_header(self, request):
        return "X-API-Key"


class ApiKeySignatureAuthentication(authentication.BaseAuthentication):
    """Compatibility: `Authorization: APIKey=<key_id>,signature=<hex SHA512(key_id + secret + timestamp)>,timestamp=<s>`."""

    scheme = "signature_sha512"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("APIKey="):
            return None
        try:
            params = _parse_params(header)
            key_id, signature, raw_ts = params["APIKey"], params["signature"], params["timestamp"]
        except (ValueError, KeyError):
            raise _fail(request, self.scheme, "malformed header", message="Malformed APIKey authorization header.") from None
        api_key = _active_key_by_id(request, self.scheme, key_id)
        _check_timestamp(request, self.scheme, raw_ts, api_key)
        secret = _secret_of(request, self.scheme, api_key)
        expected = hashlib.sha512((key_id + secret + raw_ts).encode()).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise _fail(request, self.scheme, "bad signature", key_id=key_id, api_key=api_key)
        return _authenticated(request, api_key, self.scheme)

    def authenticate_header(self, request):
        return "APIKey"


def hmac_string_to_sign(*, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest()])


class HmacSignatureAuthentication(authentication.BaseAuthentication):
    """`Authorization: Coffer-HMAC-SHA256 KeyId=..,Timestamp=..,Nonce=..,Signature=<hex>`."""

    scheme = "hmac_sha256"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        name, _, rest = header.partition(" ")
        if name != HMAC_SCHEME:
            return None
        try:
            params = _parse_params(rest)
            key_id, raw_ts, nonce, signature = params["KeyId"], params["Timestamp"], params["Nonce"], params["Signature"]
        except (ValueError, KeyError):
            raise _fail(request, self.scheme, "malformed header", message=f"Malformed {HMAC_SCHEME} authorization header.") from None
        if not _NONCE.match(nonce):
            raise _fail(request, self.scheme, "malformed nonce", key_id=key_id, message="The nonce must be 8-128 characters of [A-Za-z0-9_-].")
        api_key = _active_key_by_id(request, self.scheme, key_id)
        _check_timestamp(request, self.scheme, raw_ts, api_key)
        try:
            body = request._request.body
        except RawPostDataException:
            raise _fail(request, self.scheme, "body unavailable", key_id=key_id, api_key=api_key) from None
        to_sign = hmac_string_to_sign(
            method=request.method, path=request._request.path, query=request.META.get("QUERY_STRING", ""),
            timestamp=raw_ts, nonce=nonce, body=body,
        )
        secret = _secret_of(request, self.scheme, api_key)
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise _fail(request, self.scheme, "bad signature", key_id=key_id, api_key=api_key)
        # Only a correctly signed request spends its nonce, so nobody can burn another's nonces.
        if not cache.add(f"nonce:{key_id}:{nonce}", 1, NONCE_TTL_SECONDS):
            raise _fail(request, self.scheme, "replayed nonce", key_id=key_id, api_key=api_key, message="This nonce was already used.")
        return _authenticated(request, api_key, self.scheme)

    def authenticate_header(self, request):
        return HMAC_SCHEME


def _bearer_token(request) -> bytes | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    parts = header.split()
    if not parts or parts[0] != "Bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Authorization header must contain two space-delimited values.")
    return parts[1].encode()


def org_access_token(*, api_key: ApiKey) -> AccessToken:
    token = AccessToken()
    token["org_id"] = api_key.organization_id
    token["key_id"] = api_key.key_id
    token["token_use"] = ORG_TOKEN_USE
    return token


def org_token_lifetime_seconds() -> int:
    return int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds())


class OrganizationTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <jwt>` issued by the client_credentials grant. A user's token is not
    an organization token (and an organization token never authenticates a user)."""

    scheme = "oauth_client_credentials"

    def authenticate(self, request):
        raw = _bearer_token(request)
        if raw is None:
            return None
        try:
            token = AccessToken(raw)
        except TokenError:
            raise exceptions.AuthenticationFailed("The access token is invalid or expired.") from None
        if token.get("token_use") != ORG_TOKEN_USE:
            return None  # a user token: UserJWTAuthentication's business
        key_id = str(token.get("key_id", ""))
        api_key = _active_key_by_id(request, self.scheme, key_id)
        if api_key.organization_id != token.get("org_id"):
            raise _fail(request, self.scheme, "token organization mismatch", key_id=key_id, api_key=api_key)
        return _authenticated(request, api_key, self.scheme)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


# --- OpenAPI: how each scheme appears in the schema -------------------------------------------------
from drf_spectacular.extensions import OpenApiAuthenticationExtension  # noqa: E402


class _OrgTokenScheme(OpenApiAuthenticationExtension):
    target_class = OrganizationTokenAuthentication
    name = "organizationOAuth2"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": "grant_type=client_credentials with client_id=<key id>, client_secret=<secret>; use the token as `Authorization: Bearer <token>`.",
            "flows": {"clientCredentials": {"tokenUrl": "/api/v1/auth/token", "scopes": dict(SCOPES)}},
        }


class _ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The API key's secret (sk_...)."}


class _SignatureScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeySignatureAuthentication
    name = "apiKeySignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "APIKey=<key id>,signature=<hex SHA512(key id + secret + timestamp)>,timestamp=<unix seconds> (+-300 s).",
        }


class _HmacScheme(OpenApiAuthenticationExtension):
    target_class = HmacSignatureAuthentication
    name = "cofferHmac"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": (
                "Coffer-HMAC-SHA256 KeyId=<key id>,Timestamp=<unix s>,Nonce=<8-128 of [A-Za-z0-9_-], once>,Signature=<hex "
                "HMAC-SHA256(secret, METHOD\\npath\\nquery\\ntimestamp\\nnonce\\nhex SHA-256(body))> (+-300 s)."
            ),
        }
