"""Durable timers: each due time is a `timers` row plus a huey task scheduled for that time.

- `schedule(session, spec)` inserts the row (idempotent on (ticket, kind, clock, level, due_at)) and,
  once the session commits, enqueues the huey task at `due_at`. Rolled-back sessions enqueue nothing.
- When the task runs, `integration.pipeline.cycle.fire_timer` re-reads the ticket and its state and asks
  `integration.clocks.on_timer(...)` what to do; the row's `pending -> fired` transition is a conditional
  UPDATE committed in the same transaction as the outcome, under the ticket's lease, so a timer fires
  exactly once even when its task runs twice (the reconciler re-enqueues overdue pending timers whose
  task was lost with a killed worker).
- `integration.clocks` (business-time logic) plans timers after every pass with `plan_timers(...)`.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable, Iterable

from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integration.store.db import Database, TimerRow, utcnow
from integration.model import TimerSpec

log = logging.getLogger(__name__)


def _pending_list(session: Session) -> list[tuple[int, datetime]]:
    return session.info.setdefault("timers_to_enqueue", [])


def enqueue_after_commit(db: Database, enqueue: Callable[[int, datetime], None]) -> None:
    """Hand every timer a session of `db` scheduled to `enqueue(timer_id, due_at)` once that session has
    committed (never for a rolled-back one). The runtime that owns the worker queue calls this for its own
    Database; sessions of any other Database are left alone. Should two runtimes share one Database, the
    first one's queue gets the tasks: the timer rows are durable either way and the reconciler fires them."""

    def after_commit(session: Session) -> None:
        for timer_id, due_at in session.info.pop("timers_to_enqueue", None) or ():
            try:
                enqueue(timer_id, due_at)
            except Exception:  # noqa: BLE001 - the row is durable; the reconciler fires it when due
                log.warning("could not enqueue timer %s; the reconciler will fire it when due", timer_id,
                            exc_info=True)

    def forget_after_rollback(session: Session, previous_transaction: Any) -> None:
        session.info.pop("timers_to_enqueue", None)

    event.listen(db.sessions, "after_commit", after_commit)
    event.listen(db.sessions, "after_soft_rollback", forget_after_rollback)


def _find(session: Session, spec: TimerSpec) -> TimerRow | None:
    return session.scalars(
        select(TimerRow).where(
            TimerRow.vendor == spec.vendor,
            TimerRow.ticket_id == spec.ticket_id,
            TimerRow.kind == spec.kind,
            TimerRow.clock == (spec.clock or ""),
            TimerRow.level == (spec.level or ""),
            TimerRow.due_at == spec.due_at,
        )
    ).first()


def schedule(session: Session, spec: TimerSpec) -> TimerRow:
    """Persist the timer (once) and enqueue its task after the session commits."""
    existing = _find(session, spec)
    if existing is not None:
        return existing
    row = TimerRow(
        vendor=spec.vendor,
        ticket_id=spec.ticket_id,
        kind=spec.kind,
        clock=spec.clock or "",
        level=spec.level or "",
        due_at=spec.due_at,
        matrix_version=spec.matrix_version,
        fraction=spec.fraction,
        status="pending",
        created_at=utcnow(),
        attempts=0,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = _find(session, spec)
        if existing is None:
            raise
        return existing
    _pending_list(session).append((row.id, spec.due_at))
    return row


def schedule_all(session: Session, specs: Iterable[TimerSpec]) -> list[TimerRow]:
    return [schedule(session, spec) for spec in specs]


def cancel(
    session: Session,
    vendor: str,
    ticket_id: str,
    *,
    kinds: Iterable[str] | None = None,
    except_level: str | None = None,
) -> int:
    """Cancel pending timers of a ticket (optionally only these kinds / only those of other levels)."""
    statement = update(TimerRow).where(
        TimerRow.vendor == vendor, TimerRow.ticket_id == ticket_id, TimerRow.status == "pending"
    )
    if kinds is not None:
        statement = statement.where(TimerRow.kind.in_(list(kinds)))
    if except_level is not None:
        statement = statement.where(TimerRow.level != "", TimerRow.level != except_level)
    result = session.execute(statement.values(status="cancelled"))
    return result.rowcount or 0


def mark_fired(session: Session, timer_id: int, now: datetime) -> bool:
    """The exactly-once transition. False: another run already fired or cancelled it."""
    result = session.execute(
        update(TimerRow)
        .where(TimerRow.id == timer_id, TimerRow.status == "pending")
        .values(status="fired", fired_at=now)
    )
    return result.rowcount == 1


def as_spec(row: TimerRow) -> TimerSpec:
    return TimerSpec(
        vendor=row.vendor,
        ticket_id=row.ticket_id,
        kind=row.kind,
        clock=row.clock or None,
        due_at=row.due_at,
        level=row.level or None,
        matrix_version=row.matrix_version,
        fraction=row.fraction,
        timer_id=row.id,
    )


def overdue(session: Session, now: datetime, limit: int = 500) -> list[TimerRow]:
    return list(
        session.scalars(
            select(TimerRow)
            .where(TimerRow.status == "pending", TimerRow.due_at <= now)
            .order_by(TimerRow.due_at)
            .limit(limit)
        )
    )
