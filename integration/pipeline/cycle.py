"""The processing cycle: one ticket, all of its pending events at once, or one due timer.

    process_ticket(vendor, ticket_id, deps=deps)   # events -> fetch once, decide once, write once
                                                   # (no fetch for events reporting nothing newer: seen.py)
    fire_timer(timer_id, deps=deps)                # a due timer -> integration.clocks.on_timer

Each fetches the ticket, loads its state and the matrix version that decides it (its pin), recovers an
unfinished intent (`intent.recover`), decides, writes the intent, applies (a Conflict re-fetches and
decides again, at most MAX_CONFLICT_ROUNDS times) and ends in the one final commit (`commit.finalize`).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from sqlalchemy import select

from connectors.base import Conflict, Connector, Transient
from integration.engine import BREACH_PREFIX, DEFAULT_PLACEMENT, MANUAL
from integration import incident, incident_report, telemetry
from integration.model import Decision, Ticket, TicketState, TimerSpec
from integration.pipeline import claims
from integration.pipeline.claims import Claimed, Heartbeat, mark_events
from integration.pipeline.commit import finalize
from integration.pipeline.deps import (
    MAX_CONFLICT_ROUNDS,
    MAX_ROUNDS_PER_TASK,
    PERMANENT_ERRORS,
    RESOLVED,
    AlreadyFired,
    DecideFn,
    PassContext,
    PassDeps,
    PassResult,
    RoundEnd,
    RoundOutcome,
    short_error,
)
from integration.pipeline.seen import already_seen, stored_watermark
from integration.pipeline.failures import backoff_seconds, handle_failure
from integration.pipeline.intent import (
    certainly_not_sent,
    close_intent,
    decision_parts,
    decision_visible,
    describe_parts,
    part_outcomes,
    progress_recorder,
    recover,
    visible_checks,
    write_intent,
)
from integration.store import timers as timer_host
from integration.store.codec import from_json
from integration.store.db import DecisionRow, TicketStateRow, TimerRow
from integration.store.events import due_pending_exists, due_pending_senders_and_bodies
from integration.store.leases import acquire_lease, release_lease
from integration.store.matrix_versions import load_version
from matrix_config.loader import LoadedMatrix

log = logging.getLogger(__name__)


def process_tickets(vendor: str, ticket_ids: Sequence[str], *, deps: PassDeps,
                    starting: Callable[[str], None] | None = None) -> dict[str, PassResult]:
    """`process_ticket` for several tickets of one vendor (a worker that took several tasks at once): the
    tickets with due events are read together first (`Connector.fetch_tickets`: Zendesk show_many, Jira
    JQL by keys), and each pass decides on that snapshot instead of reading its ticket alone, when the
    snapshot shows every change its events report (see `_usable_snapshot`). `starting(ticket_id)` is
    called just before each ticket's pass (what an interrupted worker has to give back)."""
    ids = list(dict.fromkeys(str(t) for t in ticket_ids))
    bulk: dict[str, Ticket] = {}
    connector: Connector | None = None
    try:
        if len(ids) > 1:
            connector = deps.connector_for(vendor)
            wanted = [t for t in ids if _bulk_read_helps(deps, connector, vendor, t)]  # False: nothing due
            if len(wanted) > 1:
                bulk = connector.fetch_tickets(wanted)
    except Exception:  # noqa: BLE001 - each pass then reads its own ticket, with the usual error handling
        log.warning("bulk read of %d %s tickets failed; reading them one by one", len(ids), vendor, exc_info=True)
        bulk = {}
    results: dict[str, PassResult] = {}
    for t in ids:
        if starting is not None:
            starting(t)
        results[t] = process_ticket(vendor, t, deps=deps,
                                    prefetched=(connector, bulk[t]) if t in bulk and connector is not None else None)
    return results


