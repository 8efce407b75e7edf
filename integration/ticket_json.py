"""The neutral ticket JSON format (documented in docs/ticket-format.md) used by `escalation explain`,
`escalation simulate`, test fixtures and anyone feeding tickets from a helpdesk we have no connector for.

One ticket is a JSON object; only `id` is required. An optional `state` object carries what the service
remembers about the ticket (its level, milestones, ...); without it the ticket is new to the service.
Unknown keys are errors that name the key (with a suggestion for typos), so a misspelled attribute never
silently changes a simulation. Date-times are ISO 8601; one without a UTC offset is taken as UTC.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from integration.model import Person, Ticket, TicketState
from matrix_config.schema import CLOCKS, PRIORITIES, STATUSES


class TicketFormatError(ValueError):
    """A ticket JSON document is invalid. The message is one line: `SOURCE: key.path: problem`."""

    def __init__(self, source: str, path: str, message: str):
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.path = path
        self.message = message


# ----------------------------------------------------------------------------------- converters
class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, message: str) -> TicketFormatError:
        return TicketFormatError(self.source, path, message)

    def object(self, value: Any, path: str, known: Iterable[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a JSON object, got {_kind(value)}")
        known = list(known)
        for key in value:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(known)})"
                raise self.fail(_join(path, str(key)), f"unknown key {key!r}{suggestion}")
        return value

    def string(self, value: Any, path: str, *, allow_number: bool = False) -> str | None:
        if value is None:
            return None
        if allow_number and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str | None:
        text = self.string(value, path)
        if text is not None and text not in choices:
            raise self.fail(path, f"{text!r} is not one of {', '.join(choices)}")
        return text

    def boolean(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def datetime(self, value: Any, path: str) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"expected an ISO 8601 date-time string, got {_kind(value)}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(path, f"{value!r} is not an ISO 8601 date-time (e.g. 2026-11-27T09:30:00Z)") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)

    def strings(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of strings, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            text = self.choice(item, f"{path}[{i}]", choices) if choices else self.string(item, f"{path}[{i}]")
            if text is None:
                raise self.fail(f"{path}[{i}]", "expected a string, got null")
            out.append(text)
        return tuple(out)

    def field_value(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, (str, bool, int, float)):
                    raise self.fail(f"{path}[{i}]", f"list items must be strings, numbers or booleans, got {_kind(item)}")
            return tuple(value)
        raise self.fail(path, f"expected a string, number, boolean, list or null, got {_kind(value)}")

    def person(self, value: Any, path: str) -> Person | None:
        if value is None:
            return None
        data = self.object(value, path, ("id", "name", "email"))
        return Person(
            id=self.string(data.get("id"), _join(path, "id"), allow_number=True),
            name=self.string(data.get("name"), _join(path, "name")),
            email=self.string(data.get("email"), _join(path, "email")),
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


TICKET_KEYS = (
    "vendor", "id", "subject", "status", "priority", "tags", "organization", "group", "channel",
    "requester", "assignee", "fields", "created_at", "updated_at", "level_set_at", "field_changed_at",
    "first_public_agent_reply_at",
    "last_public_agent_reply_at", "satisfaction", "version_token", "url", "state",
)
STATE_KEYS = (
    "level", "entered_level_at", "matrix_version", "rule_id", "bypassed", "pending_level", "pending_cause",
    "data_requested", "milestones", "pending_breaches", "last_public_update_at", "manual_rule_level",
    "rejected_level", "clock_state",
)


# ------------------------------------------------------------------------------------- reading
def ticket_from_json(data: Any, *, source: str = "ticket") -> Ticket:
    """A `Ticket` from one neutral JSON object. Raises TicketFormatError naming the bad key."""
    return _ticket(_Reader(source), data)


def ticket_and_state_from_json(data: Any, *, source: str = "ticket") -> tuple[Ticket, TicketState | None]:
    reader = _Reader(source)
    ticket = _ticket(reader, data)
    return ticket, _state(reader, data.get("state"), ticket)


def _ticket(r: _Reader, data: Any) -> Ticket:
    data = r.object(data, "", TICKET_KEYS)
    if data.get("id") is None:
        raise r.fail("id", "missing: every ticket needs an `id`")
    fields_raw = data.get("fields") or {}
    fields_obj = r.object(fields_raw, "fields", list(fields_raw) if isinstance(fields_raw, Mapping) else [])
    fields = {str(k): r.field_value(v, f"fields.{k}") for k, v in fields_obj.items()}
    changed_raw = data.get("field_changed_at")
    changed_raw = {} if changed_raw is None else changed_raw
    changed_obj = r.object(changed_raw, "field_changed_at",
                           list(changed_raw) if isinstance(changed_raw, Mapping) else [])
    changed = {str(k): r.datetime(v, f"field_changed_at.{k}") for k, v in changed_obj.items()}
    ticket_id = r.string(data["id"], "id", allow_number=True)
    if not ticket_id:
        raise r.fail("id", "must not be empty")
    return Ticket(
        vendor=r.string(data.get("vendor"), "vendor") or "neutral",
        id=ticket_id,
        subject=r.string(data.get("subject"), "subject") or "",
        status=r.choice(data.get("status"), "status", STATUSES) or "open",
        priority=r.choice(data.get("priority"), "priority", PRIORITIES),
        tags=frozenset(r.strings(data.get("tags"), "tags")),
        organization=r.string(data.get("organization"), "organization"),
        group=r.string(data.get("group"), "group"),
        channel=r.string(data.get("channel"), "channel"),
        requester=r.person(data.get("requester"), "requester") or Person(),
        assignee=r.person(data.get("assignee"), "assignee"),
        fields=fields,
        created_at=r.datetime(data.get("created_at"), "created_at"),
        updated_at=r.datetime(data.get("updated_at"), "updated_at"),
        level_set_at=r.datetime(data.get("level_set_at"), "level_set_at"),
        field_changed_at={k: v for k, v in changed.items() if v is not None},
        first_public_agent_reply_at=r.datetime(data.get("first_public_agent_reply_at"), "first_public_agent_reply_at"),
        last_public_agent_reply_at=r.datetime(data.get("last_public_agent_reply_at"), "last_public_agent_reply_at"),
        satisfaction=r.string(data.get("satisfaction"), "satisfaction", allow_number=True),
        version_token=r.string(data.get("version_token"), "version_token", allow_number=True),
        url=r.string(data.get("url"), "url"),
    )


def _state(r: _Reader, data: Any, ticket: Ticket) -> TicketState | None:
    if data is None:
        return None
    data = r.object(data, "state", STATE_KEYS)
    milestones_raw = data.get("milestones") or {}
    milestones_obj = r.object(milestones_raw, "state.milestones", CLOCKS)
    clock_state = data.get("clock_state") or {}
    if not isinstance(clock_state, Mapping):
        raise r.fail("state.clock_state", f"expected a JSON object, got {_kind(clock_state)}")
    return TicketState(
        vendor=ticket.vendor,
        ticket_id=ticket.id,
        level=r.string(data.get("level"), "state.level"),
        entered_level_at=r.datetime(data.get("entered_level_at"), "state.entered_level_at"),
        matrix_version=r.string(data.get("matrix_version"), "state.matrix_version"),
        rule_id=r.string(data.get("rule_id"), "state.rule_id"),
        bypassed=r.boolean(data.get("bypassed"), "state.bypassed"),
        pending_level=r.string(data.get("pending_level"), "state.pending_level"),
        pending_cause=r.string(data.get("pending_cause"), "state.pending_cause"),
        data_requested=r.strings(data.get("data_requested"), "state.data_requested"),
        milestones={
            name: r.datetime(value, f"state.milestones.{name}") for name, value in milestones_obj.items()
            if value is not None
        },
        pending_breaches=r.strings(data.get("pending_breaches"), "state.pending_breaches", CLOCKS),
        last_public_update_at=r.datetime(data.get("last_public_update_at"), "state.last_public_update_at"),
        manual_rule_level=r.string(data.get("manual_rule_level"), "state.manual_rule_level"),
        rejected_level=r.string(data.get("rejected_level"), "state.rejected_level"),
        clock_state=dict(clock_state),
    )


@dataclass(frozen=True)
class TicketRecord:
    """One ticket read from a file, with where it came from (for messages and tables)."""

    ticket: Ticket
    state: TicketState | None
    source: str  # "file.json", "file.json[3]", "file.jsonl:7"


def load_ticket_file(path: str | Path) -> list[TicketRecord]:
    """Tickets from a JSON file (one object or an array of objects) or a JSONL file (one object per line;
    blank lines and lines starting with # are skipped). Raises TicketFormatError."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TicketFormatError(name, "", f"cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return list(_jsonl(name, text))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TicketFormatError(f"{name}:{exc.lineno}:{exc.colno}", "", f"invalid JSON: {exc.msg}") from None
    if isinstance(data, list):
        records = []
        for i, item in enumerate(data):
            source = f"{name}[{i}]"
            records.append(TicketRecord(*ticket_and_state_from_json(item, source=source), source=source))
        return records
    return [TicketRecord(*ticket_and_state_from_json(data, source=name), source=name)]


def _jsonl(name: str, text: str) -> Iterable[TicketRecord]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        source = f"{name}:{lineno}"
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise TicketFormatError(f"{source}:{exc.colno}", "", f"invalid JSON: {exc.msg}") from None
        yield TicketRecord(*ticket_and_state_from_json(data, source=source), source=source)


def load_ticket_files(paths: Iterable[str | Path]) -> list[TicketRecord]:
    records: list[TicketRecord] = []
    for path in paths:
        records.extend(load_ticket_file(path))
    return records


# ------------------------------------------------------------------------------------- writing
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list, set, frozenset)):
        items = list(value)
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _person(person: Person | None) -> dict[str, Any] | None:
    if person is None:
        return None
    return {k: v for k, v in (("id", person.id), ("name", person.name), ("email", person.email)) if v is not None}


