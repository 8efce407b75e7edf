"""The processing pass: one ticket, all of its pending events at once.

    process_ticket(vendor, ticket_id, deps=deps)   # events -> fetch once, decide once, write once
    fire_timer(timer_id, deps=deps)                # a due timer -> integration.clocks.on_timer
    reconcile_once(deps)                           # expired leases, forgotten events, overdue timers

Concurrency: a pass holds the lease `ticket:<vendor>:<id>` (table `leases`), renewed by a heartbeat
while it runs, so one ticket is handled by one worker at a time; a task that finds the lease taken
re-queues itself a moment later. Events are claimed (`pending -> processing`, `lease_until`) under
that lease; a worker killed with -9 stops renewing, and the reconciler puts its events back to pending.

Exactly-once writes on top of at-least-once delivery (the write-ahead intent):
1. decide on a fresh snapshot; if the decision writes to the ticket, first COMMIT a `decisions` row
   with status `applying` holding the decision and the state it leads to;
2. call `connector.apply` (Zendesk refuses stale snapshots with 409 -> Conflict -> re-fetch, re-decide,
   at most 3 times). A refusal does not prove nothing was written: the retry layer may re-send a PUT
   whose first attempt timed out after Zendesk stored it (the guarded retry then gets 409), and JSM
   may take the field PUT and then refuse the comment POST (404). So on Conflict and on permanent
   errors the ticket is re-fetched first: if any structured effect of the decision shows, the intent
   completes as `recovered` (state advanced, no second write, the error kept on the row); only
   otherwise is it closed (`conflict` -> decide again, or `failed` -> dead letter);
3. COMMIT in one transaction: the decision row -> `applied` with the API result, the ticket state,
   milestones/CSAT rows, timers, and the events -> `done`.
A crash between 1 and 3 leaves an `applying` row. A decision has up to three parts (fields, reply, note;
connectors.base.PART_*) and may take several requests (Zendesk: fields + reply, then the note; JSM:
field edit, reply, note); between two requests the connector reports progress and the intent row records
which parts the vendor confirmed and which go out next (`decisions.parts`). The next pass for the ticket
(the events are still pending, so there is one) re-fetches the ticket and checks each part on its own
(`_part_outcomes`): the fields on the ticket, the reply and the note among the integration user's own
comments newer than the decision's snapshot (`Connector.own_comments`). Nothing confirmed and no
structured effect visible -> the first request never landed -> `abandoned` and decided afresh.
Otherwise the stored state is committed as `recovered`, after sending what is missing:
- the internal note whenever it is not on the ticket: at least once, a duplicated note is acceptable, a
  lost warning is not;
- the customer reply only when its request had certainly not started (the recorded progress shows a
  later request without it): at most once, never twice. A comment-only intent whose connector said the
  call certainly did not reach the vendor (`ConnectorError.sent is False`: refused before sending,
  connect timeout, 429) is closed as `abandoned` at once and the next pass decides (and sends) again.
The outcome of each part (written / visible / resent / unconfirmed / not sent / assumed) is kept on the
row for `escalation history`. A connector without `own_comments` (a test double writing one request per
decision) has its comments taken as written with the fields, and a note-only intent sent again.

Failures: transient errors are retried with backoff; permanent ones (and MAX_ATTEMPTS) dead-letter the
pass's events, except a NotFound while a deletion/merge event of the ticket is pending (DELETION_EVENTS):
the ticket is gone on purpose, so its events are done, its timers cancelled and its state `deleted`.

Field and group mappings: a ticket pinned to an older matrix version is read and written through a
connector built for that version (`PassDeps.connector_for_version`), so a mapping change cannot break
it (see service.runtime.mapping_matrix for which mapping wins).
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import select, update

from connectors.base import (
    PART_FIELDS,
    PART_NOTE,
    PART_REPLY,
    ApplyResult,
    Conflict,
    Connector,
    NotFound,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
    apply_reporting,
)
from integration import alerts
from integration import clocks as clock_rules
from integration.store import timers as timer_host
from integration.store.db import (
    CsatRow,
    Database,
    DecisionRow,
    EventRow,
    MilestoneRow,
    TicketStateRow,
    TimerRow,
    utcnow,
)
from integration.store.leases import acquire_lease, release_lease
from integration.store.codec import from_json, milestones_to_json, to_json
from integration.events import due_pending_exists, requeue_expired, stale_pending
from integration.store.matrix_versions import load_version
from integration.model import Decision, Ticket, TicketState, TimerSpec
from matrix_config.loader import LoadedMatrix

log = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS = 3
MAX_ROUNDS_PER_TASK = 3  # events that arrive during a pass are taken in the same task, a few times over
RESOLVED = frozenset({"solved", "closed"})
# A pass that gets NotFound while one of these events is pending closes the ticket as deleted rather than
# dead-lettering its events: the dead-letter list is what operators watch for real problems. Zendesk's
# event names (a merged-away ticket is closed and may no longer be readable), and Jira's, should the edge
# record that one for processing.
DELETION_EVENTS = frozenset({"ticket.soft_deleted", "ticket.permanently_deleted", "ticket.merged",
                             "jira:issue_deleted"})
DELETED = "deleted"  # ticket_state.status of a ticket closed that way
PERMANENT_ERRORS = (NotFound, Unauthorized, Permanent)


@dataclass
class PassDeps:
    db: Database
    connector_for: Callable[[str], Connector]
    current_matrix: Callable[[], LoadedMatrix]
    dry_run_for: Callable[[str], bool]
    lease_seconds: float = 30.0  # Settings.lease_seconds (LEASE_SECONDS) in a Runtime
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    now: Callable[[], datetime] = utcnow
    enqueue_ticket: Callable[[str, str, float | None], None] | None = None
    enqueue_timer: Callable[[int, datetime | None], None] | None = None
    decide: Callable[..., Decision] | None = None
    next_state: Callable[[TicketState | None, Ticket, Decision], TicketState] | None = None
    clocks: Any = clock_rules
    sleep: Callable[[float], None] = time.sleep
    # (vendor, matrix version) -> the connector whose field/group mappings serve tickets pinned to that
    # version (service.runtime.Runtime.connector_for_version). None: `connector_for` serves every ticket.
    connector_for_version: Callable[[str, str], Connector] | None = None

    def engine_decide(self) -> Callable[..., Decision]:
        if self.decide is None:
            from integration.engine import decide

            self.decide = decide
        return self.decide

    def engine_next_state(self) -> Callable[..., TicketState]:
        if self.next_state is None:
            from integration.engine import next_state

            self.next_state = next_state
        return self.next_state


@dataclass
class PassResult:
    status: str  # busy | nothing | echo | done | retry | dead
    decision_id: int | None = None
    writes: int = 0
    events: list[int] = field(default_factory=list)
    error: str | None = None


class AlreadyFired(Exception):
    pass


# ------------------------------------------------------------------------------------ heartbeat
class _Heartbeat:
    """Renews the ticket lease and the claimed events' leases while a pass runs."""

    def __init__(self, deps: PassDeps, lease_name: str, owner: str):
        self.deps, self.lease_name, self.owner = deps, lease_name, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{lease_name}", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(self.deps.lease_seconds / 3.0, 0.2)
        while not self._stop.wait(interval):
            try:
                now = self.deps.now()
                acquire_lease(self.deps.db, self.lease_name, self.owner, self.deps.lease_seconds, now)
                with self.deps.db.session() as session:
                    session.execute(
                        update(EventRow)
                        .where(EventRow.lease_owner == self.owner, EventRow.status == "processing")
                        .values(lease_until=now + timedelta(seconds=self.deps.lease_seconds))
                    )
            except Exception:  # noqa: BLE001 - a missed heartbeat only risks a duplicate pass, which is safe
                log.warning("lease heartbeat failed for %s", self.lease_name, exc_info=True)


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# ------------------------------------------------------------------------------------ events pass
@dataclass(frozen=True)
class _Claimed:
    id: int
    actor_id: str | None
    attempts: int
    event_type: str = ""


