"""The four ways an organization authenticates, each refusing wrong, stale, replayed, revoked and
malformed credentials with 401 AUTHENTICATION_FAILED, and every failure audited."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiKey
from accounts.orgs.services import api_key_revoke
from tests.factories.accounts import DEFAULT_PASSWORD, MembershipFactory, UserFactory
from tests.factories.orgs import basic, compat_header, hmac_header, json_body

pytestmark = pytest.mark.django_db
CUSTOMERS = "/api/v1/customers"


def assert_401(response):
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"


def failures() -> int:
    """Failures audited so far: they are counted per key and minute in the cache, and written as
    one event with a count once the minute is over (here: flushed as if it were)."""
    from compliance.models import AuditEvent
    from compliance.audit import audit_counts_flush

    audit_counts_flush(now=time.time() + 120)
    return sum(data["count"] for data in AuditEvent.objects.filter(action="api_key.auth_failed").values_list("data", flat=True))


# --- X-API-Key --------------------------------------------------------------------------------------


def test_api_key_header_authenticates_and_records_use(org):
    assert org.api_key.last_used_at is None
    response = APIClient().get(CUSTOMERS, HTTP_X_API_KEY=org.secret)
    assert response.status_code == 200
    org.api_key.refresh_from_db()
    assert org.api_key.last_used_at is not None
    first_use = org.api_key.last_used_at
    APIClient().get(CUSTOMERS, HTTP_X_API_KEY=org.secret)
    org.api_key.refresh_from_db()
    assert org.api_key.last_used_at == first_use  # at most one write a minute
    ApiKey.objects.filter(pk=org.api_key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    APIClient().get(CUSTOMERS, HTTP_X_API_KEY=org.secret)
    org.api_key.refresh_from_db()
    assert timezone.now() - org.api_key.last_used_at < timedelta(seconds=30)


@pytest.mark.parametrize("presented", ["sk_wrong", "", "not-a-key", "sk_" + "a" * 500])
def test_api_key_header_wrong_secret(org, presented):
    before = failures()
    assert_401(APIClient().get(CUSTOMERS, HTTP_X_API_KEY=presented))
    assert failures() == before + 1


def test_api_key_secret_is_not_stored_in_plain_text(org):
    row = ApiKey.objects.filter(pk=org.api_key.pk).values().get()
    assert all(org.secret not in str(value) for value in row.values())


def test_api_key_header_revoked(org):
    api_key_revoke(organization=org.organization, key_id=org.key_id, actor=org.owner)
    response = APIClient().get(CUSTOMERS, HTTP_X_API_KEY=org.secret)
    assert_401(response)
    assert "revoked" in response.json()["error"]["message"]


def test_no_credentials_is_401(db):
    assert_401(APIClient().get(CUSTOMERS))


# --- Compatibility signature -----------------------------------------------------------------------


def test_compat_signature_success(org):
    response = APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=compat_header(org.key_id, org.secret))
    assert response.status_code == 200


def test_compat_signature_wrong_secret(org):
    before = failures()
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=compat_header(org.key_id, org.secret + "x")))
    assert failures() == before + 1


@pytest.mark.parametrize("offset", [-301, 305, -3600, 86400])  # +305: slack for a loaded box (the server reads its clock later)
def test_compat_signature_timestamp_outside_window(org, offset):
    header = compat_header(org.key_id, org.secret, timestamp=int(time.time()) + offset)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


def test_compat_signature_inside_window(org):
    header = compat_header(org.key_id, org.secret, timestamp=int(time.time()) - 250)
    assert APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header).status_code == 200


def test_compat_signature_revoked(org):
    api_key_revoke(organization=org.organization, key_id=org.key_id, actor=org.owner)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=compat_header(org.key_id, org.secret)))


@pytest.mark.parametrize(
    "header",
    [
        "APIKey=",
        "APIKey=key_x,signature=abc",
        "APIKey=key_x,signature=abc,timestamp=notanumber",
        "APIKey=key_x,signature,timestamp=1",
        "APIKey=key_x,APIKey=key_y,signature=a,timestamp=1",
    ],
)
def test_compat_signature_malformed(org, header):
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


def test_compat_signature_unknown_key(org):
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=compat_header("key_nope", org.secret)))


def test_compat_signature_bad_timestamp_format(org):
    header = compat_header(org.key_id, org.secret).replace("timestamp=", "timestamp=x")
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


# --- Coffer-HMAC-SHA256 ----------------------------------------------------------------------------


def test_hmac_signature_get_with_query(org):
    header = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, query="kyc_level=basic&limit=5")
    response = APIClient().get(CUSTOMERS + "?kyc_level=basic&limit=5", HTTP_AUTHORIZATION=header)
    assert response.status_code == 200, response.content


def test_hmac_signature_put_with_body(org):
    body = json_body({"name": "Ada"})
    path = CUSTOMERS + "/ada-1"
    header = hmac_header(org.key_id, org.secret, method="PUT", path=path, body=body)
    response = APIClient().put(path, body, content_type="application/json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 201, response.content


def test_hmac_signature_covers_body_method_path_and_query(org):
    body = json_body({"name": "Ada"})
    path = CUSTOMERS + "/ada-1"
    signed = hmac_header(org.key_id, org.secret, method="PUT", path=path, body=body)
    tampered_body = APIClient().put(path, json_body({"name": "Eve"}), content_type="application/json", HTTP_AUTHORIZATION=signed)
    assert_401(tampered_body)
    signed = hmac_header(org.key_id, org.secret, method="PUT", path=path, body=body)
    other_path = APIClient().put(CUSTOMERS + "/eve-1", body, content_type="application/json", HTTP_AUTHORIZATION=signed)
    assert_401(other_path)
    signed = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, query="kyc_level=basic")
    assert_401(APIClient().get(CUSTOMERS + "?kyc_level=enhanced", HTTP_AUTHORIZATION=signed))
    signed = hmac_header(org.key_id, org.secret, method="GET", path=path)
    assert_401(APIClient().put(path, b"", content_type="application/json", HTTP_AUTHORIZATION=signed))


def test_hmac_signature_wrong_secret(org):
    before = failures()
    header = hmac_header(org.key_id, org.secret + "x", method="GET", path=CUSTOMERS)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))
    assert failures() == before + 1


@pytest.mark.parametrize("offset", [-301, 330, -7200])  # ahead: slack for the seconds the request takes to be checked
def test_hmac_signature_timestamp_outside_window(org, offset):
    header = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, timestamp=int(time.time()) + offset)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


def test_hmac_signature_replayed_nonce_refused(org):
    header = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, nonce="nonce-0001-abcdef")
    assert APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header).status_code == 200
    replay = APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header)
    assert_401(replay)
    assert "nonce" in replay.json()["error"]["message"]
    # a fresh signature with the same nonce (new timestamp) is a replay too
    again = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, nonce="nonce-0001-abcdef", timestamp=int(time.time()) + 1)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=again))
    assert failures() == 2


def test_hmac_badly_signed_request_does_not_burn_the_nonce(org):
    bad = hmac_header(org.key_id, "sk_not-the-secret", method="GET", path=CUSTOMERS, nonce="nonce-burn-test-1")
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=bad))
    good = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS, nonce="nonce-burn-test-1")
    assert APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=good).status_code == 200


def test_hmac_signature_revoked(org):
    api_key_revoke(organization=org.organization, key_id=org.key_id, actor=org.owner)
    header = hmac_header(org.key_id, org.secret, method="GET", path=CUSTOMERS)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


@pytest.mark.parametrize(
    "header",
    [
        "Coffer-HMAC-SHA256",
        "Coffer-HMAC-SHA256 KeyId=a,Timestamp=1",
        "Coffer-HMAC-SHA256 KeyId=a,Timestamp=1,Nonce=short,Signature=00",
        "Coffer-HMAC-SHA256 KeyId=a,Timestamp=1,Nonce=has spaces in it,Signature=00",
        "Coffer-HMAC-SHA256 garbage",
    ],
)
def test_hmac_signature_malformed(org, header):
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=header))


# --- OAuth2 client credentials ---------------------------------------------------------------------

TOKEN = "/api/v1/auth/token"


@pytest.mark.parametrize("style", ["form", "json", "basic"])
def test_client_credentials_success(org, style):
    client = APIClient()
    if style == "form":
        response = client.post(TOKEN, {"grant_type": "client_credentials", "client_id": org.key_id, "client_secret": org.secret})
    elif style == "json":
        response = client.post(TOKEN, {"grant_type": "client_credentials", "client_id": org.key_id, "client_secret": org.secret}, format="json")
    else:
        response = client.post(TOKEN, {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(org.key_id, org.secret))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    token = AccessToken(body["access_token"])
    assert token["org_id"] == org.organization.pk and token["key_id"] == org.key_id and token["token_use"] == "org"
    listed = APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert listed.status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        {"client_id": "KEY", "client_secret": "sk_wrong"},
        {"client_id": "key_unknown", "client_secret": "SECRET"},
    ],
)
def test_client_credentials_wrong_credentials(org, data):
    data = {k: v.replace("KEY", org.key_id).replace("SECRET", org.secret) for k, v in data.items()}
    before = failures()
    response = APIClient().post(TOKEN, {"grant_type": "client_credentials", **data}, format="json")
    assert_401(response)
    assert failures() == before + 1


def test_client_credentials_wrong_basic(org):
    assert_401(APIClient().post(TOKEN, {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(org.key_id, "sk_nope")))


def test_client_credentials_missing_fields_is_400(org):
    response = APIClient().post(TOKEN, {"grant_type": "client_credentials", "client_id": org.key_id}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_client_credentials_revoked_key(org):
    api_key_revoke(organization=org.organization, key_id=org.key_id, actor=org.owner)
    response = APIClient().post(TOKEN, {"grant_type": "client_credentials", "client_id": org.key_id, "client_secret": org.secret}, format="json")
    assert_401(response)


def test_org_token_dies_with_its_key(org):
    response = APIClient().post(TOKEN, {"grant_type": "client_credentials", "client_id": org.key_id, "client_secret": org.secret}, format="json")
    token = response.json()["access_token"]
    api_key_revoke(organization=org.organization, key_id=org.key_id, actor=org.owner)
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_expired_org_token(org):
    from accounts.orgs.authentication import org_access_token

    token = org_access_token(api_key=org.api_key)
    token.set_exp(lifetime=timedelta(seconds=-1))
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_org_token_is_not_a_user_token(org):
    """An organization's token never authenticates as a user: user-only views see no User."""
    from rest_framework.views import APIView
    from rest_framework.test import APIRequestFactory
    from accounts.orgs.tenancy import IsUser
    from rest_framework.response import Response

    class WhoAmI(APIView):
        permission_classes = [IsUser]

        def get(self, request):
            return Response({"email": request.user.email})

    from accounts.orgs.authentication import org_access_token

    token = org_access_token(api_key=org.api_key)
    request = APIRequestFactory().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {token}")
    response = WhoAmI.as_view()(request)
    assert response.status_code in (401, 403)
    user_token = APIClient().post(TOKEN, {"username": org.owner.email, "password": DEFAULT_PASSWORD}, format="json").json()["access_token"]
    request = APIRequestFactory().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {user_token}")
    assert WhoAmI.as_view()(request).data == {"email": org.owner.email}


