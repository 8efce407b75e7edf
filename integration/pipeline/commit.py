"""The final commit of a round: one transaction writes the decision row (the intent closed, or a new row
when there was no intent), the ticket state, milestones, CSAT, timers, the alerts outbox rows and the
claimed events, so that each of them exists if and only if the decision committed."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from integration import alerts, snapshots, telemetry
from integration.engine import is_empty_value
from integration.incident import role_milestone
from integration.model import Decision, Ticket, TicketState
from integration.pipeline.claims import mark_events
from integration.pipeline.seen import seen_after
from integration.pipeline.deps import RESOLVED, AlreadyFired, PassContext, PassDeps, RoundEnd, RoundOutcome, direction
from integration.store import timers as timer_host
from integration.store.codec import milestones_to_json, to_json
from integration.store.db import CsatRow, DecisionRow, MilestoneRow, TicketStateRow
from matrix_config.loader import LoadedMatrix


def decision_row(decision: Decision, matrix: LoadedMatrix, trigger: str, ticket: Ticket, status: str,
                 state_after: TicketState | None, dry_run: bool) -> DecisionRow:
    issue_type = ticket.fields.get("issue_type") if ticket.fields else None
    return DecisionRow(
        vendor=decision.vendor or ticket.vendor,
        ticket_id=decision.ticket_id or ticket.id,
        decided_at=decision.decided_at,
        trigger=trigger[:80],
        from_level=decision.from_level,
        to_level=decision.to_level,
        direction=direction(matrix, decision.from_level, decision.to_level),
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


def finalize(deps: PassDeps, ctx: PassContext, outcome: RoundOutcome, ticket: Ticket, now: datetime,
             end: RoundEnd) -> int | None:
    """The one commit that ends a round: the decision row (the intent closed with `end.status`, or a new
    row when there was no intent), the ticket state, milestones, CSAT, timers, alerts and the claimed
    events. Returns the decision row's id (None: nothing decided worth a row)."""
    if end.status in ("noop", "dry_run", "applied"):
        # `ticket` is the version this round decided on (a recovered round completes an older decision).
        written = end.api_result.updated_at if end.api_result is not None else None
        outcome = replace(outcome, state_after=seen_after(outcome.state_after, ticket, written))
    with deps.db.session() as session:
        if ctx.timer_id is not None and not timer_host.mark_fired(session, ctx.timer_id, now):
            raise AlreadyFired(ctx.timer_id)
        decision_id = end.intent_id
        if end.intent_id is not None:
            _close_intent_row(session.get(DecisionRow, end.intent_id), end, now)
        elif outcome.decision is not None and not outcome.decision.is_empty:
            row = decision_row(outcome.decision, ctx.matrix, ctx.trigger, ticket, end.status, outcome.state_after,
                               ctx.dry_run)
            row.finished_at = now
            session.add(row)
            session.flush()
            decision_id = row.id
        state_row, before = _store_state(session, ctx.matrix, outcome, ticket, now, dry_run=ctx.dry_run)
        _record_milestones(session, before, outcome.state_after, state_row, dry_run=ctx.dry_run)
        _record_role_fills(session, ctx.matrix, ticket, outcome.state_after, state_row, now, dry_run=ctx.dry_run)
        _replan_timers(deps, session, ctx.matrix, outcome, before, ticket, now, plan=end.plan)
        # Alerts outside the ticket (notify:): outbox rows in this same commit, sent later by the worker.
        alerts.record_for_finalize(session, ctx.matrix, ticket, outcome, timer_id=ctx.timer_id,
                                   decision_id=decision_id, dry_run=ctx.dry_run, now=now)
        # The ticket this round decided on, for `escalation replay` (integration.snapshots).
        snapshots.record(session, ticket, taken_at=now, trigger=ctx.trigger, matrix_version=ctx.matrix.version,
                         decision_id=decision_id, dry_run=ctx.dry_run)
        if ctx.event_ids and ctx.owner:
            mark_events(session, ctx.owner, list(ctx.event_ids), "done", now, decision_id=decision_id)
    telemetry.decision_committed(outcome.decision, ctx.dry_run)
    return decision_id


def _close_intent_row(row: DecisionRow, end: RoundEnd, now: datetime) -> None:
    row.status = end.status
    row.finished_at = now
    if end.api_result is not None:
        row.writes = end.api_result.writes
        row.api_result = {"writes": end.api_result.writes, "requests": list(end.api_result.requests)[:50],
                          "dry_run": end.api_result.dry_run}
        if end.resent:
            row.api_result["resent_after_crash"] = True
    if end.note is not None:
        row.error = end.note[:500]
    if end.parts is not None:
        row.parts = {**(row.parts or {}), "outcome": dict(end.parts)}