def _claim(deps: PassDeps, vendor: str, ticket_id: str, owner: str) -> list[_Claimed]:
    now = deps.now()
    with deps.db.session() as session:
        session.execute(
            update(EventRow)
            .where(
                EventRow.vendor == vendor,
                EventRow.ticket_id == ticket_id,
                (
                    (EventRow.status == "pending")
                    & ((EventRow.next_attempt_at.is_(None)) | (EventRow.next_attempt_at <= now))
                )
                | ((EventRow.status == "processing") & (EventRow.lease_until < now)),
            )
            .values(
                status="processing",
                lease_owner=owner,
                lease_until=now + timedelta(seconds=deps.lease_seconds),
                attempts=EventRow.attempts + 1,
            )
        )
        rows = session.execute(
            select(EventRow.id, EventRow.actor_id, EventRow.attempts, EventRow.event_type)
            .where(EventRow.lease_owner == owner, EventRow.status == "processing")
            .order_by(EventRow.id)
        ).all()
        return [_Claimed(*row) for row in rows]


def _mark_events(session: Any, owner: str, ids: list[int], status: str, now: datetime, *,
                 decision_id: int | None = None, error: str | None = None) -> None:
    if not ids:
        return
    session.execute(
        update(EventRow)
        .where(EventRow.id.in_(ids), EventRow.lease_owner == owner, EventRow.status == "processing")
        .values(status=status, processed_at=now, lease_owner=None, lease_until=None, decision_id=decision_id,
                last_error=error)
    )


def process_ticket(vendor: str, ticket_id: str, *, deps: PassDeps) -> PassResult:
    """Handle every pending event of one ticket in one pass. Safe to call any number of times."""
    owner = uuid.uuid4().hex
    lease_name = f"ticket:{vendor}:{ticket_id}"
    if not acquire_lease(deps.db, lease_name, owner, deps.lease_seconds, deps.now()):
        return PassResult("busy")
    try:
        with _Heartbeat(deps, lease_name, owner):
            result = PassResult("nothing")
            for _ in range(MAX_ROUNDS_PER_TASK):
                claimed = _claim(deps, vendor, ticket_id, owner)
                if not claimed:
                    break
                result = _handle_claimed(deps, vendor, ticket_id, owner, claimed)
                if result.status in ("retry", "dead"):
                    break
    finally:
        release_lease(deps.db, lease_name, owner)
    _enqueue_if_more_arrived(deps, vendor, ticket_id)
    return result


def _enqueue_if_more_arrived(deps: PassDeps, vendor: str, ticket_id: str) -> None:
    """The webhook edge enqueues no task for an event that finds an earlier unclaimed one (coalescing
    at the source, integration.events). Such an event can commit just after this pass's last claim, or
    stay behind when the pass stopped early (retry, dead letter, MAX_ROUNDS_PER_TASK): look once more,
    after the ticket lease is released, so its task is not left to the reconciler."""
    if deps.enqueue_ticket is None:
        return
    try:
        if due_pending_exists(deps.db, vendor, ticket_id, deps.now()):
            deps.enqueue_ticket(vendor, ticket_id, None)
    except Exception:  # noqa: BLE001 - the reconciler enqueues pending events no task is coming for
        log.warning("could not re-enqueue %s:%s for events that arrived during its pass", vendor, ticket_id,
                    exc_info=True)


def _handle_claimed(deps: PassDeps, vendor: str, ticket_id: str, owner: str, claimed: list[_Claimed]) -> PassResult:
    ids = [c.id for c in claimed]
    try:
        connector = deps.connector_for(vendor)
        own_id = connector.own_user_id()
    except Exception as exc:  # noqa: BLE001 - building a connector can fail like any vendor call
        return _failed(deps, vendor, ticket_id, owner, claimed, exc)
    echoes = [c.id for c in claimed if own_id and c.actor_id and str(c.actor_id) == str(own_id)]
    work = [c for c in claimed if c.id not in echoes]
    if echoes:
        with deps.db.session() as session:
            _mark_events(session, owner, echoes, "done", deps.now(), error=None)
        log.info("ticket %s:%s: %d event(s) were our own writes; no pass", vendor, ticket_id, len(echoes))
    if not work:
        return PassResult("echo", events=echoes)
    work_ids = [c.id for c in work]

    def decide_events(ticket: Ticket, state: TicketState | None, matrix: LoadedMatrix, now: datetime):
        decision = deps.engine_decide()(ticket, state, matrix.matrix, now, version=matrix.version)
        state_after = deps.engine_next_state()(state, ticket, decision)
        if deps.clocks is not None and hasattr(deps.clocks, "track"):
            state_after = deps.clocks.track(state_after, ticket, matrix.matrix, now)
        return decision, state_after, None, ()

    try:
        result = _run_cycle(deps, connector, vendor, ticket_id, trigger="events", decide_fn=decide_events,
                            event_ids=work_ids, owner=owner)
    except Exception as exc:  # noqa: BLE001 - classified below: retry or dead letter
        return _failed(deps, vendor, ticket_id, owner, work, exc)
    result.events = echoes + work_ids
    return result


