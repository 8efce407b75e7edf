"""The durable EventSink the webhook edge hands deliveries to, and the event-row operations the
workers, the reconciler and `escalation events` use.

`accept` returns only after the event row is durably committed (the edge answers 2xx only after it).
Deliveries that arrive while a commit is in flight are committed together, in one transaction, by the
next commit (group commit: one fsync for the batch, see `_GroupCommit`); none of them returns before it.
The batch is one INSERT ... ON CONFLICT DO NOTHING: a redelivery of a stored row is not inserted and is
answered as its duplicate. A value the database refuses does not fail the others: the batch is then
inserted row by row. A store that is down fails every member (503 each). The web process's sink
(`enqueue_tickets`, or no queue at all) sends that INSERT straight through the DB driver on a connection
it keeps, in autocommit mode: the statement is its own transaction, durably committed when it returns
(`_DirectInsert`); a sink with a per-ticket `enqueue` runs it in a SQLAlchemy transaction that also
decides the tasks (`_decide_tasks`).
After the commit, processing is enqueued for the batch's tickets, except a ticket that already had a
pending, unclaimed event: that event's task is queued (or, if its enqueue failed, the reconciler
enqueues it) and a pass claims every pending event of its ticket, so a second task would only find
nothing to do. With `enqueue_tickets` (the web process) the whole batch is one queue message and the
worker taking it applies that rule (`tickets_without_earlier_pending`); with a per-ticket `enqueue` the
rule is applied in the insert's transaction (`_decide_tasks`). Either way a burst of five deliveries
for one ticket makes one pass.

Why the skipped enqueue cannot strand an event (the race with a pass that is finishing):
- `_decide_tasks` looks for an earlier pending event in the insert's transaction; on SQLite write transactions
  are serialized (BEGIN IMMEDIATE), on PostgreSQL the earlier row is read `FOR UPDATE`, which waits for
  a claim in flight. So either the claim committed first (the earlier event is `processing`, not
  pending: this delivery enqueues its own task) or this row committed before the claim completed;
- a pass claims again after each round and, once it releases the ticket, looks once more for pending
  events that are due and enqueues the ticket if it finds any (integration.pipeline.cycle.process_ticket).
If an enqueue fails the row is still there: the reconciler enqueues pending rows the queue forgot.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from connectors.base import redact_urls_in_text
from integration.store.db import Database, EventRow, UtcDateTime, WatermarkRow, utcnow
from integration.intake import AcceptResult, UnstorableEvent
from integration.model import NeutralEvent

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]  # (vendor, ticket_id)
# [(vendor, ticket_id, first event id of the ticket in the batch), ...]: one queue message per batch.
EnqueueTickets = Callable[[list[tuple[str, str, int]]], None]


def content_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(eq=False)
class _Delivery:
    """One `accept` call on its way through a group commit."""

    event: NeutralEvent
    payload: bytes
    received_at: datetime
    digest: str
    result: AcceptResult | None = None
    error: BaseException | None = None
    needs_task: bool = False
    duplicate_of: "_Delivery | None" = None
    finished: bool = False  # its commit has finished (result or error set)
    wake: Any = None  # the lock its thread sleeps on while it waits in a group commit

    def keys(self) -> list[tuple[str, str, str]]:
        """What the unique constraints compare: (vendor, delivery id) and (vendor, body hash)."""
        keys = [(self.event.vendor, "content", self.digest)]
        if self.event.delivery_id:
            keys.append((self.event.vendor, "delivery", self.event.delivery_id[:200]))
        return keys

    def value_list(self) -> list[Any]:
        """The values of _DirectInsert.COLUMNS, in that order."""
        event = self.event
        return [event.vendor, str(event.ticket_id), event.event_type[:80],
                event.delivery_id[:200] if event.delivery_id else None, self.digest,
                str(event.actor_id) if event.actor_id is not None else None, event.occurred_at, self.received_at,
                self.payload, "pending" if event.handled else "ignored", 0,
                None if event.handled else self.received_at]

    def row(self) -> EventRow:
        return EventRow(**self.values())

    def values(self) -> dict[str, Any]:
        return dict(zip(_DirectInsert.COLUMNS, self.value_list()))


class _GroupCommit:
    """Leader/follower group commit without a thread of its own (so it survives a fork): the first
    caller to find no commit in flight becomes the leader: it waits for the writer's turn (`turn`: the other
    web processes' commits, `_WriterTurns`), then takes every queued delivery and commits them in
    one transaction; callers arriving meanwhile queue up and wait for the next one. The batch is taken
    only once the turn is held, so everything that arrived while another process was committing goes
    into it. Under no concurrency a batch is one delivery and nothing waits; under load each commit
    (fsync) carries everything that queued behind the previous one. Nobody returns before the commit
    holding their delivery has finished.

    Each waiting caller sleeps on a lock of its own: a finished commit wakes exactly its members, and the
    first delivery queued behind it to lead the next commit (a shared Condition's notify_all woke every
    waiting thread per commit, most of them only to sleep again: a context switch and a GIL hand-off each)."""

    def __init__(self, commit_batch: Callable[[list[_Delivery]], None],
                 turn: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 after_commit: Callable[[list[_Delivery]], None] = lambda batch: None):
        self._commit_batch = commit_batch
        self._turn = turn
        self._after_commit = after_commit
        self._mutex = threading.Lock()
        self._queued: list[_Delivery] = []
        self._committing = False
        self.batches = 0  # commits led, and the deliveries they carried: the mean batch size
        self.deliveries = 0

    @property
    def waiting(self) -> int:
        with self._mutex:
            return len(self._queued)

    def submit(self, delivery: _Delivery) -> None:
        wake = delivery.wake = threading.Lock()
        wake.acquire()
        with self._mutex:
            self._queued.append(delivery)
            leads = not self._committing
            self._committing = True
        if not leads:
            wake.acquire()  # released once its commit has finished, or when it is to lead the next one
            if delivery.finished:
                return
        self._lead(delivery)

    # Bounds one statement's parameters (SQLite allows 32,766); the rest waits for the next commit.
    MAX_BATCH = 1000

    def _take_queued(self) -> list[_Delivery]:
        with self._mutex:
            batch, self._queued = self._queued[:self.MAX_BATCH], self._queued[self.MAX_BATCH:]
            return batch

    def _lead(self, leader: _Delivery) -> None:
        batch: list[_Delivery] = []
        try:
            with self._turn():
                batch = self._take_queued()
                self._commit_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - every member gets the failure
            batch = batch or self._take_queued()  # the turn itself failed: fail what waits
            for member in batch:
                if member.result is None and member.error is None:
                    member.error = exc
        finally:
            with self._mutex:
                self.batches += 1
                self.deliveries += len(batch)
                successor = self._queued[0] if self._queued else None
                if successor is None:
                    self._committing = False
            for member in batch:
                member.finished = True
                if member is not leader:
                    member.wake.release()
            if successor is not None:
                successor.wake.release()
        # Out of the writer's turn and after the members are released (their rows are committed): the
        # next commit need not wait for it. It must not raise (see _enqueue_tasks).
        self._after_commit(batch)


class _WriterTurns:
    """The web processes' batch commits take turns on an flock before they write, so each commit carries
    everything that queued in its process while the other process was committing (bigger batches: fewer
    commits, fewer hand-offs, less CPU per delivery), and the kernel wakes the next process's leader as
    soon as the lock is released.

    SQLite file: `<database>.intake-lock`. Without it SQLite makes a second writer poll with growing sleeps
    (1, 2, 5, 10 ms...), which left each process's leader asleep most of the time under load. Writers that
    do not take turns here (workers) are still serialized by SQLite.
    PostgreSQL: `<temp dir>/escalation-intake-<hash of the URL without its password>.lock`, shared by the
    processes of one machine (processes on other machines commit independently, as PostgreSQL allows).
    In A/B runs at 64 clients (4 pairs): mean batch 5-6 -> 10, web-process CPU 0.80 -> 0.75 ms and
    PostgreSQL backend CPU 0.109 -> 0.091 ms per delivery. The turn only shapes batches: when its file
    cannot be opened (a read-only temp dir) or belongs to another user, commits go ahead without it, as
    they would on one process."""

    def __init__(self, db: Database):
        self._path = self.file_for(db.engine.url)
        self._file: Any = None
        self._pid = 0

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        if self._file is None or self._pid != os.getpid():  # an inherited descriptor would share the lock
            try:
                self._file, self._pid = self._open_own(self._path), os.getpid()
            except OSError as exc:
                log.warning("intake commits go ahead without taking turns: %s cannot be used (%s)",
                            self._path, exc.strerror or type(exc).__name__)
                self._path = None
                yield
                return
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def file_for(url: Any) -> str | None:
        """The turn file of a database (SQLAlchemy URL); None where there is nothing to take turns on."""
        backend = url.get_backend_name()
        if backend == "sqlite":
            database = url.database
            if database and database != ":memory:" and "mode=memory" not in str(url):
                return f"{database}.intake-lock"
        elif backend == "postgresql":
            where = url.set(password=None).render_as_string(hide_password=False)
            return os.path.join(tempfile.gettempdir(),
                                f"escalation-intake-{hashlib.sha256(where.encode()).hexdigest()[:16]}.lock")
        return None

    @staticmethod
    def _open_own(path: str) -> Any:
        """The turn file, only if this user owns it: in a shared temp dir another user could otherwise
        create it first and hold its lock, stalling intake."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        if os.fstat(fd).st_uid != os.geteuid():
            os.close(fd)
            raise PermissionError(errno.EPERM, "owned by another user")
        return os.fdopen(fd, "r+b")