@telemetry.timed_pass("events")
def process_ticket(vendor: str, ticket_id: str, *, deps: PassDeps,
                   prefetched: tuple[Connector, Ticket] | None = None) -> PassResult:
    """Handle every pending event of one ticket in one pass. Safe to call any number of times.
    `prefetched`: the ticket as read in bulk by `connector` just before (process_tickets)."""
    owner = uuid.uuid4().hex
    lease_name = f"ticket:{vendor}:{ticket_id}"
    if not acquire_lease(deps.db, lease_name, owner, deps.lease_seconds, deps.now()):
        return PassResult("busy")
    try:
        with Heartbeat(deps, lease_name, owner):
            result = PassResult("nothing")
            for _ in range(MAX_ROUNDS_PER_TASK):
                claimed = claims.claim(deps, vendor, ticket_id, owner)
                if not claimed:
                    break
                result = _handle_claimed(deps, vendor, ticket_id, owner, claimed, prefetched)
                prefetched = None  # later rounds take events that came after the bulk read
                if result.status in ("retry", "dead"):
                    break
    finally:
        release_lease(deps.db, lease_name, owner)
    _enqueue_if_more_arrived(deps, vendor, ticket_id)
    return result


def _enqueue_if_more_arrived(deps: PassDeps, vendor: str, ticket_id: str) -> None:
    """The webhook edge enqueues no task for an event that finds an earlier unclaimed one (coalescing
    at the source, integration.store.events). Such an event can commit just after this pass's last claim, or
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


def _handle_claimed(deps: PassDeps, vendor: str, ticket_id: str, owner: str, claimed: list[Claimed],
                    prefetched: tuple[Connector, Ticket] | None = None) -> PassResult:
    try:
        connector = deps.connector_for(vendor)
        own_id = connector.own_user_id()
    except Exception as exc:  # noqa: BLE001 - building a connector can fail like any vendor call
        return handle_failure(deps, vendor, ticket_id, owner, claimed, exc)
    echoes = [c.id for c in claimed if own_id and c.actor_id and str(c.actor_id) == str(own_id)]
    work = [c for c in claimed if c.id not in echoes]
    if echoes:
        with deps.db.session() as session:
            mark_events(session, owner, echoes, "done", deps.now(), error=None)
        log.info("ticket %s:%s: %d event(s) were our own writes; no pass", vendor, ticket_id, len(echoes))
    if not work:
        return PassResult("echo", events=echoes)
    work_ids = [c.id for c in work]
    stamps = [connector.webhook_ticket_stamp(c.payload) for c in work]
    if _nothing_newer(deps, vendor, ticket_id, stamps):
        with deps.db.session() as session:
            mark_events(session, owner, work_ids, "done", deps.now(), error=None)
        log.info("ticket %s:%s: %d event(s) report no version newer than the one decided on; no read",
                 vendor, ticket_id, len(work_ids))
        return PassResult("seen", events=echoes + work_ids)

    def decide_events(ticket: Ticket, state: TicketState | None, matrix: LoadedMatrix, now: datetime):
        decision = deps.decide(ticket, state, matrix.matrix, now, version=matrix.version)
        decision = incident.with_one_voice(decision, matrix.matrix, ticket, state)
        decision = incident_report.with_report(deps.db, decision, matrix.matrix, ticket, state, now,
                                               version=matrix.version, dry_run=deps.dry_run_for(vendor))
        decision = incident.signed_by_contact(decision, matrix.matrix, ticket, state)
        state_after = deps.next_state(state, ticket, decision)
        if deps.clocks is not None:
            state_after = deps.clocks.track(state_after, ticket, matrix.matrix, now)
        return decision, state_after, None, ()

    try:
        result = _run_cycle(deps, connector, vendor, ticket_id, trigger="events", decide_fn=decide_events,
                            event_ids=work_ids, owner=owner, snapshot=_usable_snapshot(prefetched, stamps))
    except Exception as exc:  # noqa: BLE001 - classified below: retry or dead letter
        return handle_failure(deps, vendor, ticket_id, owner, work, exc)
    result.events = echoes + work_ids
    return result


def _nothing_newer(deps: PassDeps, vendor: str, ticket_id: str, stamps: list[datetime | None]) -> bool:
    """Every claimed event reports a version of the ticket the service has decided on (integration.pipeline.seen)."""
    if not stamps or any(stamp is None for stamp in stamps):
        return False
    return already_seen(stamps, stored_watermark(deps.db, vendor, ticket_id))


def _bulk_read_helps(deps: PassDeps, connector: Connector, vendor: str, ticket_id: str) -> bool:
    """Whether the ticket's pass could decide on a bulk-read snapshot (`_usable_snapshot`): its due events,
    echoes of our own writes left out, all carry the ticket's stamp and report something newer than what
    was decided on. A comment or automation body without a stamp is read alone anyway, so a bulk slot for
    it would be a read more, not one less."""
    own_id = connector.own_user_id()
    rows = due_pending_senders_and_bodies(deps.db, vendor, ticket_id, deps.now())
    stamps = [connector.webhook_ticket_stamp(payload) for actor_id, payload in rows
              if not (own_id and actor_id and str(actor_id) == str(own_id))]
    return bool(stamps) and all(stamp is not None for stamp in stamps) and not _nothing_newer(
        deps, vendor, ticket_id, stamps)


def _usable_snapshot(prefetched: tuple[Connector, Ticket] | None,
                     stamps: list[datetime | None]) -> tuple[Connector, Ticket] | None:
    """A bulk-read ticket stands in for the pass's own read only when it shows every change the claimed
    events report (each event's stamp at or before its updated_at, the rule of integration.pipeline.seen);
    an event without a stamp (a hint) or a newer one means the pass reads the ticket itself."""
    if prefetched is None or not stamps:
        return None
    updated_at = prefetched[1].updated_at
    return prefetched if already_seen(stamps, updated_at) else None


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
               timer_id: int | None = None, snapshot: tuple[Connector, Ticket] | None = None) -> PassResult:
    pin = _stored_pin(deps, vendor, ticket_id) if deps.connector_for_version is not None else None
    if pin:
        connector = deps.connector_for_version(vendor, pin)
    # A bulk-read snapshot serves only when read through the mappings this pass uses (its pin's connector).
    ticket = snapshot[1] if snapshot is not None and snapshot[0] is connector else connector.fetch_ticket(ticket_id)
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
        state = recover(deps, connector, intent, ticket, state, matrix, dry_run)
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
            decision_id = finalize(deps, ctx, outcome, ticket, now, RoundEnd("dry_run" if writes else "noop"))
            return PassResult("done", decision_id=decision_id)
        intent_id = write_intent(deps, decision, state_after, matrix, trigger, ticket)
        try:
            result = connector.apply(ticket, decision, progress=progress_recorder(deps, intent_id))
        except (Conflict, *PERMANENT_ERRORS) as exc:
            fresh = None
            if not certainly_not_sent(exc) and visible_checks(decision):
                # A refusal does not prove that nothing was written: the retry layer may have re-sent a
                # request whose first attempt timed out after the vendor stored it (Zendesk then answers
                # the guarded retry with 409), or a later call of the same apply failed after the field
                # update went through (JSM: PUT fields ok, comment POST 404). Deciding again would send
                # the customer reply twice and read our own level field as a manual move, so look first.
                # An error while looking leaves the intent `applying`: the next pass's recovery looks.
                fresh = connector.fetch_ticket(ticket_id)
                if decision_visible(fresh, decision):
                    # Per part: a 409 on the guarded retry of the first Zendesk update means our own stored
                    # attempt moved the stamp, so the note update that never went out is sent now; after a
                    # permanent refusal (JSM comment 404) nothing more is sent, and the history says so.
                    parts, resent = part_outcomes(deps, connector, intent_id, decision, fresh,
                                                   send_missing=isinstance(exc, Conflict))
                    log.warning("ticket %s:%s: decision %d is visible on the ticket although the vendor call "
                                "failed (%s); completing it part by part (%s)", vendor, ticket_id,
                                intent_id, short_error(exc), describe_parts(parts))
                    decision_id = finalize(deps, ctx, outcome, fresh, now, RoundEnd(
                        "recovered", intent_id=intent_id, api_result=resent, resent=resent is not None, parts=parts,
                        note=f"written, then the vendor call failed: {short_error(exc)}"))
                    return PassResult("done", decision_id=decision_id)
            if not isinstance(exc, Conflict):
                close_intent(deps, intent_id, "failed", short_error(exc))
                raise
            close_intent(deps, intent_id, "conflict", short_error(exc))
            log.info("ticket %s:%s changed under us (%s); re-fetching", vendor, ticket_id, exc)
            ticket = fresh if fresh is not None else connector.fetch_ticket(ticket_id)
            continue
        except Exception as exc:
            if certainly_not_sent(exc):
                # The connector knows nothing reached the vendor (refused before sending, 429): a
                # comment-only intent left `applying` would be taken as sent by the recovery, and a
                # data request the customer never got would hold the ticket for good.
                close_intent(deps, intent_id, "abandoned", f"not sent: {short_error(exc)}")
            raise
        # Any other error leaves the intent `applying`: the write may or may not have reached the vendor,
        # and the next pass finds out from the ticket itself.
        written = {part: "written" for part in decision_parts(decision)}
        decision_id = finalize(deps, ctx, outcome, ticket, now,
                               RoundEnd("applied", intent_id=intent_id, api_result=result, parts=written))
        return PassResult("done", decision_id=decision_id, writes=result.writes)
    raise Transient(f"ticket {ticket_id} kept changing: {MAX_CONFLICT_ROUNDS} conflicts in a row")


def _with_field_changes(connector: Connector, ticket: Ticket) -> Ticket:
    changes = connector.field_changes(ticket)
    if not changes:
        return ticket
    return ticket.with_(field_changed_at=changes, level_set_at=ticket.level_set_at or changes.get("level"))


def _with_level_history(connector: Connector, ticket: Ticket, state: TicketState | None) -> Ticket:
    """The ticket with `level_set_at` (when its level field got its value), read from the vendor's history
    only when this pass needs it: someone other than the service set a level that differs from the stored
    one, so the hand-set level's clocks start at that change and not at this pass's `now`. One request on
    Zendesk (audits); none on Jira, whose issue GET already carries the changelog. A connector whose
    `field_changes` knows nothing ({}) leaves the engine to fall back to the ticket's `updated_at`."""
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
    cause = decision.rule_id or ""
    if cause in (MANUAL, DEFAULT_PLACEMENT) or cause.startswith(BREACH_PREFIX):
        return False
    return connector.reads_field_history


@telemetry.timed_pass("timer")
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
        with Heartbeat(deps, lease_name, owner):
            return _fire(deps, spec)
    finally:
        release_lease(deps.db, lease_name, owner)


def _fire(deps: PassDeps, spec: TimerSpec) -> str:
    clocks = deps.clocks

    def decide_timer(ticket: Ticket, state: TicketState | None, matrix: LoadedMatrix, now: datetime):
        current = state or TicketState(vendor=spec.vendor, ticket_id=spec.ticket_id)
        if clocks is None:
            return None, current, [], ()
        outcome = clocks.on_timer(spec, ticket, current, matrix.matrix, now)
        state_after = outcome.state if outcome.state is not None else current
        decision = outcome.decision
        if decision is not None:
            decision = incident.signed_by_contact(decision, matrix.matrix, ticket, current)
        return decision, state_after, list(outcome.schedule or []), tuple(outcome.cancel_kinds or ())

    try:
        connector = deps.connector_for(spec.vendor)
        _run_cycle(deps, connector, spec.vendor, spec.ticket_id, trigger=f"timer:{spec.timer_id}",
                   decide_fn=decide_timer, timer_id=spec.timer_id)
        telemetry.timer_fired(spec.kind, spec.clock, spec.level, spec.due_at, deps.now())
        return "fired"
    except AlreadyFired:
        return "skipped"
    except Exception as exc:  # noqa: BLE001 - retried with backoff, or given up on
        now = deps.now()
        with deps.db.session() as session:
            row = session.get(TimerRow, spec.timer_id)
            row.attempts += 1
            row.last_error = short_error(exc)
            attempts = row.attempts
            if isinstance(exc, PERMANENT_ERRORS) or attempts >= deps.max_attempts:
                row.status = "failed"
        if isinstance(exc, PERMANENT_ERRORS) or attempts >= deps.max_attempts:
            log.warning("timer %s failed for good: %s", spec.timer_id, short_error(exc))
            return "failed"
        if not isinstance(exc, (Transient, Conflict)):
            log.error("timer %s: unexpected error", spec.timer_id, exc_info=exc)
        delay = backoff_seconds(deps, attempts, exc)
        if deps.enqueue_timer is not None:
            deps.enqueue_timer(spec.timer_id, now + timedelta(seconds=delay))
        return "retry"
