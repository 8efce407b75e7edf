"""Client-side request budget (connectors.ratelimit): in-process bucket and the Redis-shared window."""
from __future__ import annotations

import uuid

import pytest

from connectors.ratelimit import RedisWindowLimiter, TokenBucket, limiter_for, shared_redis_url


def test_bucket_allows_a_burst_of_the_budget_then_asks_to_wait():
    now = [100.0]
    bucket = TokenBucket(120, clock=lambda: now[0])  # 2 per second
    assert all(bucket.try_acquire() == 0.0 for _ in range(120))
    assert bucket.try_acquire() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_bucket_refills_no_higher_than_its_capacity():
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])
    now[0] += 3600
    assert sum(bucket.try_acquire() == 0.0 for _ in range(100)) == 60


def test_local_limiter_is_shared_per_account(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("QUEUE_URL", raising=False)
    key = f"zendesk:{uuid.uuid4()}.zendesk.com"
    assert limiter_for(key, 100) is limiter_for(key, 100)
    assert limiter_for(key, 100) is not limiter_for(key + "x", 100)


def test_redis_is_chosen_from_queue_url(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("QUEUE_URL", "sqlite:///var/queue.db")
    assert shared_redis_url() is None
    monkeypatch.setenv("QUEUE_URL", "redis://queue.internal:6379/2")
    assert shared_redis_url() == "redis://queue.internal:6379/2"
    assert isinstance(limiter_for("zendesk:acme", 10), RedisWindowLimiter)  # no connection until used


@pytest.mark.redis
def test_redis_window_is_one_budget_for_all_workers(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"test:ratelimit:{uuid.uuid4()}"
    now = [6000.0 + 10]  # 10 s into a window
    workers = [RedisWindowLimiter(redis.Redis.from_url(redis_url), key, 5, clock=lambda: now[0]) for _ in range(3)]
    granted = [workers[i % 3].try_acquire() for i in range(9)]
    assert granted[:5] == [0.0] * 5
    assert granted[5:] == [pytest.approx(50.0)] * 4  # everyone waits for the next window
    now[0] += 50
    assert workers[2].try_acquire() == 0.0
    assert 0 < client.ttl(f"{key}:{int(now[0] // 60)}") <= 120
    client.delete(*client.keys(f"{key}:*"))
