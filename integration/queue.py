"""The task queue (huey), chosen by QUEUE_URL.

- `sqlite:///var/queue.db` (default): SqliteHuey, one file beside the database; one machine.
- `redis://host:6379/0`: RedisHuey.
- `postgresql://...` (or `postgresql+psycopg://`): huey's own PostgresHuey (huey >= 3.5 ships a
  psycopg 3 storage with LISTEN/NOTIFY wake-ups and `FOR UPDATE SKIP LOCKED` dequeue), in tables
  `huey_task`, `huey_schedule`, `huey_kv`, `huey_counter`, so no extra service is needed at scale.
- `memory://`: in-process, for tests.

The queue only carries hints ("look at ticket X", "timer Y is due"). The database rows are the truth:
a task lost with its worker is re-created by the reconciler from the rows.
"""
from __future__ import annotations

from pathlib import Path

from huey import Huey, MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey
from sqlalchemy import make_url

QUEUE_NAME = "escalation"


class QueueConfigError(ValueError):
    pass


def build_huey(queue_url: str, *, name: str = QUEUE_NAME) -> Huey:
    scheme = queue_url.split("://", 1)[0].lower() if "://" in queue_url else ""
    # Results are never read: the database records every outcome.
    common = {"results": False, "utc": True}
    if scheme == "sqlite":
        database = make_url(queue_url).database
        if not database or database == ":memory:":
            raise QueueConfigError("QUEUE_URL sqlite:// needs a file path, e.g. sqlite:///var/queue.db")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=database, **common)
    if scheme in ("redis", "rediss", "unix"):
        return RedisHuey(name, url=queue_url, **common)
    if scheme.startswith("postgres"):
        dsn = "postgresql://" + queue_url.split("://", 1)[1]
        return PostgresHuey(name, dsn=dsn, **common)
    if scheme == "memory":
        return MemoryHuey(name, **common)
    raise QueueConfigError(
        f"QUEUE_URL scheme {scheme or queue_url!r} is not supported: use sqlite:///path, redis://host:port/db "
        "or postgresql://user@host/db"
    )


def describe(queue_url: str) -> str:
    """The queue URL without credentials, for logs and health output."""
    try:
        return make_url(queue_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a description must never fail or leak
        return queue_url.split("://", 1)[0] + "://…"


def ping(huey: Huey) -> str:
    try:
        huey.pending_count()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health probe
        return f"unreachable: {type(exc).__name__}"
