"""Webhook deliveries and attempts partitioned by month (issue 15 item 3; accounts migration 0011,
accounts/models/webhooks.py).

On PostgreSQL: both tables are partitioned, with the partition key in their primary keys and
months ready ahead, the same bounds for both; the composite foreign key refuses an orphan
attempt (or one naming another month) and cascades a delivery's deletion to its attempts; a
delivery's id is a UUIDv7 carrying its created_at, so the id alone names its partition; a
delivery and its attempts land in the delivery's month, an attempt made a month later too;
every lookup of a delivery by id on the hot paths (the outbox handler, a retry, the redeliver
API, the detail API) names the month; a message and a delivery of before the partitioning
(UUIDv4, no created_at in the message) are still found; the migration converts tables with rows
and back."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone as tz

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from accounts.models.webhooks import delivery_created_at, delivery_id_at
from accounts.webhooks import WEBHOOK_TOPIC, webhook_publish
from accounts.webhooks.deliver import WebhookAttemptFailed, webhook_deliver
from accounts.webhooks.services import webhook_endpoint_create
from core.models import OutboxMessage
from ledger.partitions import _legacy_end, add_months, entry_partitions_ensure, is_partitioned, month_start, partition_name, partitions
from tests.factories.ledger import clock_at
from tests.migrations import latest_migrations, migrate_to as _migrate

DELIVERIES, ATTEMPTS = "accounts_webhookdelivery", "accounts_webhookattempt"
API = "/api/v1/webhook-deliveries"


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _partition_of(table: str, column: str, value) -> str:
    return _sql(f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = %s", [value])[0][0]


def _primary_key(table: str) -> list[str]:
    rows = _sql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum", [table])
    return [name for (name,) in rows]


@pytest.fixture
def pg():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")


@pytest.fixture
def endpoint(org, receiver) -> WebhookEndpoint:
    made, secret = webhook_endpoint_create(organization=org.organization, url=receiver.url, events=["*"])
    receiver.secret = secret
    return made


def _publish(org, event_type="customer.created") -> WebhookDelivery:
    [delivery] = webhook_publish(organization=org.organization, event_type=event_type, payload={"id": 7})
    return delivery


def _message(delivery: WebhookDelivery) -> OutboxMessage:
    return OutboxMessage.objects.filter(topic=WEBHOOK_TOPIC, payload__delivery_id=str(delivery.pk)).latest("id")


def _by_id_without_month(queries) -> list[str]:
    """Statements that find a delivery, or a delivery's attempts, by id without naming its month
    (PostgreSQL would probe every month's partition for them)."""
    found = []
    for query in queries:
        sql = query["sql"]
        if re.search(r'"accounts_webhookdelivery"\."id" (=|IN)', sql) and '"accounts_webhookdelivery"."created_at" =' not in sql:
            found.append(sql)
        if re.search(r'"accounts_webhookattempt"\."delivery_id" (=|IN)', sql) and '"accounts_webhookattempt"."delivery_created_at" =' not in sql:
            found.append(sql)
    return found


# --- Ids carry the month ---------------------------------------------------------------------------


def test_a_delivery_id_is_a_uuid7_carrying_its_created_at_to_the_microsecond():
    moment = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=tz.utc)
    made = delivery_id_at(moment)
    assert made.version == 7 and delivery_created_at(made) == moment and delivery_created_at(str(made)) == moment
    assert delivery_id_at(moment + timedelta(microseconds=1)) > made, "time-ordered"
    assert delivery_created_at(uuid.uuid4()) is None and delivery_created_at("not a uuid") is None


@pytest.mark.django_db
def test_created_at_is_the_instant_the_id_carries(org, endpoint):
    delivery = _publish(org)
    delivery.refresh_from_db()
    assert delivery.id.version == 7 and delivery_created_at(delivery.id) == delivery.created_at
    legacy_like = WebhookDelivery.objects.create(id=uuid.uuid4(), organization=org.organization, endpoint=endpoint,
                                                 event_id="e", event_type="t", payload={})
    assert legacy_like.created_at is not None  # an id without a time: now
    attempt = WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url)  # its delivery's month, by itself
    assert attempt.delivery_created_at == delivery.created_at


