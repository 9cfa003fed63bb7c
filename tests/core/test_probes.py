"""/health always answers; /ready names what is down (a dead Redis cache, a dead broker)."""

import time

import pytest
from django.test import override_settings

DEAD_REDIS = "redis://127.0.0.1:6390/0"  # nothing listens there
# Overriding CACHES makes Django drop its cache connections (django.test.signals), so the
# probe really talks to the dead address.
DEAD_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": DEAD_REDIS,
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
}


@pytest.mark.django_db
def test_health_is_always_200(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_when_everything_is_up(client):
    response = client.get("/ready")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_ready_names_a_dead_redis_cache(client):
    with override_settings(CACHES=DEAD_CACHE):
        started = time.monotonic()
        response = client.get("/ready")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["cache"]
    assert body["checks"] == {"database": "ok", "cache": "down", "broker": "ok"}
    assert elapsed < 10


@pytest.mark.django_db
def test_ready_names_a_dead_broker(client):
    with override_settings(CELERY_BROKER_URL=DEAD_REDIS):
        started = time.monotonic()
        response = client.get("/ready")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
    assert response.json()["checks"]["broker"] == "down"
    assert elapsed < 15


@pytest.mark.django_db
def test_health_stays_up_when_dependencies_are_down(client):
    with override_settings(CACHES=DEAD_CACHE, CELERY_BROKER_URL=DEAD_REDIS):
        assert client.get("/health").status_code == 200
        response = client.get("/ready")
    assert response.status_code == 503 and response.json()["down"] == ["cache", "broker"]
