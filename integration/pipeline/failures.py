"""A pass that failed: transient errors are retried with backoff; permanent ones (and MAX_ATTEMPTS)
dead-letter the pass's events, except a NotFound while a deletion/merge event of the ticket is pending
(DELETION_EVENTS): the ticket is gone on purpose, so its events are done, its timers cancelled and its
state `deleted`."""
from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import update

from connectors.base import Conflict, NotFound, RateLimited, Transient
from integration import telemetry
from integration.model import TicketState
from integration.pipeline.claims import Claimed, mark_events
from integration.pipeline.deps import DELETED, DELETION_EVENTS, PERMANENT_ERRORS, PassDeps, PassResult, short_error
from integration.store import timers as timer_host
from integration.store.codec import to_json
from integration.store.db import EventRow, TicketStateRow

log = logging.getLogger(__name__)


def backoff_seconds(deps: PassDeps, attempts: int, error: BaseException) -> float:
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(float(error.retry_after), 0.0)
    delay = min(deps.backoff_base * (2 ** max(attempts - 1, 0)), deps.backoff_max)
    return delay * random.uniform(0.8, 1.2)


def handle_failure(deps: PassDeps, vendor: str, ticket_id: str, owner: str, claimed: list[Claimed],
            error: BaseException) -> PassResult:
    ids = [c.id for c in claimed]
    attempts = max(c.attempts for c in claimed)
    now = deps.now()
    message = short_error(error)
    deletions = sorted({c.event_type for c in claimed if c.event_type in DELETION_EVENTS})
    if isinstance(error, NotFound) and deletions:
        close_deleted(deps, vendor, ticket_id, owner, ids, now)
        log.info("ticket %s:%s is gone at the vendor (%s): closed as deleted, %d event(s) done, timers cancelled",
                 vendor, ticket_id, ", ".join(deletions), len(ids))
        return PassResult("done", events=ids)
    permanent = isinstance(error, PERMANENT_ERRORS)
    if not permanent and not isinstance(error, (Transient, Conflict)):
        log.error("ticket %s:%s: unexpected error in pass (attempt %d)", vendor, ticket_id, attempts, exc_info=error)
    if permanent or attempts >= deps.max_attempts:
        reason = message if permanent else f"gave up after {attempts} attempts: {message}"
        with deps.db.session() as session:
            mark_events(session, owner, ids, "dead", now, error=reason)
        log.warning("ticket %s:%s: %d event(s) dead-lettered: %s", vendor, ticket_id, len(ids), reason)
        telemetry.dead_lettered(vendor, len(ids))
        return PassResult("dead", events=ids, error=reason)
    delay = backoff_seconds(deps, attempts, error)
    with deps.db.session() as session:
        session.execute(
            update(EventRow)
            .where(EventRow.id.in_(ids), EventRow.lease_owner == owner, EventRow.status == "processing")
            .values(status="pending", lease_owner=None, lease_until=None, last_error=message,
                    next_attempt_at=now + timedelta(seconds=delay))
        )
    log.info("ticket %s:%s: attempt %d failed (%s); retry in %.1fs", vendor, ticket_id, attempts, message, delay)
    if deps.enqueue_ticket is not None:
        try:
            deps.enqueue_ticket(vendor, ticket_id, delay)
        except Exception:  # noqa: BLE001 - the reconciler re-enqueues due pending events
            log.warning("could not enqueue retry for %s:%s", vendor, ticket_id, exc_info=True)
    return PassResult("retry", events=ids, error=message)


def close_deleted(deps: PassDeps, vendor: str, ticket_id: str, owner: str, ids: list[int], now: datetime) -> None:
    """The ticket was deleted (or merged away) at the vendor: its events are done, its clocks stop, and
    the stored state says `deleted` (so it no longer counts as open)."""
    with deps.db.session() as session:
        mark_events(session, owner, ids, "done", now)
        timer_host.cancel(session, vendor, ticket_id)
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None:
            row = TicketStateRow(vendor=vendor, ticket_id=ticket_id, first_seen_at=now,
                                 state=to_json(TicketState(vendor=vendor, ticket_id=ticket_id)))
            session.add(row)
        row.status = DELETED
        row.updated_at = now