def _backoff(deps: PassDeps, attempts: int, error: BaseException) -> float:
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(float(error.retry_after), 0.0)
    delay = min(deps.backoff_base * (2 ** max(attempts - 1, 0)), deps.backoff_max)
    return delay * random.uniform(0.8, 1.2)


def _failed(deps: PassDeps, vendor: str, ticket_id: str, owner: str, claimed: list[_Claimed],
            error: BaseException) -> PassResult:
    ids = [c.id for c in claimed]
    attempts = max(c.attempts for c in claimed)
    now = deps.now()
    message = _short(error)
    deletions = sorted({c.event_type for c in claimed if c.event_type in DELETION_EVENTS})
    if isinstance(error, NotFound) and deletions:
        _close_deleted(deps, vendor, ticket_id, owner, ids, now)
        log.info("ticket %s:%s is gone at the vendor (%s): closed as deleted, %d event(s) done, timers cancelled",
                 vendor, ticket_id, ", ".join(deletions), len(ids))
        return PassResult("done", events=ids)
    permanent = isinstance(error, PERMANENT_ERRORS)
    if not permanent and not isinstance(error, (Transient, Conflict)):
        log.error("ticket %s:%s: unexpected error in pass (attempt %d)", vendor, ticket_id, attempts, exc_info=error)
    if permanent or attempts >= deps.max_attempts:
        reason = message if permanent else f"gave up after {attempts} attempts: {message}"
        with deps.db.session() as session:
            _mark_events(session, owner, ids, "dead", now, error=reason)
        log.warning("ticket %s:%s: %d event(s) dead-lettered: %s", vendor, ticket_id, len(ids), reason)
        return PassResult("dead", events=ids, error=reason)
    delay = _backoff(deps, attempts, error)
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


def _close_deleted(deps: PassDeps, vendor: str, ticket_id: str, owner: str, ids: list[int], now: datetime) -> None:
    """The ticket was deleted (or merged away) at the vendor: its events are done, its clocks stop, and
    the stored state says `deleted` (so it no longer counts as open)."""
    with deps.db.session() as session:
        _mark_events(session, owner, ids, "done", now)
        timer_host.cancel(session, vendor, ticket_id)
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None:
            row = TicketStateRow(vendor=vendor, ticket_id=ticket_id, first_seen_at=now,
                                 state=to_json(TicketState(vendor=vendor, ticket_id=ticket_id)))
            session.add(row)
        row.status = DELETED
        row.updated_at = now


# ------------------------------------------------------------------------------------ the cycle
DecideFn = Callable[[Ticket, TicketState | None, LoadedMatrix, datetime],
                    tuple[Decision | None, TicketState, list | None, tuple[str, ...]]]


@dataclass(frozen=True)
class PassContext:
    """What every final commit of one cycle shares; built once per cycle."""

    trigger: str  # "events", "timer:<id>"
    matrix: LoadedMatrix  # the version that decides the ticket (its pin, or the current one)
    dry_run: bool
    event_ids: tuple[int, ...] = ()  # marked done in the final commit (an events pass)
    owner: str | None = None  # the lease owner that claimed `event_ids`
    timer_id: int | None = None  # marked fired in the final commit (a timer firing)


@dataclass(frozen=True)
class RoundOutcome:
    """One decision round: what `decide_fn` returned, and the state it started from."""

    decision: Decision | None
    state_before: TicketState | None
    state_after: TicketState
    extra_timers: list | None = None  # None: the clocks plan the timers
    cancel_kinds: tuple[str, ...] = ()


def _pinned_matrix(deps: PassDeps, session: Any, state: TicketState | None, last_status: str | None,
                   ticket: Ticket) -> LoadedMatrix:
    """New tickets pin the current matrix; a ticket in flight keeps its version until it is resolved
    (a reopened ticket starts over with the current one) or an admin re-pins it."""
    current = deps.current_matrix()  # loaded (and stored) before the caller opened `session`
    if state is None or not state.matrix_version or state.matrix_version == current.version:
        return current
    if last_status in RESOLVED and ticket.status not in RESOLVED:
        return current
    pinned = load_version(session, state.matrix_version)
    if pinned is None:
        log.warning("ticket %s:%s is pinned to matrix %s, which this database does not hold; using %s",
                    ticket.vendor, ticket.id, state.matrix_version, current.version)
        return current
    return pinned


def _stored_pin(deps: PassDeps, vendor: str, ticket_id: str) -> str | None:
    with deps.db.session() as session:
        return session.scalars(
            select(TicketStateRow.matrix_version)
            .where(TicketStateRow.vendor == vendor, TicketStateRow.ticket_id == ticket_id)
        ).first()


def _load(deps: PassDeps, vendor: str, ticket_id: str, ticket: Ticket):
    deps.current_matrix()  # may write the matrix version: never inside another open transaction (SQLite)
    with deps.db.session() as session:
        row = session.get(TicketStateRow, (vendor, ticket_id))
        state = from_json(TicketState, row.state) if row is not None else None
        last_status = row.status if row is not None else None
        matrix = _pinned_matrix(deps, session, state, last_status, ticket)
        intents = list(
            session.scalars(
                select(DecisionRow)
                .where(DecisionRow.vendor == vendor, DecisionRow.ticket_id == ticket_id, DecisionRow.status == "applying")
                .order_by(DecisionRow.id)
            )
        )
        return state, matrix, intents