def ticket_to_json(ticket: Ticket, state: TicketState | None = None) -> dict[str, Any]:
    """The neutral JSON object for `ticket` (and its state); `ticket_from_json` reads it back unchanged.
    Unset optional keys are left out."""
    out: dict[str, Any] = {
        "vendor": ticket.vendor,
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "tags": sorted(ticket.tags),
        "organization": ticket.organization,
        "group": ticket.group,
        "channel": ticket.channel,
        "requester": _person(ticket.requester) or None,
        "assignee": _person(ticket.assignee),
        "fields": {k: _plain(v) for k, v in ticket.fields.items()},
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "level_set_at": _iso(ticket.level_set_at),
        "field_changed_at": {k: _iso(v) for k, v in ticket.field_changed_at.items()},
        "first_public_agent_reply_at": _iso(ticket.first_public_agent_reply_at),
        "last_public_agent_reply_at": _iso(ticket.last_public_agent_reply_at),
        "satisfaction": ticket.satisfaction,
        "version_token": ticket.version_token,
        "url": ticket.url,
    }
    out = {k: v for k, v in out.items() if v not in (None, [], {})}
    if state is not None:
        out["state"] = state_to_json(state)
    return out


def state_to_json(state: TicketState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "level": state.level,
        "entered_level_at": _iso(state.entered_level_at),
        "matrix_version": state.matrix_version,
        "rule_id": state.rule_id,
        "bypassed": state.bypassed or None,
        "pending_level": state.pending_level,
        "pending_cause": state.pending_cause,
        "data_requested": list(state.data_requested),
        "milestones": {k: v.isoformat() for k, v in state.milestones.items()},
        "pending_breaches": list(state.pending_breaches),
        "last_public_update_at": _iso(state.last_public_update_at),
        "manual_rule_level": state.manual_rule_level,
        "rejected_level": state.rejected_level,
        "clock_state": dict(getattr(state, "clock_state", {}) or {}),
    }
    return {k: v for k, v in out.items() if v not in (None, [], {})}