def test_user_token_is_not_an_org_token(org, other_org):
    """A user's JWT is not an organization credential: a stranger is refused; a member acts only
    for their own organization and only with a role that allows it."""
    stranger = UserFactory()
    token = APIClient().post(TOKEN, {"username": stranger.email, "password": DEFAULT_PASSWORD}, format="json").json()["access_token"]
    response = APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    # forged: a user token claiming token_use=org without a key is still refused
    forged = AccessToken.for_user(stranger)
    forged["token_use"] = "org"
    forged["org_id"] = org.organization.pk
    forged["key_id"] = "key_forged"
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {forged}"))
    # and a token naming another organization's key is refused
    forged2 = AccessToken()
    forged2["token_use"] = "org"
    forged2["org_id"] = other_org.organization.pk
    forged2["key_id"] = org.key_id
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION=f"Bearer {forged2}"))


def test_member_user_acts_for_their_organization(org, other_org):
    viewer = UserFactory()
    MembershipFactory(organization=org.organization, user=viewer, role="viewer")
    token = APIClient().post(TOKEN, {"username": viewer.email, "password": DEFAULT_PASSWORD}, format="json").json()["access_token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(CUSTOMERS).status_code == 200
    assert client.put(CUSTOMERS + "/c1", {"name": "x"}, format="json").status_code == 403  # viewers read only
    assert client.get(CUSTOMERS, HTTP_X_ORGANIZATION=other_org.organization.slug).status_code == 403
    assert client.get(CUSTOMERS, HTTP_X_ORGANIZATION=str(org.organization.pk)).status_code == 200


def test_invalid_bearer_token(org):
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION="Bearer not.a.jwt"))
    assert_401(APIClient().get(CUSTOMERS, HTTP_AUTHORIZATION="Bearer a b"))