# --- Shape and the composite foreign key ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_both_tables_are_partitioned_by_the_delivery_month_with_months_ready_ahead(pg, settings):
    assert is_partitioned(DELIVERIES) and is_partitioned(ATTEMPTS)
    assert _primary_key(DELIVERIES) == ["id", "created_at"]
    assert _primary_key(ATTEMPTS) == ["id", "delivery_created_at"]
    first = _legacy_end(DELIVERIES)
    assert first == _legacy_end(ATTEMPTS) and first <= add_months(month_start(timezone.now()), 1)
    for table in (DELIVERIES, ATTEMPTS):
        names = {name for name, _ in partitions(table)}
        assert f"{table}_p_legacy" in names
        for n in range(settings.LEDGER_PARTITION_MONTHS_AHEAD):
            assert partition_name(table, add_months(first, n)) in names
    assert [bound for _, bound in partitions(DELIVERIES)] == [bound for _, bound in partitions(ATTEMPTS)]
    [(columns, referenced, on_delete)] = _sql(
        "SELECT pg_get_constraintdef(oid), confrelid::regclass::text, confdeltype FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'f' AND conparentid = 0", [ATTEMPTS])  # not its clones per month
    assert referenced == DELIVERIES and on_delete == "c"
    assert columns.startswith("FOREIGN KEY (delivery_id, delivery_created_at) REFERENCES accounts_webhookdelivery(id, created_at)")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_database_refuses_an_orphan_attempt_and_cascades_a_deleted_delivery(pg, org, endpoint):
    delivery = _publish(org)
    insert = (f"INSERT INTO {ATTEMPTS} (attempted_at, url, duration_ms, response_excerpt, error, succeeded, delivery_id, delivery_created_at)"
              " VALUES (now(), 'http://x', 0, '', '', false, %s, %s)")
    with pytest.raises(IntegrityError, match="webhook_attempt_delivery"), transaction.atomic():
        _sql(insert, [uuid.uuid4(), delivery.created_at])  # no such delivery
    with pytest.raises(IntegrityError, match="webhook_attempt_delivery"), transaction.atomic():
        _sql(insert, [delivery.pk, delivery.created_at - timedelta(days=40)])  # the delivery, another month
    with pytest.raises(IntegrityError), transaction.atomic():  # the ORM's path to the same refusal
        WebhookAttempt.objects.create(delivery_id=uuid.uuid4(), delivery_created_at=delivery.created_at, url="http://x")
    _sql(insert, [delivery.pk, delivery.created_at])
    WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url)
    other = _publish(org)
    WebhookAttempt.objects.create(delivery=other, url=endpoint.url)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2

    _sql(f"DELETE FROM {DELIVERIES} WHERE id = %s AND created_at = %s", [delivery.pk, delivery.created_at])  # raw: the database's own cascade
    assert not WebhookAttempt.objects.filter(delivery_id=delivery.pk).exists()
    assert WebhookAttempt.objects.filter(delivery=other).count() == 1


# --- Routing -----------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_delivery_and_all_its_attempts_land_in_the_delivery_month(pg, org, endpoint, receiver):
    later = add_months(month_start(timezone.now()), 2)
    with clock_at(datetime(later.year, later.month, 28, 23, 59, tzinfo=tz.utc)):
        delivery = _publish(org)
    month = partition_name(DELIVERIES, later)
    assert _partition_of(DELIVERIES, "id", delivery.pk) == month
    plan = WebhookDelivery.objects.of_id(delivery.pk).explain()
    assert set(re.findall(r"accounts_webhookdelivery_p\w+", plan)) <= {month, f"{month}_pkey"}, plan

    receiver.statuses = [500]
    with clock_at(datetime(later.year, later.month, 28, 23, 59, 30, tzinfo=tz.utc)):
        with pytest.raises(WebhookAttemptFailed):
            webhook_deliver(_message(delivery))
    next_month = add_months(later, 1)
    with clock_at(datetime(next_month.year, next_month.month, 1, 0, 5, tzinfo=tz.utc)):  # the retry, a month later
        assert webhook_deliver(_message(delivery)).status == WebhookDelivery.Status.DELIVERED
    attempts = WebhookAttempt.objects.filter(delivery=delivery)
    assert attempts.count() == 2 and {a.attempted_at.month for a in attempts} == {later.month, next_month.month}
    assert {_partition_of(ATTEMPTS, "id", a.pk) for a in attempts} == {partition_name(ATTEMPTS, later)}


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_id_of_before_the_partitioning_is_found_in_every_month(pg, org, endpoint, receiver):
    old = WebhookDelivery.objects.create(id=uuid.uuid4(), organization=org.organization, endpoint=endpoint, event_id="evt_old",
                                         event_type="customer.created", payload={"id": 1}, next_attempt_at=timezone.now())
    assert delivery_created_at(old.pk) is None
    assert WebhookDelivery.objects.of_id(old.pk).get() == old
    plan = WebhookDelivery.objects.of_id(old.pk).explain()
    assert len(set(re.findall(r"accounts_webhookdelivery_p(?:\d{4}_\d{2}|_legacy)\b", plan))) > 1, "one probe per month"
    # an outbox message written before the partitioning has no delivery_created_at: still delivered
    message = OutboxMessage.objects.create(topic=WEBHOOK_TOPIC, payload={"delivery_id": str(old.pk)}, next_attempt_at=timezone.now())
    assert webhook_deliver(message).status == WebhookDelivery.Status.DELIVERED
    assert WebhookAttempt.objects.get(delivery=old).delivery_created_at == old.created_at


