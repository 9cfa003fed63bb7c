"""The idempotency layer (SPEC 5, invariant 6) through real HTTP requests to a test endpoint whose
side effect is one `OutboxMessage` row per execution: "one request, one effect"."""

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Organization, User
from core.idempotency import (
    _cache_lock_key,
    caller_scope,
    idempotency_records_purge,
    request_fingerprint,
)
from core.models import IdempotencyRecord, OutboxMessage
from core.tasks import purge_idempotency_records
from tests.concurrency import blocked_insert_pid, in_background, redis_flushing, redis_forget, run_in_threads
from tests.core.idempotency_urls import Controls

pytestmark = pytest.mark.urls("tests.core.idempotency_urls")

URL = "/api/t/effect"
OTHER_URL = "/api/t/other"


@pytest.fixture(autouse=True)
def _controls():
    Controls.reset()
    yield
    Controls.reset()


def _user(email="payer@example.com") -> User:
    return User.objects.create_user(email=email, password="pw-not-used-123")


def _client(user: User | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _post(client, key=None, body=None, url=URL, header="Idempotency-Key", raw: str | None = None):
    headers = {header: key} if key is not None else {}
    if raw is not None:
        return client.post(url, data=raw, content_type="application/json", headers=headers)
    return client.post(url, body if body is not None else {"n": 1}, format="json", headers=headers)


def _effects(topic="tests.effect") -> int:
    return OutboxMessage.objects.filter(topic=topic).count()


def _error_code(response) -> str:
    return response.json()["error"]["code"]


# --- The protocol, one request at a time -----------------------------------------------------------
@pytest.mark.django_db
class TestSequential:
    def test_missing_key_is_400_and_runs_nothing(self):
        response = _post(_client(_user()))
        assert response.status_code == 400
        assert _error_code(response) == "IDEMPOTENCY_KEY_REQUIRED"
        assert _effects() == 0 and IdempotencyRecord.objects.count() == 0

    @pytest.mark.parametrize("key", ["", "   "])
    def test_blank_key_counts_as_missing(self, key):
        response = _post(_client(_user()), key=key)
        assert response.status_code == 400
        assert _error_code(response) == "IDEMPOTENCY_KEY_REQUIRED"
        assert _effects() == 0

    @pytest.mark.parametrize("key", ["k" * 256, "clé-unicode", "tab\there"])
    def test_malformed_key_is_a_validation_error_naming_the_header(self, key):
        response = _post(_client(_user()), key=key)
        assert response.status_code == 400
        body = response.json()["error"]
        assert body["code"] == "VALIDATION_ERROR"
        assert "Idempotency-Key" in body["details"]["fields"]
        assert _effects() == 0

    def test_longest_allowed_key_works(self):
        response = _post(_client(_user()), key="k" * 255)
        assert response.status_code == 201

    def test_unauthenticated_is_401_not_stored(self):
        response = _post(_client(), key="k1")
        assert response.status_code == 401
        assert IdempotencyRecord.objects.count() == 0 and _effects() == 0

    def test_same_key_same_body_replays_byte_for_byte(self):
        client = _client(_user())
        first = _post(client, key="k1", body={"n": 7})
        assert first.status_code == 201
        assert "Idempotency-Replayed" not in first
        second = _post(client, key="k1", body={"n": 7})
        assert second.status_code == 201
        assert second["Idempotency-Replayed"] == "true"
        assert second.content == first.content
        assert second["Location"] == first["Location"]
        assert _effects() == 1
        record = IdempotencyRecord.objects.get()
        assert (record.endpoint, record.key, record.response_status) == ("tests.effect", "k1", 201)
        assert record.expires_at - record.created_at >= timedelta(hours=24)

    def test_same_key_different_body_is_422_and_runs_nothing(self):
        client = _client(_user())
        assert _post(client, key="k1", body={"n": 1}).status_code == 201
        response = _post(client, key="k1", body={"n": 2})
        assert response.status_code == 422
        assert _error_code(response) == "IDEMPOTENCY_KEY_REUSED"
        assert _effects() == 1

    def test_legacy_x_idempotency_key_header_is_the_same_key(self):
        client = _client(_user())
        first = _post(client, key="k1", header="X-Idempotency-Key")
        assert first.status_code == 201
        second = _post(client, key="k1", header="Idempotency-Key")
        assert second.status_code == 201 and second["Idempotency-Replayed"] == "true"
        assert _effects() == 1

    def test_keys_are_scoped_per_user(self):
        alice, bob = _user("alice@example.com"), _user("bob@example.com")
        a = _post(_client(alice), key="shared")
        b = _post(_client(bob), key="shared")
        assert a.status_code == b.status_code == 201
        assert "Idempotency-Replayed" not in b
        assert a.json()["effect_id"] != b.json()["effect_id"]
        assert _effects() == 2

    def test_keys_are_scoped_per_endpoint(self):
        client = _client(_user())
        assert _post(client, key="k1").status_code == 201
        other = _post(client, key="k1", url=OTHER_URL)
        assert other.status_code == 201 and "Idempotency-Replayed" not in other
        assert _effects("tests.effect") == 1 and _effects("tests.other") == 1

    def test_keys_are_scoped_per_organization_not_per_api_key(self):
        acme = Organization.objects.create(name="Acme", slug="acme")
        globex = Organization.objects.create(name="Globex", slug="globex")
        client = APIClient()
        first = client.post(URL, {"n": 1}, format="json", headers={"Idempotency-Key": "k", "X-Test-Org": f"{acme.pk}/key-a"})
        same_org_other_key = client.post(URL, {"n": 1}, format="json", headers={"Idempotency-Key": "k", "X-Test-Org": f"{acme.pk}/key-b"})
        other_org = client.post(URL, {"n": 1}, format="json", headers={"Idempotency-Key": "k", "X-Test-Org": f"{globex.pk}/key-c"})
        assert first.status_code == 201
        assert same_org_other_key["Idempotency-Replayed"] == "true"
        assert other_org.status_code == 201 and "Idempotency-Replayed" not in other_org
        assert _effects() == 2
        assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {f"org:{acme.pk}", f"org:{globex.pk}"}

    def test_caller_scope_prefers_the_organization(self, rf):
        user = _user()
        org = Organization.objects.create(name="Acme", slug="acme")
        request = rf.post(URL)
        request.user = user
        assert caller_scope(request) == f"user:{user.pk}"
        request.organization = org
        assert caller_scope(request) == f"org:{org.pk}"

    def test_client_error_outcome_is_committed_and_replayed(self):
        client = _client(_user())
        first = _post(client, key="k1", body={"mode": "declined"})
        assert first.status_code == 422
        assert _error_code(first) == "DECLINED"
        assert _effects() == 1, "the attempt written before the 4xx must commit with it"
        second = _post(client, key="k1", body={"mode": "declined"})
        assert second.status_code == 422 and second["Idempotency-Replayed"] == "true"
        assert second.content == first.content
        assert _effects() == 1

    def test_step_up_refusal_is_not_stored_so_the_retry_with_a_code_runs(self):
        client = _client(_user())
        refused = _post(client, key="k1", body={"mode": "needs_2fa"})
        assert refused.status_code == 403 and _error_code(refused) == "2FA_REQUIRED"
        assert IdempotencyRecord.objects.count() == 0
        client.credentials(HTTP_X_2FA_CODE="123456")
        retry = _post(client, key="k1", body={"mode": "needs_2fa"})
        assert retry.status_code == 201 and "Idempotency-Replayed" not in retry
        again = _post(client, key="k1", body={"mode": "needs_2fa"})
        assert again.status_code == 201 and again["Idempotency-Replayed"] == "true"

    def test_exception_is_500_rolls_back_and_retry_runs_again(self):
        client = _client(_user())
        Controls.crash_after_effect = True
        crashed = _post(client, key="k1", body={"n": 3})
        assert crashed.status_code == 500
        assert _error_code(crashed) == "SERVER_ERROR"
        assert _effects() == 0 and IdempotencyRecord.objects.count() == 0
        Controls.crash_after_effect = False
        retry = _post(client, key="k1", body={"n": 3})
        assert retry.status_code == 201 and "Idempotency-Replayed" not in retry
        again = _post(client, key="k1", body={"n": 3})
        assert again["Idempotency-Replayed"] == "true"
        assert _effects() == 1

    def test_returned_5xx_is_rolled_back_and_not_stored(self):
        client = _client(_user())
        first = _post(client, key="k1", body={"mode": "server_error_response"})
        assert first.status_code == 503
        assert _effects() == 0 and IdempotencyRecord.objects.count() == 0
        second = _post(client, key="k1", body={"mode": "server_error_response"})
        assert second.status_code == 503 and "Idempotency-Replayed" not in second

    def test_on_postgresql_the_request_takes_no_cache_lock(self):
        """The advisory lock in the claim statement answers 409; a Redis lock would be 3 more round trips."""
        if connection.vendor != "postgresql":
            pytest.skip("the advisory lock is PostgreSQL's; SQLite keeps the cache lock")
        user = _user()
        cache.add(_cache_lock_key(f"user:{user.pk}", "tests.effect", "k1"), "someone-else", timeout=60)
        response = _post(_client(user), key="k1")
        assert response.status_code == 201 and _effects() == 1
        assert cache.get(_cache_lock_key(f"user:{user.pk}", "tests.effect", "k1")) == "someone-else"

    @override_settings(IDEMPOTENCY_CACHE_LOCK="on")
    def test_in_flight_key_in_the_cache_is_409(self):
        user = _user()
        cache.add(_cache_lock_key(f"user:{user.pk}", "tests.effect", "k1"), "someone-else", timeout=60)
        response = _post(_client(user), key="k1")
        assert response.status_code == 409
        assert _error_code(response) == "IDEMPOTENCY_KEY_IN_PROGRESS"
        assert _effects() == 0

    @override_settings(IDEMPOTENCY_CACHE_LOCK="on")
    def test_finished_key_replays_even_if_a_stale_cache_lock_remains(self):
        user = _user()
        client = _client(user)
        first = _post(client, key="k1")
        cache.add(_cache_lock_key(f"user:{user.pk}", "tests.effect", "k1"), "stale", timeout=60)
        second = _post(client, key="k1")
        assert second.status_code == 201 and second["Idempotency-Replayed"] == "true"
        assert second.content == first.content

    @override_settings(IDEMPOTENCY_CACHE_LOCK="on")
    def test_cache_lock_is_released_after_the_request(self):
        user = _user()
        _post(_client(user), key="k1")
        assert cache.get(_cache_lock_key(f"user:{user.pk}", "tests.effect", "k1")) is None

    def test_expired_record_frees_the_key(self):
        client = _client(_user())
        assert _post(client, key="k1").status_code == 201
        IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        again = _post(client, key="k1", body={"n": 99})
        assert again.status_code == 201 and "Idempotency-Replayed" not in again
        assert _effects() == 2
        assert IdempotencyRecord.objects.count() == 1


# --- Fingerprints ------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestFingerprint:
    def test_key_order_and_whitespace_do_not_matter(self):
        client = _client(_user())
        assert _post(client, key="k", raw='{"n": 1, "amount": "10.00"}').status_code == 201
        again = _post(client, key="k", raw='{ "amount":"10.00","n":1 }')
        assert again["Idempotency-Replayed"] == "true"

    def test_json_numbers_compare_by_value(self):
        client = _client(_user())
        assert _post(client, key="k", raw='{"amount": 100.5}').status_code == 201
        assert _post(client, key="k", raw='{"amount": 100.50}')["Idempotency-Replayed"] == "true"
        assert _post(client, key="k2", raw='{"amount": 100}').status_code == 201
        assert _post(client, key="k2", raw='{"amount": 100.0}')["Idempotency-Replayed"] == "true"

    def test_a_number_is_not_the_same_request_as_a_string(self):
        client = _client(_user())
        assert _post(client, key="k", raw='{"amount": 100.5}').status_code == 201
        response = _post(client, key="k", raw='{"amount": "100.50"}')
        assert response.status_code == 422 and _error_code(response) == "IDEMPOTENCY_KEY_REUSED"

    def test_strings_compare_exactly(self):
        client = _client(_user())
        assert _post(client, key="k", raw='{"amount": "100.5"}').status_code == 201
        assert _post(client, key="k", raw='{"amount": "100.50"}').status_code == 422

    def test_query_string_is_part_of_the_request(self):
        client = _client(_user())
        assert _post(client, key="k", url=URL + "?a=1").status_code == 201
        assert _post(client, key="k", url=URL + "?a=2").status_code == 422

    def test_fingerprint_function(self):
        from decimal import Decimal

        base = request_fingerprint(method="POST", path="/p", data={"a": Decimal("1.50"), "b": [1, "x"]})
        assert base == request_fingerprint(method="post", path="/p", data={"b": [1, "x"], "a": Decimal("1.5")})
        assert base != request_fingerprint(method="POST", path="/p", data={"a": "1.50", "b": [1, "x"]})
        assert base != request_fingerprint(method="POST", path="/q", data={"a": Decimal("1.50"), "b": [1, "x"]})
        assert base != request_fingerprint(method="POST", path="/p", data={"a": Decimal("1.50"), "b": ["x", 1]})
        assert request_fingerprint(method="POST", path="/p", data={"a": None}) != request_fingerprint(method="POST", path="/p", data={"a": "null"})
        assert request_fingerprint(method="POST", path="/p", data={"a": True}) != request_fingerprint(method="POST", path="/p", data={"a": 1})

    def test_uploaded_files_compare_by_content(self):
        """A multipart retry with the same key must carry the same file: same name, other bytes
        is another request (it used to compare by file name only)."""
        from django.core.files.uploadedfile import SimpleUploadedFile

        def fp(content: bytes, name: str = "statement.csv") -> str:
            return request_fingerprint(method="POST", path="/p", data={"file": SimpleUploadedFile(name, content)})

        assert fp(b"date,amount\n") == fp(b"date,amount\n")
        assert fp(b"date,amount\n") != fp(b"date,amount\n2026-05-01,1\n")
        assert fp(b"same") != fp(b"same", name="other.csv")
        upload = SimpleUploadedFile("s.csv", b"abc")
        request_fingerprint(method="POST", path="/p", data={"file": upload})
        assert upload.read() == b"abc"  # the handler still reads the whole file


# --- Retention ------------------------------------------------------------------------------------------
@pytest.mark.django_db
class TestPurge:
    def _record(self, key, expires_at):
        return IdempotencyRecord.objects.create(
            scope="user:1", endpoint="tests.effect", key=key, fingerprint="f" * 64, method="POST", path=URL,
            response_status=201, response_body="{}", expires_at=expires_at,
        )

    def test_purge_deletes_only_expired_records(self):
        now = timezone.now()
        self._record("old", now - timedelta(minutes=1))
        self._record("older", now - timedelta(days=3))
        self._record("live", now + timedelta(minutes=1))
        assert purge_idempotency_records() == 2  # the Celery task, run in process
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live"]
        assert idempotency_records_purge(now=now + timedelta(minutes=2)) == 1
        assert IdempotencyRecord.objects.count() == 0

    @override_settings(IDEMPOTENCY_KEY_TTL_HOURS=48)
    def test_the_hourly_purge_keeps_the_table_bounded_by_retention_not_by_age(self):
        """Within a month the purge deletes expired rows (whole expired months are dropped:
        tests/core/test_idempotency_partitions.py). Ten days of steady traffic, purged as beat
        does: the table never holds more than the retention window's records, however long it runs."""
        start = timezone.now() - timedelta(days=10)
        per_hour, sizes = 3, []
        for hour in range(10 * 24):
            moment = start + timedelta(hours=hour)
            for n in range(per_hour):
                self._record(f"k{hour}-{n}", moment + timedelta(hours=48))
            idempotency_records_purge(now=moment)
            sizes.append(IdempotencyRecord.objects.count())
        window = per_hour * 48  # the records of the last 48 hours
        assert max(sizes) <= window and sizes[-1] == window
        assert max(sizes[-24:]) == max(sizes[48:72]), "flat after the first retention window"

    @override_settings(IDEMPOTENCY_KEY_TTL_HOURS=1)
    def test_keys_are_kept_at_least_24_hours(self):
        _post(_client(_user()), key="k1")
        record = IdempotencyRecord.objects.get()
        assert record.expires_at - record.created_at >= timedelta(hours=24)
        assert idempotency_records_purge(now=timezone.now() + timedelta(hours=23)) == 0

    def test_beat_schedules_the_purge(self):
        from config.celery import app

        entries = {entry["task"] for entry in app.conf.beat_schedule.values()}
        assert "core.tasks.purge_idempotency_records" in entries


# --- Concurrency on PostgreSQL ---------------------------------------------------------------------------
def _race(user, n, key, body, before=None):
    """`n` threads, each with its own client and connection, post the same request at once."""
    clients = [_client(user) for _ in range(n)]

    def worker(i):
        if before:
            before(i)
        response = _post(clients[i], key=key, body=body)
        return (response.status_code, response.content, response.get("Idempotency-Replayed"))

    # an exception is surfaced by the assertions on the results
    return [("exception", repr(r), None) if isinstance(r, BaseException) else r for r in run_in_threads(n, worker)]


def _assert_one_effect(results, allow_409=True):
    originals = [r for r in results if r[0] == 201 and r[2] is None]
    replays = [r for r in results if r[0] == 201 and r[2] == "true"]
    in_progress = [r for r in results if r[0] == 409 and json.loads(r[1])["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"]
    assert len(originals) + len(replays) + len(in_progress) == len(results), results
    assert len(originals) <= 1
    assert allow_409 or not in_progress
    bodies = {r[1] for r in originals + replays}
    assert len(bodies) <= 1, "every success must be the same response"
    return originals, replays, in_progress


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestRacing:
    def test_32_racing_requests_one_effect(self):
        user = _user()
        Controls.delay = 0.2
        results = _race(user, 32, "race-1", {"n": 1})
        originals, replays, in_progress = _assert_one_effect(results)
        assert len(originals) == 1
        assert len(in_progress) >= 1
        assert _effects() == 1 and IdempotencyRecord.objects.count() == 1
        # Everyone retrying after it finished gets the original back.
        again = _post(_client(user), key="race-1", body={"n": 1})
        assert again.status_code == 201 and again.content == originals[0][1]

    @override_settings(IDEMPOTENCY_CACHE_LOCK="on")
    def test_32_racing_requests_one_effect_behind_the_cache_lock(self):
        user = _user()
        Controls.delay = 0.2
        originals, replays, in_progress = _assert_one_effect(_race(user, 32, "race-c", {"n": 1}))
        assert len(originals) == 1 and len(in_progress) >= 1
        assert _effects() == 1 and IdempotencyRecord.objects.count() == 1

    def test_after_flushdb_the_database_still_guards(self):
        user = _user()
        Controls.delay = 0.2
        first = _race(user, 32, "race-2", {"n": 2})
        assert len(_assert_one_effect(first)[0]) == 1
        redis_forget()
        # Same key after the cache forgot everything: all replays, no new effect.
        second = _race(user, 32, "race-2", {"n": 2})
        originals, replays, _ = _assert_one_effect(second)
        assert not originals and len(replays) >= 1
        assert _effects() == 1

    def test_redis_flushed_during_the_race(self):
        user = _user()
        Controls.delay = 0.2
        with redis_flushing(every=0.005):
            results = _race(user, 32, "race-3", {"n": 3})
        originals, _, in_progress = _assert_one_effect(results)
        assert len(originals) == 1
        assert _effects() == 1 and IdempotencyRecord.objects.count() == 1

    def test_without_any_cache_the_advisory_lock_and_unique_key_guard(self):
        user = _user()
        Controls.delay = 0.2
        # DummyCache.add always succeeds: no fast path at all, every request reaches PostgreSQL.
        with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}):
            results = _race(user, 32, "race-4", {"n": 4})
        originals, _, in_progress = _assert_one_effect(results)
        assert len(originals) == 1 and len(in_progress) >= 1
        assert _effects() == 1

    def test_worker_killed_mid_request_leaves_nothing_and_retry_runs_once(self):
        user = _user()
        Controls.pause = True
        thread, outcome = in_background(lambda: _post(_client(user), key="k-kill", body={"n": 5}))
        thread.start()
        assert Controls.paused.wait(timeout=20)
        Controls.pause = False
        # While it runs, the key is busy: through the cache and, with the cache flushed, through PostgreSQL.
        busy = _post(_client(user), key="k-kill", body={"n": 5})
        assert busy.status_code == 409 and _error_code(busy) == "IDEMPOTENCY_KEY_IN_PROGRESS"
        redis_forget()
        busy = _post(_client(user), key="k-kill", body={"n": 5})
        assert busy.status_code == 409 and _error_code(busy) == "IDEMPOTENCY_KEY_IN_PROGRESS"
        with connection.cursor() as cursor:  # the worker dies: its backend is terminated mid-transaction
            cursor.execute("SELECT pg_terminate_backend(%s)", [Controls.backend_pid])
        Controls.release.set()
        thread.join(timeout=30)
        assert outcome["result"].status_code == 503  # the database went away under it: retry later
        assert _error_code(outcome["result"]) == "SERVICE_UNAVAILABLE" and outcome["result"]["Retry-After"]
        assert _effects() == 0 and IdempotencyRecord.objects.count() == 0
        retry = _post(_client(user), key="k-kill", body={"n": 5})
        assert retry.status_code == 201 and "Idempotency-Replayed" not in retry
        assert _post(_client(user), key="k-kill", body={"n": 5})["Idempotency-Replayed"] == "true"
        assert _effects() == 1

    def test_unique_constraint_is_the_last_line(self):
        """A concurrent commit of the same key that got past the advisory lock (here: a raw insert
        that never took it) makes the request roll back its own effect and replay the winner."""
        user = _user()
        body = {"n": 6}
        winner_body = '{"effect_id":0,"winner":true}'
        thread, outcome = in_background(lambda: _post(_client(user), key="k-last", body=body))
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"user:{user.pk}", endpoint="tests.effect", key="k-last",
                fingerprint=request_fingerprint(method="POST", path=URL, data=body), method="POST", path=URL,
                response_status=201, response_body=winner_body, expires_at=timezone.now() + timedelta(hours=48),
            )
            thread.start()
            # Wait until the request has done its effect and blocks inserting its record.
            if blocked_insert_pid("core_idempotencyrecord") is None:
                pytest.fail("the request never blocked on the record insert")
        thread.join(timeout=30)
        response = outcome["result"]
        assert response.status_code == 201
        assert response["Idempotency-Replayed"] == "true"
        assert response.content.decode() == winner_body
        assert _effects() == 0, "the loser's own effect must have rolled back"
        assert IdempotencyRecord.objects.count() == 1
