"""The task queue (huey), chosen by QUEUE_URL.

- `sqlite:///var/queue.db` (default): SqliteHuey, one file beside the database; one machine. The queue
  file runs with `synchronous=NORMAL` (WAL): a commit survives a killed process but is not fsynced.
  huey's default (`FULL`) fsyncs every enqueue, which cost the webhook ~2-3 ms per delivery on top of
  the event row's own durable commit; a task lost to a power cut is re-created by the reconciler from
  the event rows, which are the durable part.
- `redis://host:6379/0`: RedisHuey.
- `postgresql://...` (or `postgresql+psycopg://`): huey's own PostgresHuey (huey >= 3.5 ships a
  psycopg 3 storage with LISTEN/NOTIFY wake-ups and `FOR UPDATE SKIP LOCKED` dequeue), in tables
  `huey_task`, `huey_schedule`, `huey_kv`, `huey_counter`, so no extra service is needed at scale.
- `memory://`: in-process, for tests.

The queue only carries hints ("look at ticket X", "timer Y is due"). The database rows are the truth:
a task lost with its worker is re-created by the reconciler from the rows.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey
from huey.storage import SqliteStorage
from sqlalchemy import make_url

from connectors.base import redact_url

QUEUE_NAME = "escalation"


class QueueConfigError(ValueError):
    pass


class HintSqliteStorage(SqliteStorage):
    """SqliteStorage without an fsync per commit (WAL + synchronous=NORMAL): the queue holds hints.

    Enqueues take turns on an flock of `<queue file>.enqueue-lock`: the web processes all enqueue into the
    one file, and SQLite makes a second writer poll with growing sleeps (1, 2, 5, 10 ms...), which kept a
    web process's group commit leader asleep while the other's enqueue committed; the kernel wakes an
    flock waiter as soon as the lock is free. Other writers (a worker's dequeue) are still serialized by
    SQLite itself."""

    _lock_file: Any = None
    _lock_pid = 0

    def _create_connection(self):  # noqa: ANN202 - huey's signature
        conn = super()._create_connection()
        conn.execute("pragma synchronous=1")
        return conn

    def enqueue(self, data, priority=None):  # noqa: ANN001, ANN201 - huey's signature
        if self._lock_file is None or self._lock_pid != os.getpid():  # an inherited descriptor shares the lock
            self._lock_file = open(f"{self.filename}.enqueue-lock", "a+b")  # noqa: SIM115 - kept for the process
            self._lock_pid = os.getpid()
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
        try:
            return super().enqueue(data, priority)
        finally:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)


class HintSqliteHuey(SqliteHuey):
    storage_class = HintSqliteStorage


def build_huey(queue_url: str, *, name: str = QUEUE_NAME) -> Huey:
    scheme = queue_url.split("://", 1)[0].lower() if "://" in queue_url else ""
    # Results are never read: the database records every outcome.
    common = {"results": False, "utc": True}
    if scheme == "sqlite":
        try:
            database = make_url(queue_url).database
        except Exception:  # noqa: BLE001 - sqlalchemy's message quotes the whole URL
            raise QueueConfigError(f"QUEUE_URL {describe(queue_url)} is not a valid sqlite URL") from None
        if not database or database == ":memory:":
            raise QueueConfigError("QUEUE_URL sqlite:// needs a file path, e.g. sqlite:///var/queue.db")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        return HintSqliteHuey(name, filename=database, **common)
    if scheme in ("redis", "rediss", "unix"):
        return RedisHuey(name, url=queue_url, **common)
    if scheme.startswith("postgres"):
        dsn = "postgresql://" + queue_url.split("://", 1)[1]
        return PostgresHuey(name, dsn=dsn, **common)
    if scheme == "memory":
        return MemoryHuey(name, **common)
    raise QueueConfigError(
        f"QUEUE_URL {describe(queue_url)!r}: scheme {scheme or '(none)'!r} is not supported: use sqlite:///path, redis://host:port/db "
        "or postgresql://user@host/db"
    )


def describe(queue_url: str) -> str:
    """The queue URL without credentials (`scheme://user:***@host/db`), for errors, logs and health."""
    return redact_url(queue_url)


def ping(huey: Huey) -> str:
    try:
        huey.pending_count()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health probe
        return f"unreachable: {type(exc).__name__}"