class _WriterConnection:
    """The connection a web process's group commits run on, kept between batches (only the group commit's
    leader uses it, one at a time). Replaced after any failure, after a fork, and after sitting idle for
    IDLE_SECONDS (it then comes from the pool again, whose pre-ping finds a connection the server closed)."""

    IDLE_SECONDS = 10.0

    def __init__(self, db: Database):
        self._db = db
        self._on_postgresql = db.engine.dialect.name == "postgresql"
        self._connection: Any = None
        self._pid = 0
        self._last_used = 0.0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        now = time.monotonic()
        if self._connection is not None and (self._pid != os.getpid() or now - self._last_used > self.IDLE_SECONDS):
            self._discard()
        if self._connection is None:
            self._connection, self._pid = self._db.engine.connect(), os.getpid()
        try:
            with self._connection.begin():
                yield self._connection
        except BaseException as exc:
            if not (isinstance(exc, Exception) and _row_level_failure(exc)):  # a refused value keeps it
                self._discard()
            raise
        finally:
            self._last_used = time.monotonic()

    @contextlib.contextmanager
    def autocommit_driver_connection(self, keeps_connection: Callable[[Exception], bool]) -> Iterator[Any]:
        """The kept connection's DB driver connection (sqlite3 / psycopg) in autocommit mode: a statement is
        its own transaction, durably committed before it returns (no BEGIN and COMMIT round trips, no
        SQLAlchemy execution per batch). An error for which `keeps_connection` is false drops it."""
        now = time.monotonic()
        if self._connection is not None and (self._pid != os.getpid() or now - self._last_used > self.IDLE_SECONDS):
            self._discard()
        if self._connection is None:
            self._connection, self._pid = self._db.engine.connect(), os.getpid()
        # Set on the driver and only for the statement, not with SQLAlchemy's isolation_level option (the pool
        # then resets pysqlite to an implicit BEGIN, undoing integration.store.db's connect settings): a sink
        # dropped without closing its connection returns it as it came. sqlite3 connections already run
        # without an implicit BEGIN (integration.store.db).
        driver_connection = self._connection.connection.driver_connection
        if self._on_postgresql:
            driver_connection.autocommit = True
        try:
            yield driver_connection
        except BaseException as exc:
            if not (isinstance(exc, Exception) and keeps_connection(exc)):
                self._discard(invalidate=True)  # the pool cannot tell what state the driver left it in
            raise
        finally:
            self._last_used = time.monotonic()
            if self._on_postgresql and self._connection is not None:
                driver_connection.autocommit = False

    def _discard(self, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._pid != os.getpid():
            return  # the parent's: closing it here would end the parent's session on the shared socket
        try:
            if invalidate:
                connection.invalidate()
            connection.close()
        except Exception:  # noqa: BLE001 - it is being dropped anyway
            pass


def _insert_new(connection: Any, unique: list["_Delivery"]) -> dict[int, int]:
    """Insert the rows of `unique` that conflict with no stored row; id(delivery) -> new event id."""
    if not unique:
        return {}
    statement = _INSERT_NEW_EVENTS[connection.dialect.name == "postgresql"]
    by_key = {(d.event.vendor, d.digest): d for d in unique}
    inserted: dict[int, int] = {}
    for event_id, vendor, digest in connection.execute(statement, [d.values() for d in unique]):
        inserted[id(by_key[(vendor, digest)])] = event_id
    return inserted


def _stored_copies(connection: Any, conflicting: list["_Delivery"]) -> dict[int, int]:
    """For deliveries the INSERT skipped: the stored row each one repeats (same delivery id or same body)."""
    found: dict[int, int] = {}
    for delivery in conflicting:
        conditions = [EventRow.content_hash == delivery.digest]
        if delivery.event.delivery_id:
            conditions.append(EventRow.delivery_id == delivery.event.delivery_id[:200])
        event_id = connection.execute(
            select(EventRow.id).where(EventRow.vendor == delivery.event.vendor, or_(*conditions)).limit(1)
        ).scalar()
        if event_id is not None:
            found[id(delivery)] = event_id
    return found


def _row_level_failure(exc: Exception) -> bool:
    """Whether the database refused a row (constraint, value), not the transaction or the connection."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    # Values the driver refuses before sending: NUL in text (psycopg), text that is not encodable.
    return isinstance(exc, StatementError) and isinstance(getattr(exc, "orig", None), (ValueError, UnicodeError))


class _DirectInsert:
    """The batch's INSERT ... ON CONFLICT DO NOTHING RETURNING written straight through the DB driver: one
    multi-row VALUES statement per batch size (prepared once: sqlite3's statement cache, psycopg's
    automatic server-side prepare), with values converted by the columns' own SQLAlchemy bind processors,
    so a row is stored exactly as an ORM insert stores it. Building and executing the statement through
    SQLAlchemy cost more CPU per batch than the database's own work."""

    COLUMNS = ("vendor", "ticket_id", "event_type", "delivery_id", "content_hash", "actor_id", "occurred_at",
               "received_at", "payload", "status", "attempts", "processed_at")

    def __init__(self, dialect: Any):
        marker = "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"
        self._row = "(" + ", ".join([marker] * len(self.COLUMNS)) + ")"
        self._statements: dict[int, str] = {}
        columns = EventRow.__table__.c
        self._convert = [(index, processor) for index, name in enumerate(self.COLUMNS)
                         if (processor := columns[name].type.dialect_impl(dialect).bind_processor(dialect))]
        dbapi = dialect.loaded_dbapi
        # A value of a row refused (too long, NUL, not encodable, a constraint): the row's own problem.
        self.row_level_errors: tuple[type[BaseException], ...] = (
            dbapi.IntegrityError, dbapi.DataError, ValueError, UnicodeError)

    def statement(self, rows: int) -> str:
        statement = self._statements.get(rows)
        if statement is None:
            statement = self._statements[rows] = (
                f"INSERT INTO events ({', '.join(self.COLUMNS)}) VALUES {', '.join([self._row] * rows)} "
                "ON CONFLICT DO NOTHING RETURNING id, vendor, content_hash")
        return statement

    def parameters(self, deliveries: list["_Delivery"]) -> list[Any]:
        flat: list[Any] = []
        for delivery in deliveries:
            values = delivery.value_list()
            for index, convert in self._convert:
                values[index] = convert(values[index])
            flat.extend(values)
        return flat


def _insert_directly(driver_connection: Any, direct: _DirectInsert, unique: list["_Delivery"]) -> dict[int, int]:
    """Insert the rows of `unique` that conflict with no stored row, in one autocommit statement (committed
    when it returns); id(delivery) -> new event id."""
    if not unique:
        return {}
    by_key = {(d.event.vendor, d.digest): d for d in unique}
    cursor = driver_connection.cursor()
    try:
        cursor.execute(direct.statement(len(unique)), direct.parameters(unique))
        returned = cursor.fetchall()  # SQLite commits (and fsyncs) when the statement has run to its end
    finally:
        cursor.close()
    return {id(by_key[(vendor, digest)]): event_id for event_id, vendor, digest in returned}


class DatabaseEventSink:
    def __init__(
        self,
        db: Database,
        enqueue: Enqueue | None,
        *,
        enqueue_tickets: EnqueueTickets | None = None,
        queue_health: Callable[[], str] | None = None,
        matrix_health: Callable[[], str] | None = None,
    ):
        """`enqueue(vendor, ticket_id)` queues one ticket's pass; the batch's tickets that need one are decided
        in the insert's transaction (`_decide_tasks`). `enqueue_tickets([(vendor, ticket_id, first_event_id),
        ...])`, when given, is used instead: one queue message for every handled ticket of the batch, and the
        worker that takes it skips the tickets whose earlier pending event has its own task coming
        (`tickets_without_earlier_pending`), so the commit itself runs no query beyond its INSERT."""
        self.db = db
        self.enqueue = enqueue
        self.enqueue_tickets = enqueue_tickets
        self.queue_health = queue_health
        self.matrix_health = matrix_health
        self._writers = _WriterTurns(db)
        self._group = _GroupCommit(self._store_batch, self._writers.turn, self._enqueue_tasks)
        self._writer = _WriterConnection(db)
        # Straight through the driver unless each ticket's task is decided in the insert's transaction.
        self._direct = _DirectInsert(db.engine.dialect) if enqueue_tickets is not None or enqueue is None else None

    def accept(self, event: NeutralEvent, payload: bytes, received_at: datetime) -> AcceptResult:
        delivery = _Delivery(event, payload, received_at, content_hash(payload))
        self._group.submit(delivery)  # returns once the batch holding this delivery has committed (or failed)
        if delivery.error is not None:
            raise delivery.error
        assert delivery.result is not None
        return delivery.result

    def _enqueue_tasks(self, batch: list["_Delivery"]) -> None:
        """The batch's processing tasks, enqueued by the committing thread after the commit, outside the
        writer's turn and once the batch's members are answered: one queue message for the whole batch when
        `enqueue_tickets` is set (a worker fans it out), one per ticket otherwise. Never raises: an event
        that is stored but not enqueued is found by the reconciler."""
        first_event: dict[tuple[str, str], int] = {}
        for delivery in batch:
            if delivery.needs_task and delivery.result is not None and not delivery.result.duplicate:
                first_event.setdefault((delivery.event.vendor, str(delivery.event.ticket_id)),
                                       int(delivery.result.event_id))
        if not first_event:
            return
        try:
            if self.enqueue_tickets is not None:
                self.enqueue_tickets([(vendor, ticket_id, event_id)
                                      for (vendor, ticket_id), event_id in first_event.items()])
            elif self.enqueue is not None:
                for vendor, ticket_id in first_event:
                    self.enqueue(vendor, ticket_id)
        except Exception:  # noqa: BLE001 - the rows are committed; the reconciler enqueues them later
            log.warning("%d ticket(s) stored but not enqueued; the reconciler will pick them up", len(first_event),
                        exc_info=True)

    @property
    def waiting_deliveries(self) -> int:
        """Deliveries queued for the next group commit (one is in flight meanwhile)."""
        return self._group.waiting

    def group_commit_counts(self) -> tuple[int, int]:
        """(batches committed, deliveries they carried) in this process since it started."""
        return self._group.batches, self._group.deliveries

    def _store_batch(self, batch: list["_Delivery"]) -> None:
        """Commit `batch` and set each member's result or error. Duplicates inside the batch (same delivery
        id or same body) are answered as duplicates of their first copy, redeliveries of stored rows as
        duplicates of those."""
        first_of: dict[tuple[str, str, str], _Delivery] = {}
        unique: list[_Delivery] = []
        for delivery in batch:
            keys = delivery.keys()
            original = next((first_of[key] for key in keys if key in first_of), None)
            if original is not None:
                delivery.duplicate_of = original
                continue
            for key in keys:
                first_of[key] = delivery
            unique.append(delivery)
        if self._direct is not None:
            self._store_directly(unique)
        else:
            self._store_in_transaction(unique)
        for delivery in batch:
            original = delivery.duplicate_of
            if original is None:
                continue
            if original.result is not None:
                delivery.result = AcceptResult(event_id=original.result.event_id, duplicate=True)
            else:
                delivery.error = original.error

    def _store_directly(self, unique: list["_Delivery"]) -> None:
        """One autocommit INSERT ... ON CONFLICT DO NOTHING RETURNING through the driver; the worker taking
        the batch's queue message decides which tickets need a pass (tickets_without_earlier_pending)."""
        direct = self._direct
        assert direct is not None
        try:
            with self._writer.autocommit_driver_connection(
                    lambda exc: isinstance(exc, direct.row_level_errors)) as driver_connection:
                inserted = _insert_directly(driver_connection, direct, unique)
        except direct.row_level_errors:
            # A value of one row was refused and the statement inserted nothing: the others must not fail
            # with it, so each is inserted on its own.
            self._commit_row_by_row(unique)
            return
        # Results only once the statement has committed: a result is what lets a member answer 2xx.
        for delivery in unique:
            event_id = inserted.get(id(delivery))
            if event_id is not None:
                delivery.needs_task = delivery.event.handled
                delivery.result = AcceptResult(event_id=event_id, duplicate=False)
                continue
            # A redelivery of a stored row (same delivery id or same body): that row is committed (on
            # PostgreSQL ON CONFLICT waited for the transaction inserting it).
            stored = self._find_duplicate(delivery.event, delivery.digest)
            if stored is not None:
                delivery.result = AcceptResult(event_id=stored, duplicate=True)
            else:  # it conflicted with a row that is gone again: let the vendor retry
                delivery.error = RuntimeError("the event conflicted with a row that no longer exists")

    def _commit_row_by_row(self, unique: list["_Delivery"]) -> None:
        for delivery in unique:
            delivery.result = None
            try:
                self._commit_one(delivery)
            except Exception as error:  # noqa: BLE001 - this member's answer, not the batch's
                delivery.error = error

    def _store_in_transaction(self, unique: list["_Delivery"]) -> None:
        """The batch in one SQLAlchemy transaction that also decides which tickets need a task
        (`_decide_tasks`), for a sink with a per-ticket `enqueue`."""
        try:
            # One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING on a connection this process keeps for
            # its commits: a redelivery of a stored row is simply not inserted (no failed batch), and no pool
            # checkout (with PostgreSQL's pre-ping round trip) per batch.
            with self._writer.transaction() as connection:
                inserted = _insert_new(connection, unique)
                stored = _stored_copies(connection, [d for d in unique if id(d) not in inserted])
                new_rows = [(d, inserted[id(d)]) for d in unique if id(d) in inserted]
                _decide_tasks(connection, new_rows)
            # Results only once the transaction has committed: a result is what lets a member answer 2xx.
            for delivery in unique:
                if id(delivery) in inserted:
                    delivery.result = AcceptResult(event_id=inserted[id(delivery)], duplicate=False)
                elif id(delivery) in stored:
                    delivery.result = AcceptResult(event_id=stored[id(delivery)], duplicate=True)
                else:  # it conflicted with a row that is gone again: let the vendor retry
                    delivery.error = RuntimeError("the event conflicted with a row that no longer exists")
        except (IntegrityError, DataError, StatementError) as exc:
            # A value of one row was refused (too long, NUL): the others must not fail with it, so each is
            # inserted on its own.
            if not _row_level_failure(exc):
                raise
            self._commit_row_by_row(unique)

    def _commit_one(self, delivery: "_Delivery") -> None:
        row = delivery.row()
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                delivery.needs_task = delivery.event.handled and not _has_earlier_pending(
                    session, row, delivery.received_at)
                event_id = row.id
        except IntegrityError:
            # A redelivery (same delivery id or same body), or two copies racing: the first insert won.
            existing = self._find_duplicate(delivery.event, delivery.digest)
            if existing is None:
                raise
            delivery.needs_task = False
            delivery.result = AcceptResult(event_id=existing, duplicate=True)
            return
        except (DataError, StatementError) as exc:
            if _row_level_failure(exc):
                raise UnstorableEvent("a value is too long or not valid text for the event store") from None
            raise
        delivery.result = AcceptResult(event_id=event_id, duplicate=False)

    def _find_duplicate(self, event: NeutralEvent, digest: str) -> int | None:
        conditions = [EventRow.content_hash == digest]
        if event.delivery_id:
            conditions.append(EventRow.delivery_id == event.delivery_id[:200])
        with self.db.session() as session:
            return session.scalars(
                select(EventRow.id).where(EventRow.vendor == event.vendor, or_(*conditions)).limit(1)
            ).first()

    def health(self) -> dict[str, str]:
        """Check name -> "ok" or a generic status: /readyz shows these to anyone, so the database's own
        messages go to the log only."""
        checks = {"database": self._event_store_writable()}
        if self.queue_health is not None:
            checks["queue"] = self.queue_health()
        if self.matrix_health is not None:
            checks["matrix"] = self.matrix_health()
        return checks


    def _event_store_writable(self) -> str:
        """Whether the event store can commit a write now: the heartbeat row `readyz` in `watermarks` is
        written and committed. `SELECT 1` passes on a read-only replica, on a full disk and while commits
        fail, where every delivery would then be answered 503. One tiny committed row per probe."""
        try:
            with self.db.session() as session:
                now = utcnow()
                row = session.get(WatermarkRow, READYZ_HEARTBEAT)
                if row is None:
                    session.add(WatermarkRow(name=READYZ_HEARTBEAT, value=now.isoformat(), updated_at=now))
                else:
                    row.value, row.updated_at = now.isoformat(), now
            return "ok"
        except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
            log.warning("readiness: the event store cannot commit a write: %s: %s", type(exc).__name__,
                        redact_urls_in_text(str(exc))[:500])
            return "unavailable"


READYZ_HEARTBEAT = "readyz:heartbeat"

_EARLIER_PENDING_SQL = (
    "SELECT id FROM events WHERE vendor = :vendor AND ticket_id = :ticket_id AND status = 'pending' "
    "AND id < :id AND (next_attempt_at IS NULL OR next_attempt_at <= :now) ORDER BY id LIMIT 1"
)
# Plain SQL: this runs on every delivery, and building the ORM statement cost more than running it.
_EARLIER_PENDING = {
    for_update: text(_EARLIER_PENDING_SQL + (" FOR UPDATE" if for_update else "")).bindparams(
        bindparam("now", type_=UtcDateTime()))
    for for_update in (False, True)
}


def _decide_tasks(connection: Any, inserted: list[tuple["_Delivery", int]]) -> None:
    """`needs_task` for each row of a batch, with one query for the whole batch instead of one per row:
    the same rule as `_has_earlier_pending` (a handled row needs a task unless its ticket already has an
    earlier pending event that is due). Within the batch, the first handled row of a ticket is that
    earlier event for the later ones. On PostgreSQL the earlier rows are read FOR UPDATE, in id order."""
    first_of_ticket: dict[tuple[str, str], tuple[_Delivery, int]] = {}
    for delivery, event_id in inserted:
        delivery.needs_task = False
        if delivery.event.handled:
            first_of_ticket.setdefault((delivery.event.vendor, str(delivery.event.ticket_id)), (delivery, event_id))
    if not first_of_ticket:
        return
    batch_ids = [event_id for _, event_id in inserted]
    now = max(delivery.received_at for delivery, _ in inserted)
    earliest_pending: dict[tuple[str, str], int] = {}
    for vendor in {vendor for vendor, _ in first_of_ticket}:
        tickets = sorted({ticket for v, ticket in first_of_ticket if v == vendor})
        statement = _PENDING_OF_TICKETS[connection.dialect.name == "postgresql"]
        for ticket_id, event_id in connection.execute(
                statement, {"vendor": vendor, "tickets": tickets, "batch_ids": batch_ids, "now": now}):
            key = (vendor, ticket_id)
            earliest_pending[key] = min(event_id, earliest_pending.get(key, event_id))
    for key, (delivery, event_id) in first_of_ticket.items():
        delivery.needs_task = not (key in earliest_pending and earliest_pending[key] < event_id)


# Built once: constructing the statement per batch cost more than running it. Skips a row that repeats a
# stored one (either unique constraint); on PostgreSQL a conflicting row being inserted by another
# transaction is waited for first, so the skipped row's original is committed when it is looked up.
_INSERT_NEW_EVENTS = {
    on_postgresql: (postgresql_insert if on_postgresql else sqlite_insert)(EventRow.__table__)
    .on_conflict_do_nothing()
    .returning(EventRow.__table__.c.id, EventRow.__table__.c.vendor, EventRow.__table__.c.content_hash)
    for on_postgresql in (False, True)
}

_PENDING_OF_TICKETS_SQL = (
    "SELECT ticket_id, id FROM events WHERE vendor = :vendor AND ticket_id IN :tickets AND status = 'pending' "
    "AND id NOT IN :batch_ids AND (next_attempt_at IS NULL OR next_attempt_at <= :now) ORDER BY id"
)
_PENDING_OF_TICKETS = {
    for_update: text(_PENDING_OF_TICKETS_SQL + (" FOR UPDATE" if for_update else "")).bindparams(
        bindparam("tickets", expanding=True), bindparam("batch_ids", expanding=True),
        bindparam("now", type_=UtcDateTime()))
    for for_update in (False, True)
}


def _has_earlier_pending(session: Any, row: EventRow, now: datetime) -> bool:
    """Whether the ticket already has an unclaimed pending event that is due now (its task is queued).
    Events waiting for a retry backoff do not count: their task is scheduled for later. On PostgreSQL
    the row is read FOR UPDATE, which waits for a claim in flight (see the module docstring)."""
    statement = _EARLIER_PENDING[session.get_bind().dialect.name == "postgresql"]
    found = session.execute(
        statement, {"vendor": row.vendor, "ticket_id": row.ticket_id, "id": row.id, "now": now}
    ).first()
    return found is not None


def tickets_without_earlier_pending(db: Database, tickets: list[tuple[str, str, int]],
                                    now: datetime) -> list[tuple[str, str]]:
    """For a batch's queue message [(vendor, ticket_id, first event id of the batch), ...]: the tickets that
    need a pass of their own, in order. A ticket whose due pending event is older than the batch's first
    (its task is queued) is left to that task, the rule `_decide_tasks` applies at the source: a pass
    claims every pending event of its ticket, claims again after each round and re-enqueues its ticket
    for an event that committed after its last claim, so the batch's event is not stranded."""
    earliest: dict[tuple[str, str], int] = {}
    for vendor in dict.fromkeys(vendor for vendor, _, _ in tickets):
        ids = sorted({ticket_id for v, ticket_id, _ in tickets if v == vendor})
        with db.session() as session:
            for ticket_id, event_id in session.execute(
                    select(EventRow.ticket_id, func.min(EventRow.id))
                    .where(EventRow.vendor == vendor, EventRow.ticket_id.in_(ids), due_pending(now))
                    .group_by(EventRow.ticket_id)):
                earliest[(vendor, ticket_id)] = event_id
    return [(vendor, ticket_id) for vendor, ticket_id, first_id in tickets
            if not earliest.get((vendor, ticket_id), first_id) < first_id]


def due_pending(now: datetime) -> ColumnElement[bool]:
    """An event a pass could claim now: pending, and not waiting out a retry delay."""
    return and_(EventRow.status == "pending",
                or_(EventRow.next_attempt_at.is_(None), EventRow.next_attempt_at <= now))


def due_pending_exists(db: Database, vendor: str, ticket_id: str, now: datetime) -> bool:
    """Pending events of the ticket that a pass could claim now."""
    with db.session() as session:
        return session.scalars(
            select(EventRow.id)
            .where(EventRow.vendor == vendor, EventRow.ticket_id == ticket_id, due_pending(now))
            .limit(1)
        ).first() is not None


def due_pending_senders_and_bodies(db: Database, vendor: str, ticket_id: str,
                                   now: datetime) -> list[tuple[str | None, bytes]]:
    """(actor id, raw body) of each of the ticket's events a pass could claim now."""
    with db.session() as session:
        return [(actor_id, payload) for actor_id, payload in session.execute(
            select(EventRow.actor_id, EventRow.payload)
            .where(EventRow.vendor == vendor, EventRow.ticket_id == ticket_id, due_pending(now)))]


# ------------------------------------------------------------------------- event-row operations
@dataclass(frozen=True)
class EventInfo:
    id: int
    vendor: str
    ticket_id: str
    event_type: str
    delivery_id: str | None
    actor_id: str | None
    status: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, row: EventRow) -> "EventInfo":
        return cls(
            row.id, row.vendor, row.ticket_id, row.event_type, row.delivery_id, row.actor_id, row.status,
            row.attempts, row.received_at, row.processed_at, row.last_error,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "vendor": self.vendor, "ticket_id": self.ticket_id, "event_type": self.event_type,
            "delivery_id": self.delivery_id, "actor_id": self.actor_id, "status": self.status,
            "attempts": self.attempts, "received_at": self.received_at.isoformat(),
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "last_error": self.last_error,
        }