def _run_cycle(deps: PassDeps, connector: Connector, vendor: str, ticket_id: str, *, trigger: str,
               decide_fn: DecideFn, event_ids: list[int] | None = None, owner: str | None = None,
               timer_id: int | None = None) -> PassResult:
    pin = _stored_pin(deps, vendor, ticket_id) if deps.connector_for_version is not None else None
    if pin:
        connector = deps.connector_for_version(vendor, pin)
    ticket = connector.fetch_ticket(ticket_id)
    state, matrix, intents = _load(deps, vendor, ticket_id, ticket)
    if deps.connector_for_version is not None and pin and matrix.version != pin:
        # Not decided with the pinned version after all (resolved and reopened, or the version is not
        # stored): read the ticket again through the mappings of the version that decides it.
        connector = deps.connector_for_version(vendor, matrix.version)
        ticket = connector.fetch_ticket(ticket_id)
    dry_run = deps.dry_run_for(vendor)
    ctx = PassContext(trigger=trigger, matrix=matrix, dry_run=dry_run, event_ids=tuple(event_ids or ()),
                      owner=owner, timer_id=timer_id)
    for intent in intents:
        state = _recover(deps, connector, intent, ticket, state, matrix, dry_run)
    if intents and timer_id is not None:
        with deps.db.session() as session:
            if session.get(TimerRow, timer_id).status != "pending":
                raise AlreadyFired(timer_id)  # the recovered intent was this very firing
    for _round in range(MAX_CONFLICT_ROUNDS):
        now = deps.now()
        ticket = _with_level_history(connector, ticket, state)
        decision, state_after, extra_timers, cancel_kinds = decide_fn(ticket, state, matrix, now)
        if _rule_entry_needs_history(connector, ticket, state, decision):
            # Decided again with when the rule's attributes changed: pure, and the entry time is all it moves.
            ticket = _with_field_changes(connector, ticket)
            decision, state_after, extra_timers, cancel_kinds = decide_fn(ticket, state, matrix, now)
        outcome = RoundOutcome(decision, state, state_after, extra_timers, cancel_kinds)
        writes = decision is not None and decision.writes_to_ticket
        if not writes or dry_run:
            decision_id = _finalize(deps, ctx, outcome, ticket, now, status="dry_run" if writes else "noop")
            return PassResult("done", decision_id=decision_id)
        intent_id = _write_intent(deps, decision, state_after, matrix, trigger, ticket)
        try:
            result = apply_reporting(connector, ticket, decision, _progress_recorder(deps, intent_id))
        except (Conflict, *PERMANENT_ERRORS) as exc:
            fresh = None
            if not _certainly_not_sent(exc) and _visible_checks(decision):
                # A refusal does not prove that nothing was written: the retry layer may have re-sent a
                # request whose first attempt timed out after the vendor stored it (Zendesk then answers
                # the guarded retry with 409), or a later call of the same apply failed after the field
                # update went through (JSM: PUT fields ok, comment POST 404). Deciding again would send
                # the customer reply twice and read our own level field as a manual move, so look first.
                # An error while looking leaves the intent `applying`: the next pass's recovery looks.
                fresh = connector.fetch_ticket(ticket_id)
                if _visible(fresh, decision):
                    # Per part: a 409 on the guarded retry of the first Zendesk update means our own stored
                    # attempt moved the stamp, so the note update that never went out is sent now; after a
                    # permanent refusal (JSM comment 404) nothing more is sent, and the history says so.
                    parts, resent = _part_outcomes(deps, connector, intent_id, decision, fresh,
                                                   send_missing=isinstance(exc, Conflict))
                    log.warning("ticket %s:%s: decision %d is visible on the ticket although the vendor call "
                                "failed (%s); completing it part by part (%s)", vendor, ticket_id,
                                intent_id, _short(exc), _describe_parts(parts))
                    decision_id = _finalize(deps, ctx, outcome, fresh, now, status="recovered", intent_id=intent_id,
                                            api_result=resent, resent=resent is not None, parts=parts,
                                            note=f"written, then the vendor call failed: {_short(exc)}")
                    return PassResult("done", decision_id=decision_id)
            if not isinstance(exc, Conflict):
                _close_intent(deps, intent_id, "failed", _short(exc))
                raise
            _close_intent(deps, intent_id, "conflict", _short(exc))
            log.info("ticket %s:%s changed under us (%s); re-fetching", vendor, ticket_id, exc)
            ticket = fresh if fresh is not None else connector.fetch_ticket(ticket_id)
            continue
        except Exception as exc:
            if _certainly_not_sent(exc):
                # The connector knows nothing reached the vendor (refused before sending, 429): a
                # comment-only intent left `applying` would be taken as sent by the recovery, and a
                # data request the customer never got would hold the ticket for good.
                _close_intent(deps, intent_id, "abandoned", f"not sent: {_short(exc)}")
            raise
        # Any other error leaves the intent `applying`: the write may or may not have reached the vendor,
        # and the next pass finds out from the ticket itself.
        decision_id = _finalize(deps, ctx, outcome, ticket, now, status="applied", intent_id=intent_id,
                                api_result=result, parts={part: "written" for part in _decision_parts(decision)})
        return PassResult("done", decision_id=decision_id, writes=result.writes)
    raise Transient(f"ticket {ticket_id} kept changing: {MAX_CONFLICT_ROUNDS} conflicts in a row")


def _with_field_changes(connector: Connector, ticket: Ticket) -> Ticket:
    read = getattr(connector, "field_changes", None)
    changes = read(ticket) if read is not None else {}
    if not changes:
        return ticket
    return ticket.with_(field_changed_at=changes, level_set_at=ticket.level_set_at or changes.get("level"))


def _with_level_history(connector: Connector, ticket: Ticket, state: TicketState | None) -> Ticket:
    """The ticket with `level_set_at` (when its level field got its value), read from the vendor's history
    only when this pass needs it: someone other than the service set a level that differs from the stored
    one, so the hand-set level's clocks start at that change and not at this pass's `now`. One request on
    Zendesk (audits); none on Jira, whose issue GET already carries the changelog. A connector without
    `field_changes` leaves the engine to fall back to the ticket's `updated_at`."""
    shown, stored = ticket.level, state.level if state is not None else None
    if ticket.level_set_at is not None or not shown or not stored or shown.strip().casefold() == stored.casefold():
        return ticket
    return _with_field_changes(connector, ticket)


