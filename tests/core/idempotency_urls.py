"""Test-only endpoints for the idempotency layer (`@pytest.mark.urls("tests.core.idempotency_urls")`).

`POST /api/t/effect` writes one `OutboxMessage` row per execution: the observable side effect
("one request, one effect"). The body's `mode` picks an outcome; module-level switches let a test
crash or pause the next execution from outside without changing the request body (a real retry
sends the same body).
"""

import threading
import time
from datetime import timedelta

from django.db import connection
from django.urls import path
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.errors import CofferError
from core.idempotency import idempotent
from core.models import OutboxMessage


class Declined(CofferError):
    code, status = "DECLINED", 422
    default_message = "Declined after recording the attempt."


class StepUpRequired(CofferError):
    code, status = "2FA_REQUIRED", 403
    default_message = "Send X-2FA-Code."


class Controls:
    """Switches a test flips between requests."""

    crash_after_effect = False  # raise after the side effect, before the response
    pause = False  # after the side effect: report the backend pid, then wait for `release`
    paused = threading.Event()
    release = threading.Event()
    backend_pid: int | None = None
    delay = 0.0  # seconds to sleep after the side effect (widens race windows)

    @classmethod
    def reset(cls):
        cls.crash_after_effect = False
        cls.pause = False
        cls.paused = threading.Event()
        cls.release = threading.Event()
        cls.backend_pid = None
        cls.delay = 0.0


class OrgPrincipal:
    """What organization authentication yields: a principal with `.organization`."""

    is_authenticated = True

    def __init__(self, organization, key_id):
        self.organization = organization
        self.key_id = key_id
        self.pk = None


class TestOrgHeaderAuth(BaseAuthentication):
    """`X-Test-Org: <org id>/<key name>`: stands in for the API-key authentication."""

    def authenticate(self, request):
        raw = request.headers.get("X-Test-Org")
        if not raw:
            return None
        from accounts.models import Organization

        org_id, _, key_id = raw.partition("/")
        return OrgPrincipal(Organization.objects.get(pk=int(org_id)), key_id), None


def _effect(request, endpoint_name):
    message = OutboxMessage.objects.create(
        topic=f"tests.{endpoint_name}",
        payload={"n": str(request.data.get("n", "")), "caller": str(request.user.pk)},
        next_attempt_at=timezone.now() + timedelta(days=365),
    )
    if Controls.delay:
        time.sleep(Controls.delay)
    if Controls.pause:
        Controls.backend_pid = connection.connection.info.backend_pid if connection.vendor == "postgresql" else None
        Controls.paused.set()
        Controls.release.wait(timeout=20)
        OutboxMessage.objects.filter(pk=message.pk).exists()  # touches the (possibly killed) connection
    mode = request.data.get("mode", "ok")
    if Controls.crash_after_effect:
        raise RuntimeError("simulated crash after the side effect")
    if mode == "needs_2fa" and not request.headers.get("X-2FA-Code"):
        raise StepUpRequired()
    if mode == "declined":
        raise Declined(details={"effect_id": message.pk})
    if mode == "server_error_response":
        return Response({"error": {"code": "SERVER_ERROR", "message": "upstream down", "details": {}}}, status=503)
    response = Response({"effect_id": message.pk, "n": request.data.get("n"), "at": timezone.now().isoformat()}, status=201)
    response["Location"] = f"/api/t/effects/{message.pk}"
    return response


class EffectApi(APIView):
    authentication_classes = [TestOrgHeaderAuth, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    throttle_classes: list = []

    @idempotent(endpoint="tests.effect")
    def post(self, request):
        return _effect(request, "effect")


class OtherEffectApi(APIView):
    authentication_classes = [TestOrgHeaderAuth, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    throttle_classes: list = []

    @idempotent(endpoint="tests.other")
    def post(self, request):
        return _effect(request, "other")


urlpatterns = [
    path("api/t/effect", EffectApi.as_view()),
    path("api/t/other", OtherEffectApi.as_view()),
]
