"""Login lockout and signup privacy (issue 12, item 7).

- Failed logins lock per (account, client address) with progressive delays: an attacker from one
  address cannot lock the owner out from another.
- A distributed guesser still meets a per-account ceiling: a long back-off for every address, and
  an e-mail to the owner. An unknown address behaves exactly the same, without the e-mail.
- Signup does not reveal registered e-mails: the same answer either way; the existing owner is
  told by e-mail instead."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.identity.login import LOCKED_MESSAGE, LOGIN_LOCKED_TOPIC, login_lock_clear, login_lock_seconds
from accounts.identity.services import SIGNUP_EXISTING_TOPIC
from accounts.models import Customer, User
from compliance.models import AuditEvent
from core.models import OutboxMessage
from core.outbox import handlers_for, outbox_dispatch
from tests.audit_chain import audit_chain_verified
from tests.factories.accounts import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token"
SIGNUP = "/api/v1/auth/signup"
ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"


def _login(email: str, password: str, address: str):
    return APIClient(REMOTE_ADDR=address).post(TOKEN, {"username": email, "password": password}, format="json")


def _message(response) -> str:
    return response.json()["error"]["message"]


def _deliver(topic: str) -> None:
    for message in OutboxMessage.objects.filter(topic=topic).order_by("id"):
        if connection.in_atomic_block:
            for handler in handlers_for(message.topic):
                handler(message)
        else:
            assert outbox_dispatch(message_id=message.pk) == "dispatched"


@override_settings(LOGIN_LOCK_THRESHOLD=3, LOGIN_LOCK_SECONDS=60)
def test_an_attacker_from_one_address_cannot_lock_the_owner_out_from_another():
    """The bug: 5 wrong passwords from anywhere locked the account for everyone."""
    UserFactory(email="jane@example.com")
    for _ in range(5):
        assert _login("jane@example.com", "guess", ATTACKER).status_code == 401
    refused = _login("jane@example.com", DEFAULT_PASSWORD, ATTACKER)  # the attacker's address is locked
    assert refused.status_code == 401 and _message(refused) == LOCKED_MESSAGE
    assert refused.json()["error"]["details"]["reason"] == "account_locked"

    owner = _login("jane@example.com", DEFAULT_PASSWORD, OWNER)
    assert owner.status_code == 200, owner.content
    assert login_lock_seconds(email="jane@example.com", client_ip=ATTACKER) > 0  # still locked there


@override_settings(LOGIN_LOCK_THRESHOLD=3, LOGIN_LOCK_SECONDS=60)
def test_the_delay_grows_per_address_and_is_capped():
    UserFactory(email="jane@example.com")
    for _ in range(3):
        last = _login("jane@example.com", "guess", ATTACKER)
    assert _message(last) == LOCKED_MESSAGE
    assert 55 <= login_lock_seconds(email="jane@example.com", client_ip=ATTACKER) <= 60
    assert AuditEvent.objects.filter(action="user.locked").count() == 1
    assert AuditEvent.objects.get(action="user.locked").data["client_ip"] == ATTACKER

    delays = []
    for _ in range(8):  # each time the lock runs out, one more failure locks for twice as long, up to an hour
        login_lock_clear(email="jane@example.com", client_ip=ATTACKER, counter=False)
        assert _message(_login("jane@example.com", "guess", ATTACKER)) == LOCKED_MESSAGE
        delays.append(login_lock_seconds(email="jane@example.com", client_ip=ATTACKER))
    assert [round(d, -1) for d in delays[:5]] == [120, 240, 480, 960, 1920]
    assert all(3590 <= d <= 3600 for d in delays[-2:])

    # the right password from that address, once its lock runs out, works and forgets its failures
    login_lock_clear(email="jane@example.com", client_ip=ATTACKER, counter=False)
    assert _login("jane@example.com", DEFAULT_PASSWORD, ATTACKER).status_code == 200
    assert _message(_login("jane@example.com", "guess", ATTACKER)) != LOCKED_MESSAGE
    assert audit_chain_verified()["valid"]


@override_settings(LOGIN_LOCK_THRESHOLD=3, LOGIN_ACCOUNT_CEILING=6, LOGIN_ACCOUNT_LOCK_SECONDS=3600)
def test_distributed_guessing_hits_the_account_ceiling_with_a_long_back_off_and_an_email():
    user = UserFactory(email="jane@example.com")
    for n in range(6):  # one guess from each of six addresses: no address reaches its own limit
        response = _login("jane@example.com", f"guess-{n}", f"192.0.2.{n + 1}")
    assert _message(response) == LOCKED_MESSAGE

    user.refresh_from_db()
    assert user.failed_login_count == 6
    assert timedelta(minutes=59) < user.locked_until - timezone.now() <= timedelta(hours=1)
    for address in (OWNER, "192.0.2.200"):  # everyone waits now, the right password too
        refused = _login("jane@example.com", DEFAULT_PASSWORD, address)
        assert refused.status_code == 401 and _message(refused) == LOCKED_MESSAGE
    user.refresh_from_db()
    assert user.failed_login_count == 6  # refusals while locked are not counted

    event = AuditEvent.objects.get(action="user.account_locked")
    assert event.actor_id == user.pk and event.data["failed_login_count"] == 6 and event.data["seconds"] == 3600
    _deliver(LOGIN_LOCKED_TOPIC)
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["jane@example.com"] and "locked" in sent.subject.lower()
    assert "6 failed" in sent.body and DEFAULT_PASSWORD not in sent.body

    # when it runs out, the next ceiling's worth of failures locks for twice as long
    User.objects.filter(pk=user.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    for n in range(6):
        _login("jane@example.com", f"again-{n}", f"192.0.2.{n + 50}")
    user.refresh_from_db()
    assert timedelta(hours=1, minutes=59) < user.locked_until - timezone.now() <= timedelta(hours=2)

    # once the back-off ends, the owner's right password works and resets the count
    User.objects.filter(pk=user.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert _login("jane@example.com", DEFAULT_PASSWORD, OWNER).status_code == 200
    user.refresh_from_db()
    assert user.failed_login_count == 0 and user.locked_until is None


@override_settings(LOGIN_LOCK_THRESHOLD=3, LOGIN_ACCOUNT_CEILING=5)
def test_an_unknown_address_meets_the_same_limits_without_an_email():
    UserFactory(email="real@example.com")
    pattern = [(f"guess-{n}", f"192.0.2.{n % 3 + 1}") for n in range(8)]
    real = [(r.status_code, r.json()) for r in (_login("real@example.com", p, a) for p, a in pattern)]
    ghost = [(r.status_code, r.json()) for r in (_login("ghost@example.com", p, a) for p, a in pattern)]
    assert real == ghost
    assert real[4][1]["error"]["message"] == LOCKED_MESSAGE  # the ceiling, from an address of its own
    assert OutboxMessage.objects.filter(topic=LOGIN_LOCKED_TOPIC).count() == 1  # the real owner's only


def test_signup_with_a_registered_email_answers_like_a_new_one_and_tells_the_owner():
    owner = UserFactory(email="taken@example.com", first_name="Jane")
    fresh = APIClient().post(SIGNUP, {"first_name": "A", "last_name": "B", "email": "new@example.com", "password": "a-long-unusual-passphrase"}, format="json")
    taken = APIClient().post(SIGNUP, {"first_name": "A", "last_name": "B", "email": "TAKEN@example.com", "password": "a-long-unusual-passphrase"}, format="json")
    assert fresh.status_code == taken.status_code == 201, (fresh.content, taken.content)
    assert set(fresh.json()) == set(taken.json())
    assert {k: v for k, v in fresh.json().items() if k != "email"} == {k: v for k, v in taken.json().items() if k != "email"}
    assert taken.json()["email"] == "taken@example.com"

    assert User.objects.filter(email__iexact="taken@example.com").count() == 1
    assert not Customer.objects.filter(email__iexact="taken@example.com").exists()  # no second profile either
    owner.refresh_from_db()
    assert owner.check_password(DEFAULT_PASSWORD)  # nothing about the account changed

    _deliver(SIGNUP_EXISTING_TOPIC)
    assert [m.to for m in mail.outbox] == [["taken@example.com"]]
    assert "already" in mail.outbox[0].body and "a-long-unusual-passphrase" not in mail.outbox[0].body
    event = AuditEvent.objects.get(action="user.signup_existing_email")
    assert event.target_id == str(owner.pk)


def _auth_rate(rate: str):
    from django.conf import settings

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": rate}
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates})


def test_one_address_exhausting_the_accounts_rate_does_not_throttle_the_owner_where_they_log_in():
    """The per-account `auth` throttle (SPEC 5) let one address spend the account's whole rate and
    answer the owner 429 from everywhere. An address the owner has logged in from is not held to
    the per-account rate (still to its own per-address rate); new addresses still are."""
    UserFactory(email="jane@example.com")
    with _auth_rate("5/min"):
        assert _login("jane@example.com", DEFAULT_PASSWORD, OWNER).status_code == 200  # the owner's usual address
        statuses = [_login("jane@example.com", f"guess-{n}", ATTACKER).status_code for n in range(8)]
        assert statuses[-1] == 429  # the attacker is throttled
        assert _login("jane@example.com", DEFAULT_PASSWORD, "192.0.2.77").status_code == 429  # a new address: the account's rate
        assert _login("jane@example.com", DEFAULT_PASSWORD, OWNER).status_code == 200  # the owner's address: not held back


@override_settings(LOGIN_LOCK_THRESHOLD=3)
def test_behind_a_proxy_the_lock_is_per_forwarded_client_address():
    """With NUM_PROXIES set, every client arrives from the proxy's REMOTE_ADDR: the lockout must
    key on the same client address as the throttles (X-Forwarded-For), or one attacker behind
    the proxy would lock out everyone behind it again."""
    from django.conf import settings

    UserFactory(email="jane@example.com")
    proxy = "10.0.0.5"
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        for _ in range(4):
            APIClient(REMOTE_ADDR=proxy).post(TOKEN, {"username": "jane@example.com", "password": "guess"}, format="json", HTTP_X_FORWARDED_FOR=ATTACKER)
        refused = APIClient(REMOTE_ADDR=proxy).post(TOKEN, {"username": "jane@example.com", "password": DEFAULT_PASSWORD}, format="json", HTTP_X_FORWARDED_FOR=ATTACKER)
        assert _message(refused) == LOCKED_MESSAGE
        owner = APIClient(REMOTE_ADDR=proxy).post(TOKEN, {"username": "jane@example.com", "password": DEFAULT_PASSWORD}, format="json", HTTP_X_FORWARDED_FOR=OWNER)
        assert owner.status_code == 200, owner.content
    event = AuditEvent.objects.filter(action="user.login").latest("id")
    assert event.data["client_ip"] == OWNER
