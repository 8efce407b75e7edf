"""The incident lifecycle at the levels with incident roles, vendor-neutral: what a status digest says.

`digest_context(matrix, ticket, state, clocks, now)` gives templates (see `matrix_config.schema.TEMPLATE_CONTEXT`)
where the incident stands, from what the service recorded and what the ticket shows now:
- `milestones`: every milestone of the level's SLA clocks, in order, met (with the vendor time it was met, from
  `TicketState.milestones`) or pending;
- `clocks`: each SLA clock of the level with its target, the time remaining (or overdue) and its state
  (`met`, `running`, `paused`, `breached`), as `integration.clocks.clock_report` computes them;
- `eta`: the value of the matrix's `incident.eta` attribute (the revised timeline agents keep on the ticket);
- `blockers`: the `incident.blockers` attributes that are filled, as {name, label, value};
- `last_public_update`: the latest public agent reply or service update the customer got.
Times are shown in the level's calendar time zone (UTC without a calendar), e.g. `2026-11-27 10:40 CET`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from integration.engine import compile_matrix, is_empty_value
from integration.model import Ticket, TicketState
from matrix_config.schema import Level, Matrix
from matrix_config.templates import MILESTONE_LABELS


def level_timezone(matrix: Matrix, level: Level | None) -> ZoneInfo | timezone:
    name = (level.calendar if level else None) or matrix.clocks.calendar
    calendar = matrix.calendars.get(name) if name else None
    return ZoneInfo(calendar.timezone) if calendar else timezone.utc


def show_time(moment: datetime | None, zone: ZoneInfo | timezone) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def last_public_update(ticket: Ticket, state: TicketState) -> datetime | None:
    times = [t for t in (ticket.last_public_agent_reply_at, state.last_public_update_at) if t]
    return max(times) if times else None


def digest_context(matrix: Matrix, ticket: Ticket, state: TicketState, clocks: Sequence[dict[str, Any]],
                   level: Level | None) -> dict[str, Any]:
    """The template names `milestones`, `clocks`, `eta`, `blockers`, `last_public_update` for `ticket` at
    `level`; `clocks` from `integration.clocks.clock_report`."""
    zone = level_timezone(matrix, level)
    compiled = compile_matrix(matrix)
    met = dict(state.milestones or {})
    names = [name for name, _ in level.sla.items()] if level is not None else []
    names += [name for name in met if name not in names]
    milestones = [{"name": name, "label": MILESTONE_LABELS.get(name, name), "met": name in met,
                   "at": show_time(met.get(name), zone)} for name in names]
    incident = matrix.incident
    eta = None
    if incident is not None and incident.eta is not None:
        value = ticket.attribute(incident.eta)
        eta = None if is_empty_value(value) else value
    blockers = []
    for name in (incident.blockers if incident is not None else []):
        value = ticket.attribute(name)
        if not is_empty_value(value):
            blockers.append({"name": name, "label": compiled.label(name), "value": value})
    return {"milestones": milestones, "clocks": list(clocks), "eta": eta, "blockers": blockers,
            "last_public_update": show_time(last_public_update(ticket, state), zone)}
