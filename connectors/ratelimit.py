"""Client-side request budget for one vendor account, shared by every worker of a deployment.

The limiter never sleeps: `try_acquire()` answers 0.0 (go) or the seconds to wait. The connector turns a
wait into `RateLimited(retry_after=...)`, so the one retry layer (`connectors.retry`) does all waiting and
a long wait re-queues the task instead of blocking a worker.

- `TokenBucket`: in-process, for the embedded single-process default.
- `RedisWindowLimiter`: a fixed one-minute window counter in Redis (INCR + EXPIRE), shared by all
  processes and hosts that use the same Redis and key. A fixed window may let up to 2x the budget through
  across a window edge in the worst case; the default budget (400 of Enterprise's 700/min) leaves room.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Protocol
from urllib.parse import urlsplit


class RateLimiter(Protocol):
    def try_acquire(self) -> float:
        """Take one request from the budget: 0.0 if taken, else seconds until one may be available."""


class TokenBucket:
    def __init__(self, requests_per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.capacity = float(requests_per_minute)
        self.rate_per_second = requests_per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate_per_second)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate_per_second


class RedisWindowLimiter:
    def __init__(
        self,
        redis_client,
        key: str,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
    ):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.redis = redis_client
        self.key = key
        self.limit = requests_per_minute
        self._clock = clock

    def try_acquire(self) -> float:
        now = self._clock()
        window = int(now // 60)
        window_key = f"{self.key}:{window}"
        pipe = self.redis.pipeline()
        pipe.incr(window_key)
        pipe.expire(window_key, 120)
        count, _ = pipe.execute()
        if int(count) <= self.limit:
            return 0.0
        return max(0.01, (window + 1) * 60 - now)


_local_buckets: dict[str, TokenBucket] = {}
_local_lock = threading.Lock()


def shared_redis_url() -> str | None:
    for name in ("REDIS_URL", "QUEUE_URL"):
        value = os.environ.get(name, "")
        if value.startswith(("redis://", "rediss://")):
            return value
    return None


def limiter_for(account_key: str, requests_per_minute: int, *, redis_url: str | None = None) -> RateLimiter:
    """The limiter for one vendor account (`account_key`, e.g. "zendesk:acme.zendesk.com").

    Redis when `redis_url` (or REDIS_URL / QUEUE_URL from the environment) is redis://, so scaled-out
    workers share one budget; otherwise one in-process bucket per account for this process."""
    redis_url = redis_url or shared_redis_url()
    if redis_url:
        import redis

        return RedisWindowLimiter(redis.Redis.from_url(redis_url), f"escalation:ratelimit:{account_key}", requests_per_minute)
    with _local_lock:
        bucket = _local_buckets.get(account_key)
        if bucket is None or bucket.capacity != requests_per_minute:
            bucket = _local_buckets[account_key] = TokenBucket(requests_per_minute)
        return bucket


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url