def _rule_entry_needs_history(connector: Connector, ticket: Ticket, state: TicketState | None,
                              decision: Decision | None) -> bool:
    """A rule moves a ticket the service already placed, and the ticket does not say yet when the rule's
    attributes changed: worth one history read (Zendesk audits) so the level starts at that change rather
    than at the ticket's latest edit. Not for new tickets (their creation time), hand-set levels (already
    read) or breaches (the due time)."""
    if decision is None or not decision.to_level or ticket.field_changed_at or state is None or not state.level:
        return False
    from integration.engine import BREACH_PREFIX, DEFAULT_PLACEMENT, MANUAL

    cause = decision.rule_id or ""
    if cause in (MANUAL, DEFAULT_PLACEMENT) or cause.startswith(BREACH_PREFIX):
        return False
    return hasattr(connector, "field_changes")


def _direction(matrix: LoadedMatrix, from_level: str | None, to_level: str | None) -> str | None:
    if not to_level:
        return None
    if not from_level:
        return "placed"
    try:
        a, b = matrix.matrix.level_index(from_level), matrix.matrix.level_index(to_level)
    except KeyError:
        return "same" if from_level == to_level else "up"
    return "up" if b > a else "down" if b < a else "same"


def _decision_row(decision: Decision, matrix: LoadedMatrix, trigger: str, ticket: Ticket, status: str,
                  state_after: TicketState | None, dry_run: bool) -> DecisionRow:
    issue_type = ticket.fields.get("issue_type") if ticket.fields else None
    return DecisionRow(
        vendor=decision.vendor or ticket.vendor,
        ticket_id=decision.ticket_id or ticket.id,
        decided_at=decision.decided_at,
        trigger=trigger[:80],
        from_level=decision.from_level,
        to_level=decision.to_level,
        direction=_direction(matrix, decision.from_level, decision.to_level),
        issue_type=str(issue_type) if issue_type is not None else None,
        reason=decision.reason or "",
        rule_id=decision.rule_id,
        matrix_version=decision.matrix_version or matrix.version,
        decision=to_json(decision),
        state_after=to_json(state_after) if state_after is not None else None,
        status=status,
        writes=0,
        dry_run=dry_run,
    )


def _write_intent(deps: PassDeps, decision: Decision, state_after: TicketState, matrix: LoadedMatrix,
                  trigger: str, ticket: Ticket) -> int:
    with deps.db.session() as session:
        row = _decision_row(decision, matrix, trigger, ticket, "applying", state_after, dry_run=False)
        # Comments the integration posts for this decision are newer than the snapshot it was made from.
        row.parts = {"since": ticket.updated_at.isoformat() if ticket.updated_at else None, "written": []}
        session.add(row)
        session.flush()
        return row.id


def _progress_recorder(deps: PassDeps, intent_id: int):
    """connectors.base.ApplyProgress for one intent: commits, between two requests of one decision, what
    the vendor confirmed and what goes out next, so recovery after a kill knows which parts are written."""

    def record(written: list[str], sending: list[str]) -> None:
        with deps.db.session() as session:
            row = session.get(DecisionRow, intent_id)
            progress = dict(row.parts or {})
            progress["written"] = sorted(set(progress.get("written") or ()) | set(written))
            progress["sending"] = list(sending)
            row.parts = progress

    return record


def _close_intent(deps: PassDeps, intent_id: int, status: str, error: str | None,
                  parts: dict[str, str] | None = None) -> None:
    with deps.db.session() as session:
        row = session.get(DecisionRow, intent_id)
        row.status, row.error, row.finished_at = status, error, deps.now()
        if parts is not None:
            row.parts = {**(row.parts or {}), "outcome": dict(parts)}


def _certainly_not_sent(error: BaseException) -> bool:
    """The connector says the failed apply wrote nothing (`ConnectorError.sent is False`). Unknown
    (None, the default) is never read as "not sent": a timeout may follow a stored write."""
    return getattr(error, "sent", None) is False


def _visible_checks(decision: Decision) -> int:
    return (bool(decision.priority) + bool(decision.owner_group) + len(decision.add_tags)
            + len(decision.remove_tags) + len(decision.field_updates or {}))


def _visible(ticket: Ticket, decision: Decision) -> bool | None:
    """Whether the decision's structured effects show on the ticket: True if any does, False if none
    does, None if the decision has none to check (a comment only)."""
    checks: list[bool] = []
    if decision.priority:
        checks.append(ticket.priority == decision.priority)
    if decision.owner_group:
        checks.append(ticket.group == decision.owner_group)
    for tag in decision.add_tags:
        checks.append(tag in ticket.tags)
    for tag in decision.remove_tags:
        checks.append(tag not in ticket.tags)
    for name, value in (decision.field_updates or {}).items():
        checks.append(str(ticket.fields.get(name)) == str(value) if value is not None else ticket.fields.get(name) is None)
    if not checks:
        return None
    return any(checks)


def _internal_only(decision: Decision) -> bool:
    """The decision's only write is an internal note (pre-breach warning, cadence reminder)."""
    return bool(decision.internal_note) and not decision.public_reply and _visible_checks(decision) == 0


def _decision_parts(decision: Decision) -> list[str]:
    """The parts (connectors.base.PART_*) a decision writes, each delivered and recovered on its own."""
    parts = [PART_FIELDS] if _visible_checks(decision) else []
    if decision.public_reply:
        parts.append(PART_REPLY)
    if decision.internal_note:
        parts.append(PART_NOTE)
    return parts


def _describe_parts(parts: dict[str, str]) -> str:
    return ", ".join(f"{part} {outcome}" for part, outcome in parts.items()) or "nothing to write"


def _stored_progress(deps: PassDeps, intent_id: int) -> dict[str, Any]:
    with deps.db.session() as session:
        row = session.get(DecisionRow, intent_id)
        return dict(row.parts or {}) if row is not None else {}


