"""A fake helpdesk behind the Connector interface, for pipeline tests and the end-to-end process test.

Tickets live in a store: in memory (`MemoryStore`) or as JSON files in a directory (`FileStore`, shared
between processes, guarded by a file lock). Every apply is appended to the store's write log, so a
test can count exactly what reached the "vendor". Writes check the snapshot's version token like
Zendesk's safe_update: a stale snapshot raises Conflict.

Worker and serve processes get a FakeConnector over a FileStore through tests/support/worker_entry.py;
`fetch_delay` and `apply_delay` hold a pass where a process test wants to stop or kill it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from connectors.base import ApplyProgress, ApplyResult, Conflict, ConnectorDefaults, NotFound
from integration.model import Decision, Person, Ticket

BOT_USER_ID = "integration-bot"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def ticket_record(ticket_id: str, **overrides: Any) -> dict[str, Any]:
    record = {
        "id": str(ticket_id),
        "subject": f"Ticket {ticket_id}",
        "status": "open",
        "priority": "normal",
        "tags": [],
        "group": None,
        "organization": "acme",
        "requester": {"id": "cust-1", "name": "Casey Customer", "email": "casey@example.com"},
        "fields": {},
        # Unset unless a test says: a level's clocks start at the vendor's times (creation, last change),
        # and a fixed past time would put every ticket's clocks in the past of the test's clock.
        "created_at": None,
        "updated_at": None,
        "first_public_agent_reply_at": None,
        "last_public_agent_reply_at": None,
        "satisfaction": None,
        "version": 1,
    }
    record.update(overrides)
    return record


class MemoryStore:
    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield

    def load(self, ticket_id: str) -> dict[str, Any] | None:
        record = self.tickets.get(str(ticket_id))
        return json.loads(json.dumps(record)) if record else None

    def save(self, record: dict[str, Any]) -> None:
        self.tickets[str(record["id"])] = json.loads(json.dumps(record))

    def append_write(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)

    def writes(self) -> list[dict[str, Any]]:
        return list(self.log)


class FileStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        (self.directory / "tickets").mkdir(parents=True, exist_ok=True)
        self._lock_path = self.directory / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _path(self, ticket_id: str) -> Path:
        return self.directory / "tickets" / f"{ticket_id}.json"

    def load(self, ticket_id: str) -> dict[str, Any] | None:
        path = self._path(str(ticket_id))
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, record: dict[str, Any]) -> None:
        path = self._path(str(record["id"]))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def append_write(self, entry: dict[str, Any]) -> None:
        with open(self.directory / "writes.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def writes(self) -> list[dict[str, Any]]:
        path = self.directory / "writes.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class FakeConnector(ConnectorDefaults):
    vendor: str
    store: Any = field(default_factory=MemoryStore)
    user_id: str | None = BOT_USER_ID
    # Failure injection (memory tests): exceptions raised by the next calls, in order.
    fetch_failures: list[BaseException] = field(default_factory=list)
    apply_failures: list[BaseException] = field(default_factory=list)
    # Called after a successful write, before apply returns (simulate a crash right after the vendor call).
    after_write: Callable[[dict[str, Any]], None] | None = None
    fetch_count: int = 0
    # Changes made "by an agent" between our fetch and our write (conflict tests): applied once per call.
    concurrent_edits: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # for changed_since
    # Seconds each fetch waits before reading (a pass holds its claimed events that long), and each write
    # waits after reaching the store (a window between the vendor write and the pass's final commit).
    fetch_delay: float = 0.0
    apply_delay: float = 0.0

    # ---- test helpers
    def put(self, ticket_id: str, **overrides: Any) -> dict[str, Any]:
        record = ticket_record(ticket_id, **overrides)
        with self.store.locked():
            self.store.save(record)
        return record

    def edit(self, ticket_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        with self.store.locked():
            record = self.store.load(ticket_id)
            change(record)
            record["version"] += 1
            self.store.save(record)

    def writes(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        return [w for w in self.store.writes() if ticket_id is None or w["ticket_id"] == str(ticket_id)]

    def replies(self, ticket_id: str | None = None) -> list[str]:
        return [w["public_reply"] for w in self.writes(ticket_id) if w.get("public_reply")]

    # ---- Connector
    def fetch_ticket(self, ticket_id: str) -> Ticket:
        self.fetch_count += 1
        if self.fetch_delay:
            time.sleep(self.fetch_delay)
        if self.fetch_failures:
            raise self.fetch_failures.pop(0)
        record = self.store.load(str(ticket_id))
        if record is None:
            raise NotFound(f"ticket {ticket_id} not found")
        requester = record.get("requester") or {}
        return Ticket(
            vendor=self.vendor,
            id=str(record["id"]),
            subject=record.get("subject", ""),
            status=record.get("status", "open"),
            priority=record.get("priority"),
            tags=frozenset(record.get("tags") or ()),
            organization=record.get("organization"),
            group=record.get("group"),
            requester=Person(requester.get("id"), requester.get("name"), requester.get("email")),
            fields=dict(record.get("fields") or {}),
            created_at=_time(record.get("created_at")),
            updated_at=_time(record.get("updated_at")),
            first_public_agent_reply_at=_time(record.get("first_public_agent_reply_at")),
            last_public_agent_reply_at=_time(record.get("last_public_agent_reply_at")),
            satisfaction=record.get("satisfaction"),
            # When attributes changed, as the vendor's history tells (Jira changelog, Zendesk audits).
            field_changed_at={k: _time(v) for k, v in (record.get("field_changed_at") or {}).items() if v},
            version_token=str(record["version"]),
        )

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        if self.apply_failures:
            raise self.apply_failures.pop(0)
        if not decision.writes_to_ticket:
            return ApplyResult(writes=0)
        with self.store.locked():
            record = self.store.load(ticket.id)
            if record is None:
                raise NotFound(f"ticket {ticket.id} not found")
            if self.concurrent_edits:
                self.concurrent_edits.pop(0)(record)
                record["version"] += 1
                self.store.save(record)
            if str(record["version"]) != ticket.version_token:
                raise Conflict(f"ticket {ticket.id} changed since it was read")
            if decision.priority:
                record["priority"] = decision.priority
            if decision.owner_group:
                record["group"] = decision.owner_group
            tags = (set(record.get("tags") or ()) - set(decision.remove_tags)) | set(decision.add_tags)
            record["tags"] = sorted(tags)
            record["fields"] = {**(record.get("fields") or {}), **dict(decision.field_updates)}
            record["version"] += 1
            record["updated_at"] = datetime.now(timezone.utc).isoformat()
            self.store.save(record)
            entry = {
                "ticket_id": ticket.id,
                "pid": os.getpid(),
                "at": record["updated_at"],
                "to_level": decision.to_level,
                "public_reply": decision.public_reply,
                "internal_note": decision.internal_note,
                "priority": decision.priority,
                "add_tags": list(decision.add_tags),
                "field_updates": {k: str(v) for k, v in decision.field_updates.items()},
            }
            self.store.append_write(entry)
        if self.after_write is not None:
            self.after_write(entry)
        if self.apply_delay:
            time.sleep(self.apply_delay)
        return ApplyResult(writes=1, requests=[{"method": "PUT", "path": f"/tickets/{ticket.id}", "status": 200}])

    def own_user_id(self) -> str | None:
        return self.user_id

    def changed_since(self, watermark: str | None) -> Iterator[tuple[str, str]]:
        for ticket_id, mark in self.changed:
            if watermark is None or mark > watermark:
                yield ticket_id, mark


# ------------------------------------------------------------------ pipeline test environment
class ManualClock:
    """An injectable `now()` the tests move forward (lease expiry, backoff)."""

    def __init__(self, start: datetime | None = None):
        self.value = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.value = self.value + timedelta(seconds=seconds)


def postgres_schema_url(base_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema on the test PostgreSQL database; returns (url, drop)."""
    import uuid
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    schema = f"esc_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"

    def drop() -> None:
        from sqlalchemy import make_url

        from integration.store.db import reset_databases
        from integration.store.events import _WriterTurns

        reset_databases()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
        turn_file = _WriterTurns.file_for(make_url(url))  # the web sink's, one per database URL
        if turn_file:
            Path(turn_file).unlink(missing_ok=True)

    return url, drop


