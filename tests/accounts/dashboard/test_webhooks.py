"""Webhook endpoints and deliveries in the dashboard: create (signing secret shown once),
disable/enable, the deliveries list with its status filter, and redeliver. Deliveries are made by
the real engine against a local HTTP receiver."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.crypto import decrypt_secret
from accounts.models import WebhookDelivery, WebhookEndpoint
from accounts.webhooks.services import webhook_endpoint_create
from accounts.webhooks import WEBHOOK_TOPIC
from accounts.webhooks.deliver import webhook_deliver
from core.models import OutboxMessage
from tests.factories.dashboard import failed_delivery, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """A local endpoint answering 204 to every POST; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/coffer"
    server.shutdown()
    server.server_close()


def test_create_endpoint_shows_the_secret_once(alpha, developer_client):
    response = developer_client.post(
        "/dashboard/webhooks/new/", {"url": "http://127.0.0.1:8099/hook", "events": ["payorder.completed", "payorder.failed"], "description": "shop"}
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(organization=alpha.organization)
    secret = decrypt_secret(endpoint.secret_encrypted)
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert endpoint.events == ["payorder.completed", "payorder.failed"]
    listing = developer_client.get("/dashboard/webhooks/").content.decode()
    assert "127.0.0.1:8099/hook" in listing and secret not in listing


def test_create_endpoint_refusals_show_on_the_form(alpha, developer_client, settings):
    no_events = developer_client.post("/dashboard/webhooks/new/", {"url": "https://example.com/h"})
    assert no_events.status_code == 400 and "events" in no_events.context["form"].errors
    bad_scheme = developer_client.post("/dashboard/webhooks/new/", {"url": "ftp://example.com/h", "events": ["*"]})
    assert bad_scheme.status_code == 400 and "url" in bad_scheme.context["form"].errors
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    private = developer_client.post("/dashboard/webhooks/new/", {"url": "https://10.0.0.8/h", "events": ["*"]})
    assert private.status_code == 400
    assert "private" in " ".join(private.context["form"].errors["url"])
    assert not WebhookEndpoint.objects.exists()


def test_disable_and_enable(alpha, developer_client):
    endpoint, _ = webhook_endpoint_create(organization=alpha.organization, url="http://127.0.0.1:9/h", events=["*"], actor=alpha.owner)
    assert developer_client.get(f"/dashboard/webhooks/{endpoint.pk}/disable/").status_code == 405  # POST only
    response = developer_client.post(f"/dashboard/webhooks/{endpoint.pk}/disable/", follow=True)
    assert b"disabled" in response.content
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled and endpoint.disabled_at is not None
    developer_client.post(f"/dashboard/webhooks/{endpoint.pk}/enable/")
    endpoint.refresh_from_db()
    assert endpoint.is_enabled


def _deliver(delivery) -> WebhookDelivery:
    """Run the outbox handler of the delivery's newest `webhook.deliver` message (the redeliver
    queues a new one)."""
    return webhook_deliver(OutboxMessage.objects.filter(topic=WEBHOOK_TOPIC, payload__delivery_id=str(delivery.pk)).latest("id"))


def test_deliveries_filter_and_redeliver(alpha, developer_client, viewer_client, receiver):
    endpoint, _ = webhook_endpoint_create(organization=alpha.organization, url=receiver, events=["payorder.*"], actor=alpha.owner)
    [delivered] = publish(alpha.organization, "payorder.completed", {"id": "po_1"})
    assert _deliver(delivered).status == WebhookDelivery.Status.DELIVERED
    [pending] = publish(alpha.organization, "payorder.created", {"id": "po_2"})
    failed = failed_delivery(alpha)

    everything = developer_client.get("/dashboard/webhooks/deliveries/")
    assert {d.pk for d in everything.context["page"]} == {delivered.pk, pending.pk, failed.pk}
    only_delivered = developer_client.get("/dashboard/webhooks/deliveries/?status=delivered")
    assert [d.pk for d in only_delivered.context["page"]] == [delivered.pk]
    only_failed = developer_client.get("/dashboard/webhooks/deliveries/?status=failed")
    assert [d.pk for d in only_failed.context["page"]] == [failed.pk]
    by_endpoint = developer_client.get(f"/dashboard/webhooks/deliveries/?endpoint={endpoint.pk}")
    assert {d.pk for d in by_endpoint.context["page"]} == {delivered.pk, pending.pk}
    assert developer_client.get("/dashboard/webhooks/deliveries/?status=lost").context["page"].paginator.count == 0

    detail = developer_client.get(f"/dashboard/webhooks/deliveries/{delivered.pk}/").content.decode()
    assert delivered.webhook_id in detail and "HTTP 204" in detail and "Redeliver" in detail
    assert b"Redeliver" not in viewer_client.get(f"/dashboard/webhooks/deliveries/{delivered.pk}/").content
    assert viewer_client.post(f"/dashboard/webhooks/deliveries/{delivered.pk}/redeliver/").status_code == 403

    response = developer_client.post(
        f"/dashboard/webhooks/deliveries/{delivered.pk}/redeliver/", {"next": "/dashboard/webhooks/deliveries/?status=delivered"}
    )
    assert response.status_code == 302 and response["Location"] == "/dashboard/webhooks/deliveries/?status=delivered"
    delivered.refresh_from_db()
    assert delivered.status == WebhookDelivery.Status.PENDING and delivered.attempt_count == 0
    # The engine sends it again with the same webhook-id.
    again = _deliver(delivered)
    assert again.status == WebhookDelivery.Status.DELIVERED and again.attempts.count() == 2

    # A pending delivery cannot be redelivered; an off-site `next` is ignored.
    refused = developer_client.post(f"/dashboard/webhooks/deliveries/{pending.pk}/redeliver/", {"next": "https://evil.example/"}, follow=True)
    assert refused.redirect_chain[-1][0] == "/dashboard/webhooks/deliveries/"
    assert b"already pending" in refused.content
    assert developer_client.post("/dashboard/webhooks/deliveries/00000000-0000-0000-0000-000000000000/redeliver/").status_code == 404