def list_events(db: Database, *, status: str | None = None, limit: int = 100) -> list[EventInfo]:
    with db.session() as session:
        query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
        if status:
            query = query.where(EventRow.status == status)
        return [EventInfo.of(row) for row in session.scalars(query)]


def count_by_status(db: Database) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(EventRow.status, func.count()).group_by(EventRow.status)).all())


def retry_dead(db: Database, ids: Iterable[int] | None = None) -> list[tuple[str, str]]:
    """Dead letters back to pending with a fresh attempt budget; returns the tickets to enqueue."""
    with db.session() as session:
        query = select(EventRow).where(EventRow.status == "dead")
        if ids is not None:
            query = query.where(EventRow.id.in_(list(ids)))
        rows = list(session.scalars(query))
        tickets: set[tuple[str, str]] = set()
        for row in rows:
            row.status = "pending"
            row.attempts = 0
            row.next_attempt_at = None
            row.lease_owner = None
            row.lease_until = None
            tickets.add((row.vendor, row.ticket_id))
        return sorted(tickets)


def add_hint(db: Database, vendor: str, ticket_id: str, reason: str, key: str, now: datetime | None = None) -> int | None:
    """A synthetic event (catch-up scan, admin `reprocess`) so the normal pipeline looks at a ticket.
    `key` deduplicates: the same hint twice is stored once. Returns the new event id or None."""
    now = now or utcnow()
    payload = json.dumps({"hint": reason, "vendor": vendor, "ticket_id": ticket_id, "key": key}).encode()
    row = EventRow(
        vendor=vendor, ticket_id=ticket_id, event_type=reason[:80], delivery_id=f"{reason}:{key}"[:200],
        content_hash=content_hash(payload), actor_id=None, occurred_at=now, received_at=now, payload=payload,
        status="pending", attempts=0,
    )
    try:
        with db.session() as session:
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError:
        return None


