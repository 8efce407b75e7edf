"""The state to store after a decision was carried out, and the ticket as a connector leaves it."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from integration.engine.compile import MANUAL
from integration.model import Decision, Ticket, TicketState


def next_state(state: TicketState | None, ticket: Ticket, decision: Decision) -> TicketState:
    """The state to store after `decision` was carried out on `ticket`."""
    base = state if state is not None else TicketState(vendor=ticket.vendor, ticket_id=ticket.id)
    changes: dict[str, Any] = {"matrix_version": decision.matrix_version, "pending_breaches": ()}
    if decision.to_level:
        changes.update(
            level=decision.to_level,
            entered_level_at=decision.entered_at or decision.decided_at,
            rule_id=decision.rule_id or base.rule_id,
            milestones=dict(decision.milestones),
        )
        if decision.rule_id == MANUAL and not decision.held_level and base.level is not None:
            changes["manual_rule_level"] = decision.rule_level
    else:
        milestones = {**base.milestones, **decision.milestones}
        for clock in decision.start_clocks:  # a clock started again (reopened) is no longer met
            if clock.clock not in decision.milestones:
                milestones.pop(clock.clock, None)
        changes["milestones"] = milestones
    if decision.held_level:
        same = base.pending_level == decision.held_level
        requested = set(base.data_requested) if same else set()
        requested.update(decision.missing_data)
        changes.update(
            pending_level=decision.held_level,
            pending_cause=decision.rule_id,
            data_requested=tuple(sorted(requested)),
        )
    else:
        changes.update(pending_level=None, pending_cause=None, data_requested=())
    if decision.bypassed is not None:
        changes["bypassed"] = decision.bypassed
    if decision.rejected_level:
        changes["rejected_level"] = decision.rejected_level
    updates = [t for t in (base.last_public_update_at, ticket.last_public_agent_reply_at) if t is not None]
    if decision.public_reply:
        updates.append(decision.decided_at)
    if updates:
        changes["last_public_update_at"] = max(updates)
    return replace(base, **changes)


# ------------------------------------------------------------------------------ applying, explaining
def apply_to_ticket(ticket: Ticket, decision: Decision) -> Ticket:
    """The ticket as a connector leaves it after carrying out `decision` (for simulation and tests).
    The service's own replies are not agent replies, so reply timestamps do not change."""
    changes: dict[str, Any] = {}
    if decision.priority:
        changes["priority"] = decision.priority
    if decision.owner_group:
        changes["group"] = decision.owner_group
    if decision.add_tags or decision.remove_tags:
        changes["tags"] = (ticket.tags - set(decision.remove_tags)) | set(decision.add_tags)
    if decision.field_updates:
        changes["fields"] = {**ticket.fields, **decision.field_updates}
    return replace(ticket, **changes) if changes else ticket

