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

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from integration.engine import compile_matrix, is_empty_value
from integration.model import Decision, Person, Ticket, TicketState
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


# ------------------------------------------------------------------------------------ roles filled
ROLE_MILESTONE_PREFIX = "role:"


def role_milestone(role: str) -> str:
    """The milestone row's clock name recording when `role` was filled at a level entry
    (`milestones.clock` holds 32 characters)."""
    return f"{ROLE_MILESTONE_PREFIX}{role}"[:32]


# ------------------------------------------------------------------------------------ one customer voice
def _names(person: Person) -> set[str]:
    return {str(v).strip().casefold() for v in (person.id, person.name, person.email) if v}


def _value_names(value: Any) -> set[str]:
    if isinstance(value, Person):
        return _names(value)
    if isinstance(value, dict):
        return {str(v).strip().casefold() for k, v in value.items() if k in ("id", "name", "email", "accountId") and v}
    return {str(value).strip().casefold()} if not is_empty_value(value) else set()


def one_voice_note(matrix: Matrix, ticket: Ticket, state: TicketState | None) -> str | None:
    """The internal note for the incident commander when, at a level naming the customer-contact role, a public
    reply since the last pass came from an agent who is not the named contact; None otherwise. The service
    cannot block the reply: it tells the commander, once per reply (the next pass has recorded the reply's
    time in `state.last_public_update_at`)."""
    if state is None or not state.level or state.entered_level_at is None:
        return None
    try:
        level = matrix.level(state.level)
    except KeyError:
        return None
    settings = matrix.incident
    contact_role = settings.contact_role if settings else "customer_contact"
    commander_role = settings.commander_role if settings else "incident_commander"
    reply_at, author = ticket.last_public_agent_reply_at, ticket.last_public_agent_reply_by
    if contact_role not in level.roles or reply_at is None or author is None:
        return None
    seen = max(t for t in (state.entered_level_at, state.last_public_update_at) if t)
    if reply_at <= seen:
        return None
    contact = ticket.attribute(contact_role)
    if is_empty_value(contact) or _names(author) & _value_names(contact):
        return None
    compiled = compile_matrix(matrix)
    commander = ticket.attribute(commander_role)
    addressed = (f"{compiled.label(commander_role)} {_display(commander)}" if not is_empty_value(commander)
                 else f"{compiled.label(commander_role)} (not assigned yet)")
    return (f"One customer voice at {level.id}: the public reply of {show_time(reply_at, level_timezone(matrix, level))} "
            f"came from {author.name or author.email or author.id}, not from the {compiled.label(contact_role)} "
            f"({_display(contact)}). For {addressed}: please route customer updates through "
            f"{_display(contact)}.")


def _display(value: Any) -> str:
    if isinstance(value, Person):
        return value.name or value.email or value.id or "?"
    if isinstance(value, dict):
        return str(value.get("displayName") or value.get("name") or value.get("emailAddress") or value.get("id"))
    return str(value)


def with_one_voice(decision: Decision, matrix: Matrix, ticket: Ticket, state: TicketState | None) -> Decision:
    """`decision` plus the one-voice note, unless the pass moves the ticket to another level (the reply then
    belongs to the old level's stay)."""
    if decision.to_level:
        return decision
    note = one_voice_note(matrix, ticket, state)
    if note is None:
        return decision
    return replace(decision, internal_note="\n\n".join(n for n in (decision.internal_note, note) if n),
                   reason="; ".join(r for r in (decision.reason, ONE_VOICE_REASON) if r))


# The decision's reason when it carries the note: how the history (and the metrics) count such replies.
ONE_VOICE_REASON = "one customer voice: public reply by a non-contact agent"


def signed_by_contact(decision: Decision, matrix: Matrix, ticket: Ticket, state: TicketState | None) -> Decision:
    """At a level naming the customer-contact role, the service's customer messages (entry replies, status
    digests) end with the named contact's name, so the customer hears one voice. The message is still sent as
    the API user, on both vendors, not as the contact (Zendesk `comment.author_id` would allow it): the
    pipeline recognises its own comments by their author when it recovers a write a crash interrupted, and a
    reply authored by the contact would be sent again."""
    if not decision.public_reply:
        return decision
    level_id = decision.to_level or (state.level if state else None)
    try:
        level = matrix.level(level_id) if level_id else None
    except KeyError:
        return decision
    contact_role = matrix.incident.contact_role if matrix.incident else "customer_contact"
    if level is None or contact_role not in level.roles:
        return decision
    contact = ticket.attribute(contact_role)
    if is_empty_value(contact):
        return decision
    signature = f"— {_display(contact)}, your contact for this incident"
    if decision.public_reply.rstrip().endswith(signature):
        return decision
    return replace(decision, public_reply=f"{decision.public_reply.rstrip()}\n\n{signature}")
