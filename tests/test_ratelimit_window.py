"""The shared request budget (connectors.ratelimit) is a sliding window: whatever all workers together
send, never more than the budget in any 60 s, across a minute's edge too (the fixed per-minute counter
used before let twice the budget through there); the wait it answers is honest (after it, a request
goes); concurrent workers never take more than the budget. Redis and SQL (SQLite here, PostgreSQL when
available) alike."""
from __future__ import annotations

import random
import threading
import uuid

import pytest

from connectors.ratelimit import BUDGET_WINDOW_SECONDS, RedisWindowLimiter, SqlWindowLimiter


def most_in_any_minute(times: list[float]) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - BUDGET_WINDOW_SECONDS:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.fixture(params=["redis", "sqlite", "postgresql"])
def limiters(request, tmp_path):
    """A maker of limiters that share one budget (as the workers of one deployment do)."""
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        key = f"test:ratelimit:{uuid.uuid4()}"
        yield lambda limit, clock: RedisWindowLimiter(redis.Redis.from_url(url), key, limit, clock=clock)
        redis.Redis.from_url(url).delete(key)
        return
    from sqlalchemy import create_engine, text

    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'budget.db'}")
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
    table = f"test_rate_windows_{uuid.uuid4().hex[:12]}"
    key = f"zendesk:{uuid.uuid4()}"
    yield lambda limit, clock: SqlWindowLimiter(engine, key, limit, table=table, clock=clock)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_a_minute_edge_lets_no_second_budget_through(limiters):
    now = [6059.5]  # half a second before a minute's edge
    workers = [limiters(5, lambda: now[0]) for _ in range(3)]
    assert [workers[i % 3].try_acquire() for i in range(5)] == [0.0] * 5
    now[0] = 6060.5  # a fixed per-minute window would start afresh here
    waits = [workers[i % 3].try_acquire() for i in range(5)]
    assert all(wait > 55 for wait in waits)
    now[0] += waits[0]
    assert workers[1].try_acquire() == 0.0  # the answered wait was enough


def test_random_traffic_from_many_workers_stays_within_the_budget_in_every_minute(limiters):
    rng = random.Random(7)
    now = [10_000.0]
    workers = [limiters(20, lambda: now[0]) for _ in range(4)]
    granted: list[float] = []
    for _ in range(600):
        now[0] += rng.expovariate(1.0)  # about 60 attempts a minute for a budget of 20
        if rng.choice(workers).try_acquire() == 0.0:
            granted.append(now[0])
    assert most_in_any_minute(granted) <= 20
    assert len(granted) >= 20 * (now[0] - 10_000.0) / 61.0 * 0.9  # and the budget is used, not starved


def test_concurrent_workers_take_exactly_the_budget(limiters):
    limit = 40
    workers = [limiters(limit, lambda: 9000.0) for _ in range(4)]
    results: list[float] = []
    lock = threading.Lock()

    def worker(limiter):
        for _ in range(25):
            wait = limiter.try_acquire()
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 100 and results.count(0.0) == limit
