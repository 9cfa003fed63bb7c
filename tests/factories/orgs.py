"""Factories and fixtures for the accounts tests (`ApiKeyFactory`; organizations with keys, signed-request helpers, and a real
local HTTP receiver for webhooks that verifies signatures with the receiver-side library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import factory
import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import ApiKey
from accounts.orgs.authentication import hmac_string_to_sign
from accounts.orgs.scopes import ALL_SCOPES
from accounts.orgs.services import api_key_create
from config.celery import app as celery_app
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """An organization's API key made by `api_key_create` (every scope unless given `scopes`);
    its secret, shown once, is on `.secret`."""

    class Meta:
        model = ApiKey

    organization = factory.SubFactory(OrganizationFactory)
    name = "test"
    actor = None
    scopes = ALL_SCOPES

    @classmethod
    def _create(cls, model_class, **kwargs):
        api_key, secret = api_key_create(**kwargs)
        api_key.secret = secret
        return api_key


@dataclass
class OrgKey:
    organization: object
    api_key: object
    secret: str
    owner: object

    @property
    def key_id(self) -> str:
        return self.api_key.key_id


def make_org_key(name: str | None = None) -> OrgKey:
    organization = OrganizationFactory(**({"name": name, "slug": name.lower()} if name else {}))
    owner = UserFactory()
    MembershipFactory(organization=organization, user=owner, role="owner")
    api_key = ApiKeyFactory(organization=organization, actor=owner)  # every scope: owner-equivalent
    return OrgKey(organization, api_key, api_key.secret, owner)


@pytest.fixture
def org(db) -> OrgKey:
    return make_org_key("Alpha")


@pytest.fixture
def other_org(db) -> OrgKey:
    return make_org_key("Beta")


def key_client(org_key: OrgKey) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=org_key.secret)
    return client


@pytest.fixture
def client_a(org) -> APIClient:
    return key_client(org)


@pytest.fixture
def client_b(other_org) -> APIClient:
    return key_client(other_org)


def compat_header(key_id: str, secret: str, timestamp: int | None = None) -> str:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.sha512((key_id + secret + ts).encode()).hexdigest()
    return f"APIKey={key_id},signature={signature},timestamp={ts}"


def hmac_header(key_id: str, secret: str, *, method: str, path: str, query: str = "", body: bytes = b"",
                timestamp: int | None = None, nonce: str | None = None) -> str:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(16)
    to_sign = hmac_string_to_sign(method=method, path=path, query=query, timestamp=ts, nonce=nonce, body=body)
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"Coffer-HMAC-SHA256 KeyId={key_id},Timestamp={ts},Nonce={nonce},Signature={signature}"


def basic(client_id: str, client_secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


# --- A real webhook receiver ------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict
    body: bytes
    verified: bool
    payload: dict | None
    error: str = ""


@dataclass
class Receiver:
    url: str
    secret: str | None = None
    statuses: list[int] = field(default_factory=list)  # scripted answers, then 200
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver():
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            try:
                payload = Webhook(state.secret).verify(body, headers)
                record = Received(headers, body, True, payload)
            except (WebhookVerificationError, Exception) as exc:  # noqa: BLE001 - record any failure
                record = Received(headers, body, False, None, repr(exc))
            state.received.append(record)
            status = state.statuses.pop(0) if state.statuses else 200
            answer = (b"ok" if status < 300 else b"receiver says no " + b"x" * 3000)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/coffer?src=test"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def eager_celery():
    """Run enqueued tasks in-process (as a worker would), restoring the setting after."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def audit_actions() -> list[str]:
    from compliance.models import AuditEvent

    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def json_body(data) -> bytes:
    return json.dumps(data).encode()
