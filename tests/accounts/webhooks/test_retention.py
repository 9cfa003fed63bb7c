"""The retention of webhook deliveries and attempts (WEBHOOK_DELIVERY_RETENTION_DAYS;
accounts.webhooks.retention, the hourly beat task accounts.tasks.purge_webhook_deliveries).

On PostgreSQL: a month whose partition ends before the cutoff and holds no pending delivery is
detached and dropped whole, attempts' month first, the legacy partition included; a month past
the cutoff that still holds a pending delivery loses its finished deliveries row by row (their
attempts by the cascade); the month the cutoff falls in, and later ones, are kept whole; a
second run has nothing to do; outside a transaction the detach is CONCURRENT, and what an
interrupted run left is finished. Everywhere: the row path (SQLite's, or tables not
partitioned) deletes only finished deliveries past the cutoff, with their attempts, in batches.
A delivery past retention is not redelivered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as tz

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import WebhookAttempt, WebhookDelivery
from accounts.models.webhooks import delivery_id_at
from accounts.tasks import purge_webhook_deliveries
from accounts.webhooks.retention import MARK, _delete_finished, _detach_and_drop, _finish_interrupted, retention_cutoff, webhook_deliveries_purge
from accounts.webhooks.services import webhook_endpoint_create
from ledger.partitions import _legacy_end, add_months, create_month_sql, month_start, partition_name, partitions

DELIVERIES, ATTEMPTS = "accounts_webhookdelivery", "accounts_webhookattempt"
DELIVERED, FAILED, PENDING = WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED, WebhookDelivery.Status.PENDING


def _sql(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _names(table: str) -> set[str]:
    return {name for name, _ in partitions(table)}


@pytest.fixture
def pg():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL declarative partitioning")


@pytest.fixture
def endpoint(org):
    made, _ = webhook_endpoint_create(organization=org.organization, url="http://127.0.0.1:9/hook", events=["*"])
    return made


def _delivery(endpoint, at: datetime, status: str, attempts: int = 1) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        id=delivery_id_at(at), organization=endpoint.organization, endpoint=endpoint, event_id=f"evt_{at:%Y%m%d%H}",
        event_type="customer.created", payload={}, status=status,
    )
    for _ in range(attempts):
        WebhookAttempt.objects.create(delivery=delivery, url=endpoint.url, attempted_at=at)
    return delivery


def _at(month, day: int) -> datetime:
    return datetime(month.year, month.month, day, 10, tzinfo=tz.utc)


@pytest.fixture
def past_months(pg):
    """The webhook tables as a database partitioned five months ago has them: the legacy
    partitions end five months back, one partition a month since. DDL inside the test's
    transaction: rolled back with it."""
    current = month_start(timezone.now())
    first = add_months(current, -5)
    legacy_end = _legacy_end(DELIVERIES)
    for table in (ATTEMPTS, DELIVERIES):
        _sql(f"ALTER TABLE {table} DETACH PARTITION {table}_p_legacy")
    for table in (DELIVERIES, ATTEMPTS):
        _sql(f"ALTER TABLE {table} ATTACH PARTITION {table}_p_legacy FOR VALUES FROM (MINVALUE) TO ('{first.isoformat()} 00:00:00+00')")
        month = first
        while month < legacy_end:  # the months the legacy partition covered
            _sql(create_month_sql(table, month))
            month = add_months(month, 1)
    return [add_months(first, n) for n in range(5)]


@pytest.mark.postgres
@pytest.mark.django_db
def test_months_past_retention_go_whole_once_finished_and_rows_go_only_around_a_pending_one(past_months, endpoint, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 45
    m5, m4, m3, m2, m1 = past_months
    now = datetime(add_months(m1, 1).year, add_months(m1, 1).month, 1, 12, tzinfo=tz.utc)  # cutoff: mid m2
    assert add_months(m2, 1) > retention_cutoff(now).date() > m2
    ancient = _delivery(endpoint, _at(add_months(m5, -1), 3), DELIVERED)  # the legacy partition
    whole = [_delivery(endpoint, _at(m5, 2), FAILED), _delivery(endpoint, _at(m4, 3), DELIVERED, attempts=3), _delivery(endpoint, _at(m4, 27), FAILED)]
    stuck = _delivery(endpoint, _at(m3, 5), PENDING)
    around_stuck = [_delivery(endpoint, _at(m3, 6), DELIVERED, attempts=2), _delivery(endpoint, _at(m3, 7), FAILED)]
    straddling = _delivery(endpoint, _at(m2, 1), DELIVERED)  # past the cutoff, in the month the cutoff falls in
    recent = _delivery(endpoint, _at(m1, 20), DELIVERED)
    assert {(d.pk, d.created_at) for d in WebhookDelivery.objects.all()} == {
        (d.pk, d.created_at) for d in [ancient, *whole, stuck, *around_stuck, straddling, recent]}
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # the rows' deferred checks, before this transaction detaches their partitions

    result = webhook_deliveries_purge(now=now, batch_size=1)
    gone_months = [partition_name(t, m) for m in (m5, m4) for t in (ATTEMPTS, DELIVERIES)]
    assert result == {"dropped": [*gone_months, f"{ATTEMPTS}_p_legacy", f"{DELIVERIES}_p_legacy"], "deleted": 2}
    for table in (DELIVERIES, ATTEMPTS):
        assert _names(table) >= {partition_name(table, m) for m in (m3, m2, m1)}
        assert not _names(table) & {partition_name(table, m5), partition_name(table, m4), f"{table}_p_legacy"}
        assert not _sql("SELECT 1 FROM pg_class WHERE relname = %s", [partition_name(table, m4)])  # dropped, not only detached
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {stuck.pk, straddling.pk, recent.pk}
    assert set(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == {stuck.pk, straddling.pk, recent.pk}

    assert webhook_deliveries_purge(now=now) == {"dropped": [], "deleted": 0}
    WebhookDelivery.objects.filter(pk=stuck.pk).update(status=FAILED)  # it finishes: its month goes
    _sql("SET CONSTRAINTS ALL IMMEDIATE")
    assert webhook_deliveries_purge(now=now) == {"dropped": [partition_name(ATTEMPTS, m3), partition_name(DELIVERIES, m3)], "deleted": 0}
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {straddling.pk, recent.pk}


@pytest.mark.django_db
def test_the_row_path_deletes_only_finished_deliveries_past_the_cutoff_with_their_attempts(endpoint, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    now = timezone.now()
    old = [_delivery(endpoint, now - timedelta(days=40 + n), status, attempts=2) for n, status in enumerate((DELIVERED, FAILED, DELIVERED))]
    old_pending = _delivery(endpoint, now - timedelta(days=41, hours=5), PENDING)
    young = _delivery(endpoint, now - timedelta(days=29), DELIVERED)
    assert _delete_finished(retention_cutoff(now), batch_size=2) == 3
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {old_pending.pk, young.pk}
    assert set(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == {old_pending.pk, young.pk}
    assert not any(WebhookDelivery.objects.filter(pk=d.pk).exists() for d in old)
    if connection.vendor != "postgresql":  # SQLite: the task takes this path
        assert webhook_deliveries_purge(now=now) == {"dropped": [], "deleted": 0}


@pytest.mark.django_db
def test_a_delivery_past_retention_is_not_redelivered(org, client_a, endpoint, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    old = _delivery(endpoint, timezone.now() - timedelta(days=31), FAILED)
    response = client_a.post(f"/api/v1/webhook-deliveries/{old.pk}/redeliver")
    assert response.status_code == 409 and "30 days" in response.json()["error"]["message"]
    young = _delivery(endpoint, timezone.now() - timedelta(days=29), FAILED)
    assert client_a.post(f"/api/v1/webhook-deliveries/{young.pk}/redeliver").status_code == 202


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_months_are_detached_concurrently_and_an_interrupted_run_is_finished(pg, endpoint):
    far = add_months(month_start(timezone.now()), 40)  # months nobody else uses; dropped in `finally`
    farther = add_months(far, 1)
    made = [(table, month) for month in (far, farther) for table in (DELIVERIES, ATTEMPTS)]
    try:
        for table, month in made:
            _sql(create_month_sql(table, month))
        delivery = _delivery(endpoint, _at(far, 9), DELIVERED, attempts=2)
        _detach_and_drop(ATTEMPTS, partition_name(ATTEMPTS, far))
        _detach_and_drop(DELIVERIES, partition_name(DELIVERIES, far))
        assert not WebhookDelivery.objects.filter(pk=delivery.pk).exists() and not WebhookAttempt.objects.filter(delivery_id=delivery.pk).exists()
        assert not _sql("SELECT 1 FROM pg_class WHERE relname IN (%s, %s)", [partition_name(DELIVERIES, far), partition_name(ATTEMPTS, far)])

        # a run killed after detaching the deliveries' month, another before detaching the attempts'
        attempts_month, deliveries_month = partition_name(ATTEMPTS, farther), partition_name(DELIVERIES, farther)
        _sql(f"COMMENT ON TABLE {attempts_month} IS '{MARK}'")
        _sql(f"DROP TABLE {attempts_month}")
        _sql(f"COMMENT ON TABLE {deliveries_month} IS '{MARK}'")
        _sql(f"ALTER TABLE {DELIVERIES} DETACH PARTITION {deliveries_month}")
        _sql(create_month_sql(ATTEMPTS, farther))
        _sql(f"COMMENT ON TABLE {attempts_month} IS '{MARK}'")
        assert _finish_interrupted() == [deliveries_month]
        assert not _sql("SELECT 1 FROM pg_class WHERE relname = %s", [deliveries_month])
        assert attempts_month in _names(ATTEMPTS) and _sql("SELECT obj_description(%s::regclass, 'pg_class')", [attempts_month]) == [(None,)]

        # the beat task on this database: nothing is past the default retention
        assert purge_webhook_deliveries.apply().get() == {"dropped": [], "deleted": 0}
    finally:
        for table, month in made:
            _sql(f"DROP TABLE IF EXISTS {partition_name(table, month)}")
