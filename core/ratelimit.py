"""Rate limiting: one counter mechanism for every throttle (`accounts.identity.throttles` on top of it).

Invariants:
- A hit is counted only if it is allowed, atomically with the check: on Redis one Lua script, one
  round trip, so concurrent requests of one caller cannot all slip through on a stale read (DRF's
  `SimpleRateThrottle` reads a history list and writes it back: two round trips, lost updates).
- The window slides: the count is this fixed window's hits plus the previous window's weighted by
  how much of it still overlaps the sliding window (Cloudflare's approximation); no burst of twice
  the rate across a window boundary, and memory is two integers per caller.
- Other caches (local memory for `make run`, a dummy cache) get the same arithmetic without the
  atomicity, which they do not need in one process.
- The cache being down never refuses a request: the limiter answers "allowed" and logs it (money
  is guarded by the database, not by throttles).
- A verdict also says what is left (`remaining`, `reset`): the request middleware turns the
  verdicts of a request (`collect_verdicts`) into the IETF RateLimit fields (core.requestid).
"""

from __future__ import annotations

import logging
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass

from django.core.cache import caches

logger = logging.getLogger("coffer.ratelimit")

# KEYS[1] this window's counter, KEYS[2] the previous one; ARGV: limit, weight of the previous
# window, counter lifetime in ms. Returns {allowed (0|1), this window's count, previous count}.
_SLIDING_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[2]) + current >= tonumber(ARGV[1]) then
  return {0, current, previous}
end
current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, current, previous}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until a hit would be allowed again (0 when allowed)
    limit: int = 0  # the quota (0: unknown, the cache was down)
    remaining: int = 0  # hits still allowed now, this one counted
    reset: float = 0.0  # seconds until the quota is whole again (end of this fixed window; retry_after when refused)
    window: float = 0.0
    policy: str = ""  # the throttle scope, from the key (`throttle_<scope>_<ident>`)


_verdicts: ContextVar[list | None] = ContextVar("coffer_ratelimit_verdicts", default=None)


def collect_verdicts() -> list:
    """From now on in this context (one request), every verdict is also appended to the list returned."""
    seen: list = []
    _verdicts.set(seen)
    return seen


def _policy(key: str) -> str:
    if key.startswith("throttle_"):
        return key[len("throttle_"):].split("_", 1)[0]
    return key.split(":", 1)[0]


_scripts: dict[int, object] = {}


def _backend():
    return caches["default"]


def _redis_script(backend):
    """The script registered on the cache's Redis client, or None when the cache is not Redis."""
    if not backend.__class__.__module__.startswith("django_redis"):
        return None
    client = backend.client.get_client(write=True)
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_SLIDING_WINDOW)
    return script


def _retry_after(*, limit: int, window: float, elapsed: float, current: int, previous: int) -> float:
    """When previous * (1 - (elapsed + t) / window) + current drops below `limit`."""
    if current >= limit or previous <= 0:
        return max(window - elapsed, 0.001)
    t = window * (1 - (limit - current) / previous) - elapsed
    return min(max(t, 0.001), window - elapsed)


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """DRF's rate notation ("20/min", "5/s", "1000/day") as (limit, window in seconds)."""
    count, _, period = str(rate).partition("/")
    return int(count), _PERIODS[period.strip()[:1].lower()]


def hit(key: str, *, limit: int, window: float, now: float | None = None) -> Verdict:
    """Count one hit for `key` if fewer than `limit` fall in the last `window` seconds."""
    now = time.time() if now is None else now
    index = math.floor(now / window)
    elapsed = now - index * window
    weight = 1 - elapsed / window
    current_key, previous_key = f"rl:{key}:{index}", f"rl:{key}:{index - 1}"
    lifetime = window * 2 + 1
    backend = _backend()
    try:
        script = _redis_script(backend)
        if script is not None:
            allowed, current, previous = script(
                keys=[backend.make_key(current_key), backend.make_key(previous_key)],
                args=[limit, repr(weight), int(lifetime * 1000)],
            )
        else:
            counts = backend.get_many([current_key, previous_key])
            current, previous = counts.get(current_key, 0), counts.get(previous_key, 0)
            allowed = previous * weight + current < limit
            if allowed:
                backend.add(current_key, 0, timeout=lifetime)
                current = backend.incr(current_key)
    except Exception as exc:  # the cache is down: throttles fail open, the database guards money
        logger.warning("rate limit %s not checked: cache unavailable (%s)", key.split(":", 1)[0], exc.__class__.__name__)
        return Verdict(True, 0.0)
    used = previous * weight + int(current)
    if allowed:
        verdict = Verdict(True, 0.0, limit, max(int(limit - used), 0), window - elapsed, window, _policy(key))
    else:
        wait = _retry_after(limit=limit, window=window, elapsed=elapsed, current=int(current), previous=int(previous))
        verdict = Verdict(False, wait, limit, 0, wait, window, _policy(key))
    seen = _verdicts.get()
    if seen is not None:
        seen.append(verdict)
    return verdict
