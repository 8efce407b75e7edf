"""Client-side request budget (connectors.ratelimit): in-process bucket, the Redis- and the SQL-shared
window; and how the one retry layer (connectors.retry) treats the waits they and Zendesk ask for."""
from __future__ import annotations

import uuid

import pytest

from connectors.base import RateLimited
from connectors.ratelimit import (
    RedisWindowLimiter,
    SqlWindowLimiter,
    TokenBucket,
    limiter_for,
    shared_redis_url,
)
from connectors.retry import RetryPolicy, call_with_retry


@pytest.fixture
def no_shared_store(monkeypatch):
    for name in ("REDIS_URL", "QUEUE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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


def test_local_limiter_is_shared_per_account(no_shared_store):
    key = f"zendesk:{uuid.uuid4()}.zendesk.com"
    local = {"redis_url": None, "database_url": None}
    assert limiter_for(key, 100, **local) is limiter_for(key, 100, **local)
    assert limiter_for(key, 100, **local) is not limiter_for(key + "x", 100, **local)


def _budget_of_the_built_connector(monkeypatch, settings):
    """The request budget of the Zendesk connector the service builds from `settings`."""
    from service.connectors import build_connector
    from tests.support.jira_helpers import enterprise_matrix

    for name, value in (("ZENDESK_SUBDOMAIN", "acme"), ("ZENDESK_EMAIL", "bot@acme.example"),
                        ("ZENDESK_API_TOKEN", "budget-token")):
        monkeypatch.setenv(name, value)
    return build_connector("zendesk", settings, enterprise_matrix()).client.limiter


def test_redis_is_chosen_from_redis_url_else_from_a_redis_queue_url(no_shared_store):
    from service.settings import Settings

    monkeypatch = no_shared_store
    assert shared_redis_url(None, "sqlite:///var/queue.db") is None
    assert shared_redis_url(None, "redis://queue.internal:6379/2") == "redis://queue.internal:6379/2"
    assert shared_redis_url("redis://cache.internal:6379/0", "redis://queue.internal:6379/2") == \
        "redis://cache.internal:6379/0"
    monkeypatch.setenv("QUEUE_URL", "redis://queue.internal:6379/2")
    limiter = _budget_of_the_built_connector(monkeypatch, Settings())  # no connection until used
    assert isinstance(limiter, RedisWindowLimiter)
    assert limiter.redis.connection_pool.connection_kwargs["host"] == "queue.internal"


def test_redis_url_in_a_dotenv_file_shares_the_budget(no_shared_store, tmp_path):
    from service.settings import Settings

    # The service reads its settings from the environment *and* `.env`; the budget's store must too.
    no_shared_store.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_URL=redis://cache.internal:6379/3\n", encoding="utf-8")
    limiter = _budget_of_the_built_connector(no_shared_store, Settings())
    assert isinstance(limiter, RedisWindowLimiter)
    assert limiter.redis.connection_pool.connection_kwargs["host"] == "cache.internal"


def test_explicit_settings_decide_the_store(no_shared_store):
    from service.settings import Settings

    settings = Settings(_env_file=None, REDIS_URL="redis://cache.internal:6379/0")
    assert isinstance(_budget_of_the_built_connector(no_shared_store, settings), RedisWindowLimiter)
    settings = Settings(_env_file=None, DATABASE_URL="postgresql://postgres@db.internal/escalation")
    assert isinstance(_budget_of_the_built_connector(no_shared_store, settings), SqlWindowLimiter)


@pytest.mark.redis
def test_redis_window_is_one_budget_for_all_workers(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"test:ratelimit:{uuid.uuid4()}"
    now = [6000.0 + 10]
    workers = [RedisWindowLimiter(redis.Redis.from_url(redis_url), key, 5, clock=lambda: now[0]) for _ in range(3)]
    granted = [workers[i % 3].try_acquire() for i in range(9)]
    assert granted[:5] == [0.0] * 5
    assert granted[5:] == [pytest.approx(61.0)] * 4  # everyone waits until the first five leave the window
    now[0] += 61
    assert workers[2].try_acquire() == 0.0
    assert 0 < client.pttl(key) <= 61_000
    client.delete(key)


# ------------------------------------------------------------------------------ SQL-shared window
def test_postgres_is_chosen_without_redis_and_redis_still_wins(no_shared_store):
    from service.settings import Settings

    monkeypatch = no_shared_store
    sqlite = "sqlite:///var/escalation.db"
    assert isinstance(limiter_for(f"zendesk:{uuid.uuid4()}", 10, redis_url=None, database_url=sqlite),
                      TokenBucket)  # SQLite: one host, one process
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert isinstance(limiter_for("zendesk:acme", 10, redis_url=None, database_url=pg), SqlWindowLimiter)  # no connection yet
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@db.internal/escalation")
    assert isinstance(_budget_of_the_built_connector(monkeypatch, Settings()), SqlWindowLimiter)
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    assert isinstance(_budget_of_the_built_connector(monkeypatch, Settings()), RedisWindowLimiter)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def budget_engine(request, tmp_path):
    """(engine, table) for the SQL budget; concurrency on both is in tests/test_ratelimit_window.py."""
    from sqlalchemy import create_engine, text

    if request.param == "sqlite":
        engine, table = create_engine(f"sqlite:///{tmp_path / 'budget.db'}"), "rate_windows"
    else:
        engine, table = create_engine(request.getfixturevalue("postgres_url")), f"test_rate_windows_{uuid.uuid4().hex[:12]}"
    try:
        yield engine, table
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_sql_window_is_one_budget_for_all_workers_and_each_account_has_its_own(budget_engine):
    engine, table = budget_engine
    now = [6000.0 + 10]
    key = f"zendesk:{uuid.uuid4()}"
    workers = [SqlWindowLimiter(engine, key, 5, table=table, clock=lambda: now[0]) for _ in range(3)]
    granted = [workers[i % 3].try_acquire() for i in range(9)]
    assert granted[:5] == [0.0] * 5
    # Everyone waits until the first five leave the window (counted in whole seconds: 61 s + their second).
    assert granted[5:] == [pytest.approx(62.0)] * 4
    other = SqlWindowLimiter(engine, key + "-other", 5, table=table, clock=lambda: now[0])
    assert other.try_acquire() == 0.0  # another account has its own budget
    now[0] += 62
    assert workers[2].try_acquire() == 0.0


def test_sql_window_fails_open_when_the_database_is_unreachable(tmp_path, caplog):
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'budget.db'}")
    assert SqlWindowLimiter(engine, "zendesk:acme", 1).try_acquire() == 0.0
    assert "shared request budget unavailable" in caplog.text


# ----------------------------------------------------------------------- retry layer and long waits
def test_a_long_retry_after_is_raised_at_once_and_a_short_one_is_slept():
    sleeps: list[float] = []
    policy = RetryPolicy(sleep=sleeps.append)
    calls = []

    def rate_limited(seconds):
        calls.append(seconds)
        if len(calls) == 1:
            raise RateLimited("429", retry_after=seconds)
        return "done"

    with pytest.raises(RateLimited) as raised:
        call_with_retry(rate_limited, 30.0, policy=policy)
    assert raised.value.retry_after == 30.0 and calls == [30.0] and sleeps == []
    calls.clear()
    assert call_with_retry(rate_limited, 7.0, policy=policy) == "done"
    assert calls == [7.0, 7.0] and sleeps == [7.0]


def test_redis_url_is_shown_redacted_and_a_wrong_scheme_is_refused_without_its_value():
    from pydantic import ValidationError

    from service.settings import Settings

    settings = Settings(_env_file=None, REDIS_URL="redis://worker:s3cret-pw@cache.internal:6379/0")
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in settings.describe_redis()
    assert settings.describe_redis() == "redis://worker:***@cache.internal:6379/0"
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, REDIS_URL="http://worker:s3cret-pw@cache.internal")
    message = "; ".join(e["msg"] for e in raised.value.errors())
    assert "redis://" in message and "s3cret-pw" not in message
