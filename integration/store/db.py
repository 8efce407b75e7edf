"""Durable storage: SQLAlchemy 2 models, engine and session factory.

SQLite (the default, one file in WAL mode) and PostgreSQL (`postgresql+psycopg://`) share one schema,
created by the Alembic migrations in `integration/store/migrations` (`Database.migrate()`).

Every timestamp is stored as UTC. SQLite has no time zone type, so `UtcDateTime` stores naive UTC and
hands back aware datetimes; code outside this module only ever sees aware UTC datetimes.

The tables are shaped so the metrics the matrix exists for are plain queries (`integration.metrics`):
`milestones` holds one row per (ticket, level, clock) with the elapsed seconds already computed,
`decisions` carries the issue type and a `direction` (placed/up/down/same), and `csat` records the
level a rating arrived at and whether the ticket had been escalated by then.
"""
from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from connectors.base import redact_url


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


# Autoincrement ids: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class EventRow(Base):
    """One webhook delivery (or a catch-up scan hint). The row, not the queue, is the truth."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("vendor", "delivery_id", name="uq_events_delivery"),
        UniqueConstraint("vendor", "content_hash", name="uq_events_content"),
        Index("ix_events_ticket_status", "vendor", "ticket_id", "status"),
        Index("ix_events_status_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(80))
    delivery_id: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # pending -> processing -> done | ignored | dead; processing with an expired lease -> pending again
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision_id: Mapped[int | None] = mapped_column(BigId)


class TicketStateRow(Base):
    __tablename__ = "ticket_state"

    vendor: Mapped[str] = mapped_column(String(16), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The whole TicketState as JSON (the truth, robust to fields added to the model); the columns below
    # repeat the parts that queries and admins look at.
    state: Mapped[dict] = mapped_column(JSON)
    level: Mapped[str | None] = mapped_column(String(64))
    entered_level_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    matrix_version: Mapped[str | None] = mapped_column(String(64))
    rule_id: Mapped[str | None] = mapped_column(String(80))
    bypassed: Mapped[bool] = mapped_column(Boolean, default=False)
    pending_level: Mapped[str | None] = mapped_column(String(64))
    data_requested: Mapped[list] = mapped_column(JSON, default=list)
    milestones: Mapped[dict] = mapped_column(JSON, default=dict)  # clock -> ISO time, at the current level
    last_public_update_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Ticket facts from the last pass, for metrics and for "resolved, then reopened" re-pinning.
    issue_type: Mapped[str | None] = mapped_column(String(64))
    organization: Mapped[str | None] = mapped_column(String(200))
    requester: Mapped[str | None] = mapped_column(String(200))  # vendor id, else e-mail (CSAT around incidents)
    status: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    satisfaction: Mapped[str | None] = mapped_column(String(16))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)  # ever above the entry level (moved or placed)
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # ticket creation at the vendor
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DecisionRow(Base):
    """Audit log: one row per decision made (also the write-ahead intent of a vendor write, see pipeline)."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_ticket", "vendor", "ticket_id", "decided_at"),
        Index("ix_decisions_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trigger: Mapped[str] = mapped_column(String(80))  # "events", "timer:<id>", "scan"
    from_level: Mapped[str | None] = mapped_column(String(64))
    to_level: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str | None] = mapped_column(String(8))  # placed | up | down | same, when to_level is set
    issue_type: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    rule_id: Mapped[str | None] = mapped_column(String(80))
    matrix_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[dict] = mapped_column(JSON)
    state_after: Mapped[dict | None] = mapped_column(JSON)  # what the state becomes once applied
    # applying (intent written, vendor call in flight) -> applied | dry_run | noop | conflict | failed
    # | recovered (found applied after a crash) | abandoned (found not applied after a crash)
    status: Mapped[str] = mapped_column(String(16))
    api_result: Mapped[dict | None] = mapped_column(JSON)
    writes: Mapped[int] = mapped_column(Integer, default=0)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Per-part delivery (connectors.base.PART_*), see integration.pipeline: {"since": snapshot time,
    # "written": [...], "sending": [...]} while `applying`; {"outcome": {part: written | visible | resent
    # | unconfirmed | not sent | assumed}} once closed. None: a row that writes nothing, or from before 0002.
    parts: Mapped[dict | None] = mapped_column(JSON)


class TimerRow(Base):
    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("vendor", "ticket_id", "kind", "clock", "level", "due_at", name="uq_timers_spec"),
        Index("ix_timers_status_due", "status", "due_at"),
        Index("ix_timers_ticket", "vendor", "ticket_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # warning | breach | cadence | ...
    clock: Mapped[str] = mapped_column(String(32), default="")  # "" rather than NULL keeps the unique key strict
    level: Mapped[str] = mapped_column(String(64), default="")
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    matrix_version: Mapped[str | None] = mapped_column(String(64))
    fraction: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | fired | cancelled
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WatermarkRow(Base):
    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MatrixVersionRow(Base):
    __tablename__ = "matrix_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MilestoneRow(Base):
    """A clock met at a level: time to acknowledge / diagnose / ... is `elapsed_seconds`."""

    __tablename__ = "milestones"
    __table_args__ = (UniqueConstraint("vendor", "ticket_id", "level", "entered_level_at", "clock", name="uq_milestone"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(64))
    issue_type: Mapped[str | None] = mapped_column(String(64))
    clock: Mapped[str] = mapped_column(String(32))
    entered_level_at: Mapped[datetime] = mapped_column(UtcDateTime)
    met_at: Mapped[datetime] = mapped_column(UtcDateTime)
    elapsed_seconds: Mapped[float] = mapped_column(Float)  # wall-clock seconds from entering the level
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)  # written by a dry-run pass (0004)


class CsatRow(Base):
    __tablename__ = "csat"
    __table_args__ = (UniqueConstraint("vendor", "ticket_id", "rated_at", name="uq_csat"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    score_raw: Mapped[str] = mapped_column(String(16))  # as the vendor reports it: good/bad or 1..5
    score: Mapped[float] = mapped_column(Float)  # normalized to 0..1
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    level: Mapped[str | None] = mapped_column(String(64))
    issue_type: Mapped[str | None] = mapped_column(String(64))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)  # above the entry level (moved or placed) by then
    # Whose rating it is, for CSAT before/after an incident (0004): the ticket's organization and requester
    # (vendor id, else e-mail) as the connector reported them when the rating arrived.
    organization: Mapped[str | None] = mapped_column(String(200))
    requester: Mapped[str | None] = mapped_column(String(200))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)  # recorded by a dry-run pass (0004)


class SnapshotRow(Base):
    """The ticket a pass decided on, as the connector normalized it (integration.snapshots): zlib-compressed
    compact JSON, no credentials. `escalation replay` re-runs a draft matrix over these; pruned after
    SNAPSHOT_RETENTION_DAYS. `decision_id` is the decision row the pass wrote (None: it decided nothing)."""

    __tablename__ = "snapshots"
    __table_args__ = (
        Index("ix_snapshots_ticket", "vendor", "ticket_id", "taken_at"),
        Index("ix_snapshots_taken_at", "taken_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the pass's time (its `now`)
    trigger: Mapped[str] = mapped_column(String(80))  # "events", "timer:<id>"
    matrix_version: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int | None] = mapped_column(BigId)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    ticket: Mapped[bytes] = mapped_column(LargeBinary)


class LeaseRow(Base):
    """Named leases: one worker per ticket at a time; one consumer runs each periodic job."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UtcDateTime)


# ------------------------------------------------------------------------------------ engine
def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The pysqlite driver's own transaction handling defers BEGIN; take control so a write
    # transaction starts with BEGIN IMMEDIATE (no lock upgrade deadlocks between processes).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the event row's commit is the one durable write a webhook delivery makes before its 2xx,
    # so it must survive a power cut too (NORMAL in WAL mode only survives a killed process). The
    # queue file, which holds hints only, runs with NORMAL (service.queue).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


class DatabaseConfigError(ValueError):
    """DATABASE_URL cannot be used; the message shows the URL redacted."""


class Database:
    """One engine + session factory per URL and process. `url` may hold a password: show `describe()`."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = make_engine(url)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver messages may quote the URL
            raise DatabaseConfigError(
                f"DATABASE_URL {self.describe()} cannot be used ({type(exc).__name__})") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def describe(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Database({self.describe()!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on error."""
        with self.sessions() as session:
            with session.begin():
                yield session

    def migrate(self) -> None:
        from integration.store.migrations import upgrade  # alembic, only when migrating

        upgrade(self.engine)

    def ping(self) -> str:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return "ok"
        except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
            return f"unreachable: {type(exc).__name__}"

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def get_database(url: str, *, migrate: bool = True) -> Database:
    """The process-wide Database for `url`, migrated to the latest schema on first use."""
    with _databases_lock:
        db = _databases.get(url)
        if db is None:
            db = Database(url)
            if migrate:
                db.migrate()
            _databases[url] = db
        return db


def reset_databases() -> None:
    """Forget cached engines (tests, and forked processes that must not share connections)."""
    with _databases_lock:
        for db in _databases.values():
            db.dispose()
        _databases.clear()