def _store_state(session: Session, matrix: LoadedMatrix, outcome: RoundOutcome, ticket: Ticket,
                 now: datetime, *, dry_run: bool) -> tuple[TicketStateRow, TicketState]:
    """The ticket's state row: the whole state as JSON plus the columns queries and admins read, a CSAT row
    for a new rating. Returns the row and the state the round started from."""
    vendor, ticket_id = ticket.vendor, ticket.id
    decision, state_after = outcome.decision, outcome.state_after
    state_row = session.get(TicketStateRow, (vendor, ticket_id))
    previous_satisfaction = state_row.satisfaction if state_row is not None else None
    was_escalated = bool(state_row.escalated) if state_row is not None else False
    if state_row is None:
        state_row = TicketStateRow(vendor=vendor, ticket_id=ticket_id, first_seen_at=now, state={})
        session.add(state_row)
    before = outcome.state_before or TicketState(vendor=vendor, ticket_id=ticket_id)
    moved = direction(matrix, decision.from_level, decision.to_level) if decision is not None else None
    # Placed straight above the entry level (a rule's L3) is an escalation too (issue 13), not only a move up.
    escalated = was_escalated or moved == "up" or (
        moved == "placed" and decision.to_level != matrix.matrix.levels[0].id
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
    state_row.requester = _requester_key(ticket)
    state_row.status = ticket.status
    state_row.priority = ticket.priority
    state_row.created_at = ticket.created_at
    state_row.escalated = escalated
    state_row.updated_at = now
    if ticket.satisfaction:
        state_row.satisfaction = str(ticket.satisfaction)[:16]
    if ticket.satisfaction and str(ticket.satisfaction) != (previous_satisfaction or ""):
        score = _normalize_csat(ticket.satisfaction)
        if score is not None:
            session.add(CsatRow(
                vendor=vendor, ticket_id=ticket_id, score_raw=str(ticket.satisfaction)[:16], score=score,
                rated_at=ticket.updated_at or now, level=state_after.level, issue_type=state_row.issue_type,
                escalated=was_escalated, organization=ticket.organization, requester=state_row.requester,
                dry_run=dry_run,
            ))
    return state_row, before


def _requester_key(ticket: Ticket) -> str | None:
    """Whose ticket it is when it has no organization (CSAT around an incident): the vendor's requester id
    (Zendesk requester_id, Jira reporter accountId), else the e-mail."""
    value = ticket.requester.id or ticket.requester.email
    return str(value)[:200] if value else None


def _record_milestones(session: Session, before: TicketState, state_after: TicketState,
                       state_row: TicketStateRow, *, dry_run: bool) -> None:
    """Milestones met at the (new) current level entry: time to acknowledge / diagnose / ..."""
    vendor, ticket_id = state_row.vendor, state_row.ticket_id
    same_entry = (before.level, before.entered_level_at) == (state_after.level, state_after.entered_level_at)
    if not (state_after.level and state_after.entered_level_at):
        return
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
                dry_run=dry_run,
            ))


def _record_role_fills(session: Session, matrix: LoadedMatrix, ticket: Ticket, state_after: TicketState,
                       state_row: TicketStateRow, now: datetime, *, dry_run: bool) -> None:
    """When each role of the current level was first seen filled at this level entry: a milestone row
    `role:<name>` (once per entry, by the table's unique key), for the minutes-to-IC metric. The time is the
    vendor's: the field's change time when the connector knows it (Jira changelog, Zendesk audits when read),
    else the ticket's `updated_at`; never before the level entry (a role filled beforehand counts as 0)."""
    if not (state_after.level and state_after.entered_level_at):
        return
    try:
        level = matrix.matrix.level(state_after.level)
    except KeyError:
        return
    entered = state_after.entered_level_at
    for name in level.roles:
        if is_empty_value(ticket.attribute(name)):
            continue
        clock = role_milestone(name)
        exists = session.scalars(select(MilestoneRow.id).where(
            MilestoneRow.vendor == state_row.vendor, MilestoneRow.ticket_id == state_row.ticket_id,
            MilestoneRow.level == state_after.level, MilestoneRow.entered_level_at == entered,
            MilestoneRow.clock == clock)).first()
        if exists is not None:
            continue
        filled_at = max(ticket.field_changed_at.get(name) or ticket.updated_at or now, entered)
        session.add(MilestoneRow(
            vendor=state_row.vendor, ticket_id=state_row.ticket_id, level=state_after.level,
            issue_type=state_row.issue_type, clock=clock, entered_level_at=entered, met_at=filled_at,
            elapsed_seconds=(filled_at - entered).total_seconds(), dry_run=dry_run,
        ))


def _replan_timers(deps: PassDeps, session: Session, matrix: LoadedMatrix, outcome: RoundOutcome,
                   before: TicketState, ticket: Ticket, now: datetime, *, plan: bool) -> None:
    """Leaving a level or resolving cancels the old level's timers; the clock rules plan new ones."""
    vendor, ticket_id, state_after = ticket.vendor, ticket.id, outcome.state_after
    if before.level and before.level != state_after.level:
        timer_host.cancel(session, vendor, ticket_id, except_level=state_after.level or "")
    if ticket.status in RESOLVED:
        timer_host.cancel(session, vendor, ticket_id)
    if outcome.cancel_kinds:
        timer_host.cancel(session, vendor, ticket_id, kinds=outcome.cancel_kinds)
    specs = list(outcome.extra_timers or [])
    if plan and deps.clocks is not None and outcome.extra_timers is None:
        specs += deps.clocks.plan_timers(outcome.state_before, state_after, outcome.decision, ticket, matrix.matrix,
                                         now)
    for spec in specs:
        timer_host.schedule(session, spec)