def _part_outcomes(deps: PassDeps, connector: Connector, intent_id: int, decision: Decision, ticket: Ticket, *,
                   send_missing: bool) -> tuple[dict[str, str], ApplyResult | None]:
    """What of an unfinished decision reached the vendor, part by part, on the re-read `ticket`; with
    `send_missing`, the missing parts that may be sent are sent now. Outcomes:
    written (the vendor confirmed it before the crash), visible (found on the ticket: the fields, or the
    integration user's own comment with that text), resent (sent on recovery), unconfirmed (a customer
    reply whose request may have reached the vendor: never sent twice), not sent (missing, and not sent
    after a permanent vendor refusal or in a dry run), assumed (a connector that cannot list its comments, which writes one request).
    The internal note goes out whenever it is not on the ticket (at least once); the reply only when its
    request had certainly not started (at most once): the stored progress shows a later boundary
    without it, i.e. the worker died before sending it."""
    progress = _stored_progress(deps, intent_id)
    written = set(progress.get("written") or ())
    sending = progress.get("sending")
    outcome: dict[str, str] = {}
    if _visible_checks(decision):
        outcome[PART_FIELDS] = ("written" if PART_FIELDS in written
                                else "visible" if _visible(ticket, decision) else "unconfirmed")
    lookup = getattr(connector, "own_comments", None)
    since = datetime.fromisoformat(progress["since"]) if progress.get("since") else None
    comments = None
    missing: dict[str, str] = {}
    for part, text, public in ((PART_REPLY, decision.public_reply, True), (PART_NOTE, decision.internal_note, False)):
        if not text:
            continue
        if part in written:
            outcome[part] = "written"
            continue
        if lookup is None:
            if part == PART_NOTE and _internal_only(decision):
                missing[part] = text  # nothing else to look at: at least once
            else:
                outcome[part] = "assumed"
            continue
        if comments is None:
            comments = lookup(ticket.id, since)
        # A Zendesk move that had to unassign appends a sentence to the note it sends (connectors.zendesk
        # unassign_note), so the note found on the ticket may be longer than the one decided.
        if any(c.public == public and (c.body.strip() == text.strip() or (not public and c.body.strip().startswith(text.strip())))
               for c in comments):
            outcome[part] = "visible"
        elif part == PART_NOTE or (sending is not None and PART_REPLY not in sending):
            missing[part] = text
        else:
            outcome[part] = "unconfirmed"
    if not missing:
        return outcome, None
    if not send_missing:
        outcome.update({part: "not sent" for part in missing})
        return outcome, None
    comments_only = replace(decision, priority=None, owner_group=None, add_tags=(), remove_tags=(), field_updates={},
                            public_reply=missing.get(PART_REPLY), internal_note=missing.get(PART_NOTE))
    result = apply_reporting(connector, ticket, comments_only, _progress_recorder(deps, intent_id))
    outcome.update({part: "resent" for part in missing})
    return outcome, result


def _recover(deps: PassDeps, connector: Connector, intent: DecisionRow, ticket: Ticket,
             state: TicketState | None, matrix: LoadedMatrix, dry_run: bool) -> TicketState | None:
    """An intent a killed worker left `applying`: each part of it (fields, reply, note) is checked on the
    re-read ticket on its own, see `_part_outcomes`. Nothing of it there and nothing confirmed -> the
    crash came before the first request reached the vendor: `abandoned`, decided afresh. Otherwise the
    missing parts that may be sent are sent and the intent completes as `recovered` with the outcome of
    each part. An error while looking or sending leaves the intent `applying` for the next pass."""
    decision = from_json(Decision, intent.decision)
    visible = _visible(ticket, decision)
    now = deps.now()
    if visible is False and not (intent.parts or {}).get("written"):
        _close_intent(deps, intent.id, "abandoned", "crashed before the write reached the vendor")
        log.warning("ticket %s:%s: unfinished decision %d was not applied; deciding afresh",
                    ticket.vendor, ticket.id, intent.id)
        return state
    parts, result = _part_outcomes(deps, connector, intent.id, decision, ticket, send_missing=not dry_run)
    log.warning("ticket %s:%s: unfinished decision %d recovered part by part: %s",
                ticket.vendor, ticket.id, intent.id, _describe_parts(parts))
    return _complete_recovered(deps, intent, decision, ticket, state, matrix, now, api_result=result, parts=parts)


def _complete_recovered(deps: PassDeps, intent: DecisionRow, decision: Decision, ticket: Ticket,
                        state: TicketState | None, matrix: LoadedMatrix, now: datetime,
                        api_result: Any, parts: dict[str, str] | None = None) -> TicketState | None:
    state_after = from_json(TicketState, intent.state_after) if intent.state_after else state
    timer_id = None
    if intent.trigger.startswith("timer:"):
        try:
            timer_id = int(intent.trigger.split(":", 1)[1])
        except ValueError:
            timer_id = None
    ctx = PassContext(trigger=intent.trigger, matrix=matrix, dry_run=False, timer_id=timer_id)
    try:
        _finalize(deps, ctx, RoundOutcome(decision, state, state_after), ticket, now, status="recovered",
                  intent_id=intent.id, api_result=api_result, plan=timer_id is None, resent=api_result is not None,
                  parts=parts)
    except AlreadyFired:
        _close_intent(deps, intent.id, "recovered", None, parts=parts)
    return state_after


# ------------------------------------------------------------------------------------ final commit
def _normalize_csat(raw: str) -> float | None:
    text = str(raw).strip().lower()
    if text in ("good", "positive", "satisfied"):
        return 1.0
    if text in ("bad", "negative", "dissatisfied"):
        return 0.0
    try:
        number = float(text)
    except ValueError:
        return None
    if 1 <= number <= 5:
        return (number - 1) / 4
    return None