# --- Hot paths name the month --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_handler_a_retry_the_detail_and_the_redeliver_api_name_the_month(org, endpoint, receiver, client_a):
    delivery = _publish(org)
    assert _message(delivery).payload["delivery_created_at"] == delivery.created_at.isoformat()
    receiver.statuses = [503]
    with CaptureQueriesContext(connection) as failed:
        with pytest.raises(WebhookAttemptFailed):
            webhook_deliver(_message(delivery))
    with CaptureQueriesContext(connection) as retried:
        assert webhook_deliver(_message(delivery)).status == WebhookDelivery.Status.DELIVERED
    with CaptureQueriesContext(connection) as detail:
        body = client_a.get(f"{API}/{delivery.pk}").json()
    assert body["id"] == str(delivery.pk) and len(body["attempts"]) == 2
    with CaptureQueriesContext(connection) as redelivered:
        response = client_a.post(f"{API}/{delivery.pk}/redeliver")
    assert response.status_code == 202 and response.json()["id"] == str(delivery.pk)
    for captured in (failed, retried, detail, redelivered):
        assert any("accounts_webhookdelivery" in q["sql"] for q in captured.captured_queries)
        assert _by_id_without_month(captured.captured_queries) == []
    assert _message(delivery).payload == {"delivery_id": str(delivery.pk), "delivery_created_at": delivery.created_at.isoformat()}
    assert client_a.get(f"{API}/{uuid.uuid4()}").status_code == 404
    assert client_a.get(f"{API}/{delivery_id_at(delivery.created_at + timedelta(microseconds=1))}").status_code == 404


# --- Migration 0011 on tables with rows ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_tables_with_rows_and_back(pg, org):
    latest = latest_migrations()
    endpoint, _ = webhook_endpoint_create(organization=org.organization, url="http://127.0.0.1:9/hook", events=["*"])
    try:
        made = [_publish(org) for _ in range(3)]
        for delivery in made:
            WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url, status_code=500)
        _migrate([("accounts", "0010_customer_webhookendpoint_livemode")])
        assert not is_partitioned(DELIVERIES) and not is_partitioned(ATTEMPTS)
        # a delivery of before: a UUIDv4, months old, with an attempt (the old schema's columns)
        old_id, old_at = uuid.uuid4(), timezone.now() - timedelta(days=70)
        _sql(f"INSERT INTO {DELIVERIES} (id, event_id, event_type, payload, status, attempt_count, last_error, created_at, updated_at,"
             " organization_id, endpoint_id) VALUES (%s, 'evt_old', 'customer.created', '{}', 'delivered', 1, '', %s, %s, %s, %s)",
             [old_id, old_at, old_at, org.organization.pk, endpoint.pk])
        _sql(f"INSERT INTO {ATTEMPTS} (attempted_at, url, duration_ms, response_excerpt, error, succeeded, delivery_id)"
             " VALUES (%s, 'http://x', 3, '', '', true, %s)", [old_at, old_id])
        before = _sql(f"SELECT id, status, created_at FROM {DELIVERIES} ORDER BY id")
        attempts_before = _sql(f"SELECT id, delivery_id FROM {ATTEMPTS} ORDER BY id")
        assert len(before) == 4 and len(attempts_before) == 4

        _migrate(latest)
        assert is_partitioned(DELIVERIES) and is_partitioned(ATTEMPTS)
        assert _sql(f"SELECT id, status, created_at FROM {DELIVERIES} ORDER BY id") == before
        assert _sql(f"SELECT id, delivery_id FROM {ATTEMPTS} ORDER BY id") == attempts_before
        assert _sql(f"SELECT count(*) FROM {ATTEMPTS} a JOIN {DELIVERIES} d ON d.id = a.delivery_id AND d.created_at = a.delivery_created_at")[0][0] == 4
        assert {_partition_of(DELIVERIES, "id", pk) for pk, *_ in before} == {f"{DELIVERIES}_p_legacy"}
        assert {_partition_of(ATTEMPTS, "id", pk) for pk, _ in attempts_before} == {f"{ATTEMPTS}_p_legacy"}
        assert _legacy_end(DELIVERIES) == _legacy_end(ATTEMPTS) == add_months(month_start(timezone.now()), 1)
        assert WebhookDelivery.objects.of_id(old_id).get().created_at == old_at  # the UUIDv4: every month probed
        assert WebhookDelivery.objects.of_id(made[0].pk).get() == made[0]
        new = _publish(org)  # the engine writes on: attempt ids continue the identity
        assert WebhookAttempt.objects.create(delivery=new, url=endpoint.url).pk > attempts_before[-1][0]
        with pytest.raises(IntegrityError), transaction.atomic():
            WebhookAttempt.objects.create(delivery_id=uuid.uuid4(), delivery_created_at=new.created_at, url="http://x")
        assert entry_partitions_ensure() == []  # the months ahead exist for both

        _migrate([("accounts", "0010_customer_webhookendpoint_livemode")])  # and back: plain tables, every row
        assert not is_partitioned(DELIVERIES) and not is_partitioned(ATTEMPTS)
        assert _sql(f"SELECT count(*) FROM {DELIVERIES}")[0][0] == 5 and _sql(f"SELECT count(*) FROM {ATTEMPTS}")[0][0] == 5
        assert _primary_key(DELIVERIES) == ["id"]
        [(fk,)] = _sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'", [ATTEMPTS])
        assert fk.startswith("FOREIGN KEY (delivery_id) REFERENCES accounts_webhookdelivery(id)")
    finally:
        _migrate(latest)
    assert is_partitioned(DELIVERIES) and WebhookDelivery.objects.count() == 5