def requeue_expired(db: Database, now: datetime) -> list[tuple[str, str]]:
    """Events whose worker died mid-pass (lease expired) go back to pending; returns their tickets."""
    with db.session() as session:
        tickets = session.execute(
            select(EventRow.vendor, EventRow.ticket_id)
            .where(EventRow.status == "processing", EventRow.lease_until < now)
            .distinct()
        ).all()
        session.execute(
            update(EventRow)
            .where(EventRow.status == "processing", EventRow.lease_until < now)
            .values(status="pending", lease_owner=None, lease_until=None)
        )
        return [tuple(t) for t in tickets]


def stale_pending(db: Database, now: datetime, older_than: timedelta, limit: int = 1000) -> list[tuple[str, str]]:
    """Tickets with pending events due for a (re)try that no task picked up for a while."""
    cutoff = now - older_than
    with db.session() as session:
        rows = session.execute(
            select(EventRow.vendor, EventRow.ticket_id)
            .where(due_pending(now), EventRow.received_at <= cutoff)
            .distinct()
            .limit(limit)
        ).all()
        return [tuple(r) for r in rows]


def release_ticket_events(db: Database, vendor: str, ticket_id: str) -> int:
    """SIGTERM: events an interrupted pass had claimed go back to pending at once."""
    with db.session() as session:
        return session.execute(
            update(EventRow)
            .where(EventRow.vendor == vendor, EventRow.ticket_id == ticket_id, EventRow.status == "processing")
            .values(status="pending", lease_owner=None, lease_until=None)
        ).rowcount or 0
