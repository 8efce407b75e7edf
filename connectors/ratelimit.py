"""Client-side request budget for one vendor account, shared by every worker of a deployment.

The limiter never sleeps: `try_acquire()` answers 0.0 (go) or the seconds to wait. The connector turns a
wait into `RateLimited(retry_after=...)`, so the one retry layer (`connectors.retry`) does all waiting and
a long wait re-queues the task instead of blocking a worker.

- `TokenBucket`: in-process, for the embedded single-process default (a full bucket plus its refill can
  send up to twice the budget in one minute; one process on SQLite is the only user).
- `RedisWindowLimiter`: a sliding window in Redis (a sorted set of the requests let through, checked and
  taken by one Lua script), shared by all processes and hosts that use the same Redis and key: never more
  than the budget in any 60 s (a fixed per-minute counter, used before, let up to 2x through across a
  minute's edge).
- `SqlWindowLimiter`: the same sliding window in the service's own PostgreSQL (one row per account and
  second, checked and taken by one statement under an advisory lock), for deployments that scale workers
  out on PostgreSQL without Redis. Its table is created on first use (CREATE TABLE IF NOT EXISTS),
  outside the Alembic migrations: it holds only disposable counters.

`limiter_for` picks Redis when given a Redis URL (the service passes REDIS_URL, or a redis:// QUEUE_URL:
`shared_redis_url`), else PostgreSQL when the database URL it is given is PostgreSQL, else the in-process
bucket (one process, or SQLite: a single host). It reads no settings itself: the caller that builds the
connector passes both URLs from the service's settings.
"""
from __future__ import annotations

import itertools
import logging
import math
import re
import threading
import time
import uuid
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

# The vendor's budget is per minute ("N in any 60 s" as the vendor counts arrivals). The shared limiters
# count what they let through over one second more: a request is stamped when it is let through and
# arrives a little later, so a send delay of up to a second (a busy worker, a new connection) still
# keeps every 60 s of arrivals within the budget. tests/support/soak_zendesk_double.py measures arrivals.
BUDGET_WINDOW_SECONDS = 60.0
SEND_ALLOWANCE_SECONDS = 1.0
COUNTED_WINDOW_SECONDS = BUDGET_WINDOW_SECONDS + SEND_ALLOWANCE_SECONDS


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


# A sliding log in one sorted set per account (score = the time a request was let through): drop what left
# the window, count, add when under the limit. One script, so every worker's check-and-take is atomic.
_REDIS_SLIDING_LOG = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RedisWindowLimiter:
    """At most `requests_per_minute` requests let through in any `window` seconds, for every process that
    uses the same Redis and key (a sliding log: one sorted-set entry per request, at most the budget's
    worth per account)."""

    def __init__(
        self,
        redis_client,
        key: str,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        window_seconds: float = COUNTED_WINDOW_SECONDS,
    ):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.redis = redis_client
        self.key = key
        self.limit = requests_per_minute
        self.window = float(window_seconds)
        self._clock = clock
        self._script = redis_client.register_script(_REDIS_SLIDING_LOG)
        self._member_prefix = uuid.uuid4().hex[:12]
        self._counter = itertools.count()

    def try_acquire(self) -> float:
        now = self._clock()
        member = f"{self._member_prefix}:{next(self._counter)}"
        wait = float(self._script(keys=[self.key], args=[repr(now), repr(self.window), self.limit, member]))
        return 0.0 if wait <= 0 else max(0.01, wait)


class PerKeyWindow:
    """At most `limit` uses per key within any rolling `window` seconds, in-process: Zendesk's
    "30 updates per ticket per 10 minutes" (per user and ticket, answered with 429). The service's own
    updates to one ticket come from the worker processing that ticket's events, so a budget of this
    process is the one that matters; a second process writing the same ticket still meets Zendesk's 429,
    which the retry layer honours."""

    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        if limit <= 0 or window_seconds <= 0:
            raise ValueError("limit and window_seconds must be positive")
        self.limit = limit
        self.window = float(window_seconds)
        self._clock = clock
        self._max_keys = max_keys
        self._uses: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def try_acquire(self, key: str, count: int = 1) -> float:
        """Take `count` uses for `key` at once (all or none): 0.0 if taken, else seconds until they fit."""
        with self._lock:
            now = self._clock()
            uses = [t for t in self._uses.get(key, []) if t > now - self.window]
            if len(uses) + count > self.limit:
                self._uses[key] = uses
                oldest_to_expire = uses[max(0, len(uses) + count - self.limit - 1)]
                return max(0.01, oldest_to_expire + self.window - now)
            self._uses.pop(key, None)
            self._uses[key] = uses + [now] * count
            while len(self._uses) > self._max_keys:
                self._uses.pop(next(iter(self._uses)))
            return 0.0


