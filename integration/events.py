"""The durable EventSink the webhook edge hands deliveries to, and the event-row operations the
workers, the reconciler and `escalation events` use.

`accept` does exactly one durable commit per delivery: the event row (the edge answers 2xx only after
it). It then enqueues a processing task for the ticket, unless the ticket already had a pending,
unclaimed event when the row was committed: that event's task is queued (or, if its enqueue failed,
the reconciler enqueues it) and a pass claims every pending event of its ticket, so a second task would
only find nothing to do. Coalescing at the source keeps a burst of five deliveries for one ticket at
one queue write.

Why the skipped enqueue cannot strand an event (the race with a pass that is finishing):
- the look for an earlier pending event runs in the insert's transaction; on SQLite write transactions
  are serialized (BEGIN IMMEDIATE), on PostgreSQL the earlier row is read `FOR UPDATE`, which waits for
  a claim in flight. So either the claim committed first (the earlier event is `processing`, not
  pending: this delivery enqueues its own task) or this row committed before the claim completed;
- a pass claims again after each round and, once it releases the ticket, looks once more for pending
  events that are due and enqueues the ticket if it finds any (integration.pipeline.process_ticket).
If an enqueue fails the row is still there: the reconciler enqueues pending rows the queue forgot.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from sqlalchemy import bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from integration.db import Database, EventRow, UtcDateTime, WatermarkRow, utcnow
from integration.intake import AcceptResult
from integration.model import NeutralEvent
from integration.settings import Settings, redact_url

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]  # (vendor, ticket_id)


def content_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class DatabaseEventSink:
    def __init__(
        self,
        db: Database,
        enqueue: Enqueue | None,
        *,
        queue_health: Callable[[], str] | None = None,
        matrix_health: Callable[[], str] | None = None,
    ):
        self.db = db
        self.enqueue = enqueue
        self.queue_health = queue_health
        self.matrix_health = matrix_health

    def accept(self, event: NeutralEvent, payload: bytes, received_at: datetime) -> AcceptResult:
        digest = content_hash(payload)
        # Insert first and let the unique constraints find duplicates: one transaction on the hot path.
        row = EventRow(
            vendor=event.vendor,
            ticket_id=str(event.ticket_id),
            event_type=event.event_type[:80],
            delivery_id=event.delivery_id[:200] if event.delivery_id else None,
            content_hash=digest,
            actor_id=str(event.actor_id) if event.actor_id is not None else None,
            occurred_at=event.occurred_at,
            received_at=received_at,
            payload=payload,
            status="pending" if event.handled else "ignored",
            attempts=0,
            processed_at=None if event.handled else received_at,
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                event_id = row.id
                needs_task = event.handled and not _has_earlier_pending(session, row, received_at)
        except IntegrityError:
            # A redelivery (same delivery id or same body), or two copies racing: the first insert won.
            existing = self._find_duplicate(event, digest)
            if existing is None:
                raise
            return AcceptResult(event_id=existing, duplicate=True)
        if needs_task and self.enqueue is not None:
            try:
                self.enqueue(event.vendor, str(event.ticket_id))
            except Exception:  # noqa: BLE001 - the row is committed; the reconciler enqueues it later
                log.warning("event %s stored but not enqueued; the reconciler will pick it up", event_id, exc_info=True)
        return AcceptResult(event_id=event_id, duplicate=False)

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
                        redact_url_in_text(str(exc))[:500])
            return "unavailable"


def redact_url_in_text(text: str) -> str:
    """Database URLs inside a driver message, with their passwords masked (integration.settings.redact_url)."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


READYZ_HEARTBEAT = "readyz:heartbeat"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,;'\"]+")

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


def _has_earlier_pending(session: Any, row: EventRow, now: datetime) -> bool:
    """Whether the ticket already has an unclaimed pending event that is due now (its task is queued).
    Events waiting for a retry backoff do not count: their task is scheduled for later. On PostgreSQL
    the row is read FOR UPDATE, which waits for a claim in flight (see the module docstring)."""
    statement = _EARLIER_PENDING[session.get_bind().dialect.name == "postgresql"]
    found = session.execute(
        statement, {"vendor": row.vendor, "ticket_id": row.ticket_id, "id": row.id, "now": now}
    ).first()
    return found is not None


def due_pending_exists(db: Database, vendor: str, ticket_id: str, now: datetime) -> bool:
    """Pending events of the ticket that a pass could claim now."""
    with db.session() as session:
        return session.scalars(
            select(EventRow.id)
            .where(
                EventRow.vendor == vendor,
                EventRow.ticket_id == ticket_id,
                EventRow.status == "pending",
                or_(EventRow.next_attempt_at.is_(None), EventRow.next_attempt_at <= now),
            )
            .limit(1)
        ).first() is not None


def build_event_sink(settings: Settings) -> DatabaseEventSink:
    """The sink for the web process: the database and queue from settings; migrates on first use."""
    from integration.tasks import get_runtime

    runtime = get_runtime(settings)
    return DatabaseEventSink(
        runtime.db,
        runtime.enqueue_ticket,
        queue_health=runtime.queue_health,
        matrix_health=runtime.matrix_health,
    )


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
            .where(
                EventRow.status == "pending",
                EventRow.received_at <= cutoff,
                or_(EventRow.next_attempt_at.is_(None), EventRow.next_attempt_at <= now),
            )
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