def _finalize(deps: PassDeps, ctx: PassContext, outcome: RoundOutcome, ticket: Ticket, now: datetime, *,
              status: str, intent_id: int | None = None, api_result: Any = None, plan: bool = True,
              resent: bool = False, note: str | None = None, parts: dict[str, str] | None = None) -> int | None:
    """The one commit that ends a round: the decision row (the intent closed with `status`, or a new
    row when there was no intent), the ticket state, milestones, CSAT, timers and the claimed events."""
    vendor, ticket_id = ticket.vendor, ticket.id
    matrix, timer_id = ctx.matrix, ctx.timer_id
    decision, state_before, state_after = outcome.decision, outcome.state_before, outcome.state_after
    with deps.db.session() as session:
        if timer_id is not None and not timer_host.mark_fired(session, timer_id, now):
            raise AlreadyFired(timer_id)
        decision_id = intent_id
        if intent_id is not None:
            row = session.get(DecisionRow, intent_id)
            row.status = status
            row.finished_at = now
            if api_result is not None:
                row.writes = api_result.writes
                row.api_result = {"writes": api_result.writes, "requests": list(api_result.requests)[:50],
                                  "dry_run": api_result.dry_run}
                if resent:
                    row.api_result["resent_after_crash"] = True
            if note is not None:
                row.error = note[:500]
            if parts is not None:
                row.parts = {**(row.parts or {}), "outcome": dict(parts)}
        elif decision is not None and not decision.is_empty:
            row = _decision_row(decision, matrix, ctx.trigger, ticket, status, state_after, ctx.dry_run)
            row.finished_at = now
            session.add(row)
            session.flush()
            decision_id = row.id

        state_row = session.get(TicketStateRow, (vendor, ticket_id))
        previous_satisfaction = state_row.satisfaction if state_row is not None else None
        was_escalated = bool(state_row.escalated) if state_row is not None else False
        if state_row is None:
            state_row = TicketStateRow(vendor=vendor, ticket_id=ticket_id, first_seen_at=now, state={})
            session.add(state_row)
        before = state_before or TicketState(vendor=vendor, ticket_id=ticket_id)
        escalated = was_escalated or (
            decision is not None and _direction(matrix, decision.from_level, decision.to_level) == "up"
        )
        issue_type = ticket.fields.get("issue_type") if ticket.fields else None
        state_row.state = to_json(state_after)
        state_row.level = state_after.level
        state_row.entered_level_at = state_after.entered_level_at
        state_row.matrix_version = state_after.matrix_version or matrix.version
        state_row.rule_id = state_after.rule_id
        state_row.bypassed = bool(state_after.bypassed)
        state_row.pending_level = state_after.pending_level
        state_row.data_requested = list(state_after.data_requested)
        state_row.milestones = milestones_to_json(state_after.milestones)
        state_row.last_public_update_at = state_after.last_public_update_at
        state_row.issue_type = str(issue_type) if issue_type is not None else None
        state_row.organization = ticket.organization
        state_row.status = ticket.status
        state_row.priority = ticket.priority
        state_row.created_at = ticket.created_at
        state_row.escalated = escalated
        state_row.updated_at = now
        if ticket.satisfaction:
            state_row.satisfaction = str(ticket.satisfaction)[:16]

        # Milestones met at the (new) current level entry: time to acknowledge / diagnose / ...
        same_entry = (before.level, before.entered_level_at) == (state_after.level, state_after.entered_level_at)
        if state_after.level and state_after.entered_level_at:
            for clock, met_at in (state_after.milestones or {}).items():
                if same_entry and clock in (before.milestones or {}):
                    continue
                exists = session.scalars(
                    select(MilestoneRow.id).where(
                        MilestoneRow.vendor == vendor, MilestoneRow.ticket_id == ticket_id,
                        MilestoneRow.level == state_after.level,
                        MilestoneRow.entered_level_at == state_after.entered_level_at, MilestoneRow.clock == clock,
                    )
                ).first()
                if exists is None:
                    session.add(MilestoneRow(
                        vendor=vendor, ticket_id=ticket_id, level=state_after.level,
                        issue_type=state_row.issue_type, clock=clock,
                        entered_level_at=state_after.entered_level_at, met_at=met_at,
                        elapsed_seconds=max((met_at - state_after.entered_level_at).total_seconds(), 0.0),
                    ))

        if ticket.satisfaction and str(ticket.satisfaction) != (previous_satisfaction or ""):
            score = _normalize_csat(ticket.satisfaction)
            if score is not None:
                session.add(CsatRow(
                    vendor=vendor, ticket_id=ticket_id, score_raw=str(ticket.satisfaction)[:16], score=score,
                    rated_at=ticket.updated_at or now, level=state_after.level, issue_type=state_row.issue_type,
                    escalated=was_escalated,
                ))

        # Timers: leaving a level or resolving cancels the old level's timers; clocks plans new ones.
        if before.level and before.level != state_after.level:
            timer_host.cancel(session, vendor, ticket_id, except_level=state_after.level or "")
        if ticket.status in RESOLVED:
            timer_host.cancel(session, vendor, ticket_id)
        if outcome.cancel_kinds:
            timer_host.cancel(session, vendor, ticket_id, kinds=outcome.cancel_kinds)
        specs = list(outcome.extra_timers or [])
        if (plan and deps.clocks is not None and outcome.extra_timers is None
                and hasattr(deps.clocks, "plan_timers")):
            specs += deps.clocks.plan_timers(state_before, state_after, decision, ticket, matrix.matrix, now)
        for spec in specs:
            timer_host.schedule(session, spec)

        # Alerts outside the ticket (notify:): outbox rows in this same commit, sent later by the worker.
        alerts.record_for_finalize(session, matrix, ticket, outcome, timer_id=timer_id, decision_id=decision_id,
                                   dry_run=ctx.dry_run, now=now)

        if ctx.event_ids and ctx.owner:
            _mark_events(session, ctx.owner, list(ctx.event_ids), "done", now, decision_id=decision_id)
    return decision_id


# ------------------------------------------------------------------------------------ timers
def fire_timer(timer_id: int, *, deps: PassDeps) -> str:
    """Run one due timer (exactly once: see integration.store.timers). Returns what happened."""
    now = deps.now()
    with deps.db.session() as session:
        row = session.get(TimerRow, timer_id)
        if row is None or row.status != "pending":
            return "skipped"
        spec = timer_host.as_spec(row)
    if spec.due_at > now + timedelta(seconds=1):
        if deps.enqueue_timer is not None:
            deps.enqueue_timer(timer_id, spec.due_at)
        return "early"
    owner = uuid.uuid4().hex
    lease_name = f"ticket:{spec.vendor}:{spec.ticket_id}"
    if not acquire_lease(deps.db, lease_name, owner, deps.lease_seconds, now):
        if deps.enqueue_timer is not None:
            deps.enqueue_timer(timer_id, now + timedelta(seconds=2))
        return "busy"
    try:
        with deps.db.session() as session:
            # Read again under the ticket lease: another run may have fired it since the first look.
            if session.get(TimerRow, timer_id).status != "pending":
                return "skipped"
        with _Heartbeat(deps, lease_name, owner):
            return _fire(deps, spec)
    finally:
        release_lease(deps.db, lease_name, owner)


