"""The write-ahead intent: before a decision writes to the ticket, a `decisions` row with status
`applying` holds the decision and the state it leads to; between two vendor requests of one decision the
connector reports progress and the row records which parts (fields, reply, note; connectors.base.PART_*)
the vendor confirmed and which go out next (`decisions.parts`).

Recovery (`recover`, by the next pass of a ticket with an `applying` row) re-fetches the ticket and checks
each part on its own (`part_outcomes`): the fields on the ticket, the reply and the note among the
integration user's own comments newer than the decision's snapshot (`Connector.own_comments`). Nothing
confirmed and no structured effect visible -> the first request never landed -> `abandoned` and decided
afresh. Otherwise the stored state is committed as `recovered`, after sending what is missing:
- the internal note whenever it is not on the ticket: at least once, a duplicated note is acceptable, a
  lost warning is not;
- the customer reply only when its request had certainly not started (the recorded progress shows a
  later request without it): at most once, never twice.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from connectors.base import PART_FIELDS, PART_NOTE, PART_REPLY, ApplyResult, Connector, ConnectorError
from integration.model import Decision, Ticket, TicketState
from integration.pipeline.commit import decision_row, finalize
from integration.pipeline.deps import AlreadyFired, PassContext, PassDeps, RoundEnd, RoundOutcome
from integration.store.codec import from_json
from integration.store.db import DecisionRow
from matrix_config.loader import LoadedMatrix

log = logging.getLogger(__name__)


def write_intent(deps: PassDeps, decision: Decision, state_after: TicketState, matrix: LoadedMatrix,
                  trigger: str, ticket: Ticket) -> int:
    with deps.db.session() as session:
        row = decision_row(decision, matrix, trigger, ticket, "applying", state_after, dry_run=False)
        # Comments the integration posts for this decision are newer than the snapshot it was made from.
        row.parts = {"since": ticket.updated_at.isoformat() if ticket.updated_at else None, "written": []}
        session.add(row)
        session.flush()
        return row.id


def progress_recorder(deps: PassDeps, intent_id: int):
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


def close_intent(deps: PassDeps, intent_id: int, status: str, error: str | None,
                  parts: dict[str, str] | None = None) -> None:
    with deps.db.session() as session:
        row = session.get(DecisionRow, intent_id)
        row.status, row.error, row.finished_at = status, error, deps.now()
        if parts is not None:
            row.parts = {**(row.parts or {}), "outcome": dict(parts)}


def certainly_not_sent(error: BaseException) -> bool:
    """The connector says the failed apply wrote nothing (`ConnectorError.sent is False`). Unknown
    (None, the default) is never read as "not sent": a timeout may follow a stored write."""
    return isinstance(error, ConnectorError) and error.sent is False


def visible_checks(decision: Decision) -> int:
    return (bool(decision.priority) + bool(decision.owner_group) + len(decision.add_tags)
            + len(decision.remove_tags) + len(decision.field_updates or {}))


def decision_visible(ticket: Ticket, decision: Decision) -> bool | None:
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
    return bool(decision.internal_note) and not decision.public_reply and visible_checks(decision) == 0


def decision_parts(decision: Decision) -> list[str]:
    """The parts (connectors.base.PART_*) a decision writes, each delivered and recovered on its own."""
    parts = [PART_FIELDS] if visible_checks(decision) else []
    if decision.public_reply:
        parts.append(PART_REPLY)
    if decision.internal_note:
        parts.append(PART_NOTE)
    return parts


def describe_parts(parts: dict[str, str]) -> str:
    return ", ".join(f"{part} {outcome}" for part, outcome in parts.items()) or "nothing to write"


def _stored_progress(deps: PassDeps, intent_id: int) -> dict[str, Any]:
    with deps.db.session() as session:
        row = session.get(DecisionRow, intent_id)
        return dict(row.parts or {}) if row is not None else {}


def part_outcomes(deps: PassDeps, connector: Connector, intent_id: int, decision: Decision, ticket: Ticket, *,
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
    if visible_checks(decision):
        outcome[PART_FIELDS] = ("written" if PART_FIELDS in written
                                else "visible" if decision_visible(ticket, decision) else "unconfirmed")
    since = datetime.fromisoformat(progress["since"]) if progress.get("since") else None
    comments, listed = None, False
    missing: dict[str, str] = {}
    for part, text, public in ((PART_REPLY, decision.public_reply, True), (PART_NOTE, decision.internal_note, False)):
        if not text:
            continue
        if part in written:
            outcome[part] = "written"
            continue
        if not listed:
            comments, listed = connector.own_comments(ticket.id, since), True
        if comments is None:  # a connector that cannot list its comments
            if part == PART_NOTE and _internal_only(decision):
                missing[part] = text  # nothing else to look at: at least once
            else:
                outcome[part] = "assumed"
            continue
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
    result = connector.apply(ticket, comments_only, progress=progress_recorder(deps, intent_id))
    outcome.update({part: "resent" for part in missing})
    return outcome, result


def recover(deps: PassDeps, connector: Connector, intent: DecisionRow, ticket: Ticket,
             state: TicketState | None, matrix: LoadedMatrix, dry_run: bool) -> TicketState | None:
    """An intent a killed worker left `applying`: each part of it (fields, reply, note) is checked on the
    re-read ticket on its own, see `part_outcomes`. Nothing of it there and nothing confirmed -> the
    crash came before the first request reached the vendor: `abandoned`, decided afresh. Otherwise the
    missing parts that may be sent are sent and the intent completes as `recovered` with the outcome of
    each part. An error while looking or sending leaves the intent `applying` for the next pass."""
    decision = from_json(Decision, intent.decision)
    visible = decision_visible(ticket, decision)
    now = deps.now()
    if visible is False and not (intent.parts or {}).get("written"):
        close_intent(deps, intent.id, "abandoned", "crashed before the write reached the vendor")
        log.warning("ticket %s:%s: unfinished decision %d was not applied; deciding afresh",
                    ticket.vendor, ticket.id, intent.id)
        return state
    parts, result = part_outcomes(deps, connector, intent.id, decision, ticket, send_missing=not dry_run)
    log.warning("ticket %s:%s: unfinished decision %d recovered part by part: %s",
                ticket.vendor, ticket.id, intent.id, describe_parts(parts))
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
        finalize(deps, ctx, RoundOutcome(decision, state, state_after), ticket, now, RoundEnd(
            "recovered", intent_id=intent.id, api_result=api_result, plan=timer_id is None,
            resent=api_result is not None, parts=parts))
    except AlreadyFired:
        close_intent(deps, intent.id, "recovered", None, parts=parts)
    return state_after