def make_settings(database_url: str, queue_url: str = "memory://", **overrides: Any) -> Any:
    from service.settings import Settings

    values = {
        "DATABASE_URL": database_url,
        "QUEUE_URL": queue_url,
        "MATRIX_PATH": str(Path(__file__).resolve().parents[2] / "matrix_config" / "examples" / "enterprise.yaml"),
        "DRY_RUN": False,
        "LEASE_SECONDS": 30,
        "MAX_ATTEMPTS": 3,
    }
    values.update(overrides)
    return Settings(**values)


def make_runtime(settings: Any, connector: Any, *, clock: Any = None, clocks: Any = "default", huey: Any = None) -> Any:
    """A Runtime over `settings` whose every vendor is `connector` (a FakeConnector)."""
    from integration.store.db import Database
    from service.runtime import Runtime

    db = Database(settings.database_url)
    db.migrate()
    overrides: dict[str, Any] = {"backoff_base": 0.01}
    if clock is not None:
        overrides["now"] = clock
    if clocks != "default":
        overrides["clocks"] = clocks
    return Runtime(settings, db=db, huey=huey, connector_factory=lambda vendor: connector, **overrides)


def neutral_event(ticket_id: str, delivery_id: str | None, *, vendor: str = "zendesk", actor_id: str | None = None,
                  event_type: str = "ticket.updated", handled: bool = True) -> Any:
    from integration.model import NeutralEvent

    return NeutralEvent(vendor=vendor, ticket_id=str(ticket_id), event_type=event_type, delivery_id=delivery_id,
                        actor_id=actor_id, handled=handled)