def _fire(deps: PassDeps, spec: TimerSpec) -> str:
    clocks = deps.clocks

    def decide_timer(ticket: Ticket, state: TicketState | None, matrix: LoadedMatrix, now: datetime):
        current = state or TicketState(vendor=spec.vendor, ticket_id=spec.ticket_id)
        if clocks is None or not hasattr(clocks, "on_timer"):
            return None, current, [], ()
        outcome = clocks.on_timer(spec, ticket, current, matrix.matrix, now)
        state_after = outcome.state if outcome.state is not None else current
        return outcome.decision, state_after, list(outcome.schedule or []), tuple(outcome.cancel_kinds or ())

    try:
        connector = deps.connector_for(spec.vendor)
        _run_cycle(deps, connector, spec.vendor, spec.ticket_id, trigger=f"timer:{spec.timer_id}",
                   decide_fn=decide_timer, timer_id=spec.timer_id)
        return "fired"
    except AlreadyFired:
        return "skipped"
    except Exception as exc:  # noqa: BLE001 - retried with backoff, or given up on
        now = deps.now()
        with deps.db.session() as session:
            row = session.get(TimerRow, spec.timer_id)
            row.attempts += 1
            row.last_error = _short(exc)
            attempts = row.attempts
            if isinstance(exc, PERMANENT_ERRORS) or attempts >= deps.max_attempts:
                row.status = "failed"
        if isinstance(exc, PERMANENT_ERRORS) or attempts >= deps.max_attempts:
            log.warning("timer %s failed for good: %s", spec.timer_id, _short(exc))
            return "failed"
        if not isinstance(exc, (Transient, Conflict)):
            log.error("timer %s: unexpected error", spec.timer_id, exc_info=exc)
        delay = _backoff(deps, attempts, exc)
        if deps.enqueue_timer is not None:
            deps.enqueue_timer(spec.timer_id, now + timedelta(seconds=delay))
        return "retry"


# ------------------------------------------------------------------------------------ reconciler
@dataclass
class ReconcileReport:
    expired: int = 0
    forgotten: int = 0
    timers: int = 0

    def __str__(self) -> str:
        return (f"re-enqueued {self.expired} ticket(s) with expired leases, {self.forgotten} with waiting events; "
                f"fired {self.timers} overdue timer(s)")


def reconcile_once(deps: PassDeps, *, pending_grace: timedelta = timedelta(seconds=10),
                   fire_inline: bool = False) -> ReconcileReport:
    """Turn the database's truth back into queue tasks: events whose worker died (lease expired),
    pending events no task is coming for, and overdue timers whose task was lost."""
    now = deps.now()
    report = ReconcileReport()
    expired = requeue_expired(deps.db, now)
    forgotten = [t for t in stale_pending(deps.db, now, pending_grace) if t not in set(expired)]
    for vendor, ticket_id in expired + forgotten:
        if fire_inline or deps.enqueue_ticket is None:
            process_ticket(vendor, ticket_id, deps=deps)
        else:
            deps.enqueue_ticket(vendor, ticket_id, None)
    report.expired, report.forgotten = len(expired), len(forgotten)
    with deps.db.session() as session:
        due = [row.id for row in timer_host.overdue(session, now)]
    for timer_id in due:
        if fire_inline or deps.enqueue_timer is None:
            fire_timer(timer_id, deps=deps)
        else:
            deps.enqueue_timer(timer_id, None)
    report.timers = len(due)
    return report


def repin(db: Database, vendor: str, ticket_id: str, version: str) -> None:
    """Admin: decide this ticket with another stored matrix version from now on."""
    with db.session() as session:
        if load_version(session, version) is None:
            raise KeyError(f"matrix version {version} is not stored; load it once (escalation migrate / worker)")
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None:
            raise KeyError(f"no state for {vendor} ticket {ticket_id}")
        state = from_json(TicketState, row.state).with_(matrix_version=version)
        row.state = to_json(state)
        row.matrix_version = version


def _open_ticket_filter() -> Any:
    return TicketStateRow.status.is_(None) | TicketStateRow.status.not_in(sorted(RESOLVED | {DELETED}))


def repin_open(db: Database, version: str, *, from_version: str | None = None) -> list[tuple[str, str]]:
    """Admin: move every open (not solved/closed/deleted) ticket to matrix `version` (e.g. a matrix hotfix that
    must reach tickets in flight); only those on `from_version` when given. Returns the tickets moved
    (those already on `version` are left alone). The caller queues a pass for each, so it re-decides."""
    with db.session() as session:
        if load_version(session, version) is None:
            raise KeyError(f"matrix version {version} is not stored; load it once (escalation migrate / worker)")
        query = select(TicketStateRow).where(_open_ticket_filter())
        if from_version is not None:
            query = query.where(TicketStateRow.matrix_version == from_version)
        moved: list[tuple[str, str]] = []
        for row in session.scalars(query):
            if row.matrix_version == version:
                continue
            state = from_json(TicketState, row.state).with_(matrix_version=version)
            row.state = to_json(state)
            row.matrix_version = version
            moved.append((row.vendor, row.ticket_id))
    return moved


def open_tickets_by_version(db: Database) -> dict[str, int]:
    """How many open (not solved/closed/deleted) tickets are pinned to each matrix version."""
    from sqlalchemy import func

    with db.session() as session:
        rows = session.execute(
            select(TicketStateRow.matrix_version, func.count())
            .where(_open_ticket_filter())
            .group_by(TicketStateRow.matrix_version)
        ).all()
    return {str(version or "(none)"): int(count) for version, count in rows}