SQL_TABLE = "escalation_rate_windows"
_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SqlWindowLimiter:
    """At most `requests_per_minute` requests in any `window` seconds per account, counted in a SQL table
    shared by every worker process: one row per account and second (`window_start` is a unix second). A
    request is let through when the seconds that overlap the window (the current one and those back to
    `now - window`, counted whole, so the count never falls short) hold fewer than the budget; check and
    take are one `INSERT ... SELECT ... WHERE (count) < limit ON CONFLICT DO UPDATE ... RETURNING`, under a
    transaction-scoped advisory lock per account on PostgreSQL (READ COMMITTED would let two concurrent
    statements both see room for one); SQLite serialises writers itself.

    `engine` is a SQLAlchemy engine (PostgreSQL in production; SQLite >= 3.35 understands the same
    statement, which the tests use too). A database error fails open (the request goes ahead, a warning
    is logged): the budget is a courtesy to the account's other integrations, and Zendesk's own 429 with
    Retry-After still stops us."""

    def __init__(self, engine: Any, key: str, requests_per_minute: int, *, table: str = SQL_TABLE,
                 clock: Callable[[], float] = time.time, window_seconds: float = COUNTED_WINDOW_SECONDS):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        if not _SQL_IDENTIFIER.fullmatch(table):
            raise ValueError(f"invalid table name {table!r}")
        self.engine = engine
        self.key = key
        self.limit = requests_per_minute
        self.table = table
        self.window = float(window_seconds)
        self._clock = clock
        self._ready = False
        self._ready_lock = threading.Lock()

    def _ensure_table(self) -> None:
        if self._ready:
            return
        from sqlalchemy import text

        with self._ready_lock:
            if self._ready:
                return
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Workers starting together: IF NOT EXISTS alone still races on PostgreSQL (a
                    # unique violation in its catalog), which would send that request unbudgeted.
                    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                       {"name": f"create {self.table}"})
                connection.execute(text(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    " account_key VARCHAR(255) NOT NULL,"
                    " window_start BIGINT NOT NULL,"
                    " request_count INTEGER NOT NULL,"
                    " PRIMARY KEY (account_key, window_start))"))
            self._ready = True

    def try_acquire(self) -> float:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        now = self._clock()
        second = int(math.floor(now))
        oldest = int(math.floor(now - self.window))
        params = {"key": self.key, "second": second, "oldest": oldest, "limit": self.limit}
        try:
            self._ensure_table()
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": self.key})
                taken = connection.execute(text(
                    f"INSERT INTO {self.table} (account_key, window_start, request_count) "
                    f"SELECT CAST(:key AS VARCHAR(255)), CAST(:second AS BIGINT), 1 WHERE (SELECT COALESCE(SUM(request_count), 0) FROM {self.table} "
                    f"WHERE account_key = :key AND window_start >= :oldest) < :limit "
                    f"ON CONFLICT (account_key, window_start) "
                    f"DO UPDATE SET request_count = {self.table}.request_count + 1 "
                    f"RETURNING request_count"), params).first()
                if taken is not None:
                    if taken[0] == 1:
                        # The first request of a second sweeps this account's seconds that left the window.
                        connection.execute(text(f"DELETE FROM {self.table} WHERE account_key = :key "
                                                f"AND window_start < :oldest"), params)
                    return 0.0
                seconds = connection.execute(text(
                    f"SELECT window_start, request_count FROM {self.table} WHERE account_key = :key "
                    f"AND window_start >= :oldest ORDER BY window_start"), params).all()
        except SQLAlchemyError as error:
            log.warning("shared request budget unavailable (%s); sending without it", type(error).__name__)
            return 0.0
        # Room for one more once enough of the oldest seconds have left the window.
        to_leave = sum(count for _, count in seconds) - self.limit + 1
        for window_start, count in seconds:
            to_leave -= count
            if to_leave <= 0:
                return max(0.01, window_start + 1 + self.window - now)
        return 0.01


_sql_engines: dict[str, Any] = {}
_local_buckets: dict[str, TokenBucket] = {}
_local_lock = threading.Lock()


def shared_redis_url(redis_url: str | None, queue_url: str | None = None) -> str | None:
    """REDIS_URL, else QUEUE_URL when it is the queue's Redis; None when neither is a Redis URL."""
    for value in (redis_url, queue_url):
        if value and value.startswith(REDIS_SCHEMES):
            return value
    return None


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _sql_engine(database_url: str) -> Any:
    with _local_lock:
        engine = _sql_engines.get(database_url)
        if engine is None:
            from sqlalchemy import create_engine

            url = database_url
            if url.startswith(("postgresql://", "postgres://")):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            engine = _sql_engines[database_url] = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        return engine


def limiter_for(account_key: str, requests_per_minute: int, *, redis_url: str | None,
                database_url: str | None) -> RateLimiter:
    """The limiter for one vendor account (`account_key`, e.g. "zendesk:acme.zendesk.com").

    1. Redis when `redis_url` is given (see `shared_redis_url`);
    2. else PostgreSQL when `database_url` is postgresql://, so scaled-out workers share one budget
       either way;
    3. otherwise one in-process bucket per account for this process."""
    key = f"escalation:ratelimit:{account_key}"
    if redis_url:
        import redis

        return RedisWindowLimiter(redis.Redis.from_url(redis_url), key, requests_per_minute)
    if is_postgres_url(database_url):
        return SqlWindowLimiter(_sql_engine(str(database_url)), key, requests_per_minute)
    with _local_lock:
        bucket = _local_buckets.get(account_key)
        if bucket is None or bucket.capacity != requests_per_minute:
            bucket = _local_buckets[account_key] = TokenBucket(requests_per_minute)
        return bucket
