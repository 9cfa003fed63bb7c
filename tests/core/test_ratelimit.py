"""core.ratelimit: the one counter behind every throttle (atomic on Redis, sliding window, fail open)."""

import pytest
from django.core.cache import caches

from core import ratelimit
from tests.concurrency import run_in_threads

WINDOW = 10.0
T0 = 1_000_000.0  # a window boundary (1e6 / 10 is whole)


def _redis() -> bool:
    return caches["default"].__class__.__module__.startswith("django_redis")


def test_allows_up_to_the_limit_then_refuses_with_retry_after():
    verdicts = [ratelimit.hit("t:a", limit=3, window=WINDOW, now=T0 + 1) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after == pytest.approx(9.0)


def test_a_refused_hit_is_not_counted():
    for _ in range(5):
        ratelimit.hit("t:b", limit=2, window=WINDOW, now=T0 + 1)
    # Next window, 90% of the previous one still overlaps: 2 * 0.9 = 1.8 < 2 -> one more allowed.
    assert ratelimit.hit("t:b", limit=2, window=WINDOW, now=T0 + WINDOW + 1).allowed
    assert not ratelimit.hit("t:b", limit=2, window=WINDOW, now=T0 + WINDOW + 1).allowed


def test_the_window_slides_across_the_boundary():
    for _ in range(10):
        assert ratelimit.hit("t:c", limit=10, window=WINDOW, now=T0 + 9).allowed
    # Just past the boundary the previous window's 10 hits still weigh 9.9: no burst of 2x the rate.
    assert ratelimit.hit("t:c", limit=10, window=WINDOW, now=T0 + WINDOW + 0.1).allowed  # 9.9 + 0 < 10
    early = ratelimit.hit("t:c", limit=10, window=WINDOW, now=T0 + WINDOW + 0.1)  # 9.9 + 1 >= 10
    assert not early.allowed
    # previous 10 * (1 - (0.1 + t) / 10) + 1 < 10 from t > 0.9 s on
    assert early.retry_after == pytest.approx(0.9)
    # Half-way through the next window half the previous weight is left: 5 more fit.
    allowed = [ratelimit.hit("t:c", limit=10, window=WINDOW, now=T0 + WINDOW + 5).allowed for _ in range(5)]
    assert allowed == [True] * 4 + [False]  # 10 * 0.5 + 1 (the early one) + 4 = 10


def test_keys_are_independent():
    assert ratelimit.hit("t:d1", limit=1, window=WINDOW, now=T0).allowed
    assert not ratelimit.hit("t:d1", limit=1, window=WINDOW, now=T0).allowed
    assert ratelimit.hit("t:d2", limit=1, window=WINDOW, now=T0).allowed


def test_concurrent_hits_never_exceed_the_limit():
    """64 threads hitting one key at once: DRF's read-modify-write let several through on one read;
    the counter lets exactly `limit` through (on Redis, one atomic script)."""
    if not _redis():
        pytest.skip("atomicity across processes is Redis's; the local-memory cache is one process")
    results = run_in_threads(64, lambda i: ratelimit.hit("t:race", limit=10, window=60.0).allowed)
    assert sum(1 for r in results if r is True) == 10
    assert all(isinstance(r, bool) for r in results), results


def test_one_round_trip_on_redis(monkeypatch):
    if not _redis():
        pytest.skip("round trips are Redis's")
    import redis

    ratelimit.hit("t:warm", limit=5, window=WINDOW)  # registers the script (SCRIPT LOAD on first miss)
    sent = []
    original = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    assert ratelimit.hit("t:rt", limit=5, window=WINDOW).allowed
    assert sent == ["EVALSHA"]


def test_cache_down_fails_open_and_says_so(caplog, monkeypatch):
    from django_redis.cache import RedisCache

    down = RedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}})
    monkeypatch.setattr(ratelimit, "_backend", lambda: down)
    verdicts = [ratelimit.hit("t:down", limit=1, window=WINDOW) for _ in range(3)]
    assert all(v.allowed for v in verdicts)
    assert "cache unavailable" in caplog.text
