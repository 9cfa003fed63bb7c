"""`seed_demo` creates the demo logins once; a second run changes nothing and prints the same
logins; the printed login really gets a token."""

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Customer, Membership, Organization, User
from compliance.models import AuditEvent
from tests.audit_chain import audit_chain_verified

pytestmark = pytest.mark.django_db


def _run() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _snapshot():
    return (
        sorted(User.objects.values_list("email", "is_staff", "is_superuser", "password")),
        sorted(Customer.objects.values_list("user__email", "kyc_level")),
        sorted(Membership.objects.values_list("organization__name", "user__email", "role")),
        AuditEvent.objects.count(),
    )


def _logins(text: str) -> str:
    assert "Coffer demo is ready." in text
    return text.split("Coffer demo is ready.", 1)[1]


def _without_api_key(summary: str) -> str:
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("API key:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("              ("):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


def test_seed_demo_is_idempotent_and_prints_the_same_logins(api_client, settings):
    settings.PUBLIC_BASE_URL = "http://demo.example:8000"
    first = _run()
    snapshot = _snapshot()
    second = _run()
    assert _snapshot() == snapshot
    assert _without_api_key(_logins(first)) == _without_api_key(_logins(second))
    assert "created user" in first and "created user" not in second

    admin = User.objects.get(email="admin@coffer.local")
    assert admin.is_staff and admin.is_superuser and admin.check_password("coffer-admin-demo")
    demo = User.objects.get(email="demo@coffer.local")
    assert Customer.objects.filter(user=demo).exists()
    assert User.objects.get(email="bob@coffer.local").check_password("coffer-demo-pass")
    shop = Organization.objects.get(name="Demo Shop")
    assert Membership.objects.get(organization=shop, user=demo).role == Membership.Role.OWNER

    for expected in ("http://demo.example:8000/", "http://demo.example:8000/admin/", "http://demo.example:8000/api/docs/",
                     "admin@coffer.local / coffer-admin-demo", "demo@coffer.local / coffer-demo-pass", "bob@coffer.local / coffer-demo-pass"):
        assert expected in second, expected
    assert audit_chain_verified()["valid"]

    response = api_client.post("/api/v1/auth/token", {"username": "demo@coffer.local", "password": "coffer-demo-pass"})
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"


def test_the_demo_api_key_secret_is_in_the_final_summary_once(client, settings):
    settings.PUBLIC_BASE_URL = "http://demo.example:8000"
    first, second = _run(), _run()
    log, summary = first.split("Coffer demo is ready.", 1)
    [key_line] = [line for line in summary.splitlines() if line.strip().startswith("API key:")]
    key_id, secret = key_line.split()[2], key_line.split("secret:")[1].strip()
    assert secret not in log  # not buried in the middle of the log
    assert secret not in second and key_id in second  # shown once; later runs name the key
    assert "http://demo.example:8000/dashboard/api-keys/" in summary and "http://demo.example:8000/dashboard/api-keys/" in second
    assert first.rstrip().endswith("/dashboard/api-keys/)")  # the summary is the last thing printed
    assert client.get("/api/v1/pay-orders", HTTP_X_API_KEY=secret).status_code == 200  # the printed secret works


def test_the_demo_key_is_a_test_key(api_client, settings):
    """Issue 14 item 1: the key `make run` prints is a test key (sk_test_...): its orders are test
    mode, with Sepolia and testnet payment links, even on a live deployment."""
    import re

    from accounts.models import ApiKey

    out = _run()
    match = re.search(r"API key:\s+(\S+)\s+secret: (sk_test_\S+)\n\s+\(a TEST key", out)
    assert match, out
    key = ApiKey.objects.get(key_id=match.group(1))
    assert key.livemode is False and key.organization.name == "Demo Shop"
    api_client.credentials(HTTP_X_API_KEY=match.group(2))
    response = api_client.post("/api/v1/pay-orders", {"type": "SALE", "amount": "10.00", "currency": "USD"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["livemode"] is False
