"""The neutral ticket JSON format (documented in docs/ticket-format.md) used by `escalation explain`,
`escalation simulate`, test fixtures and anyone feeding tickets from a helpdesk we have no connector for.

One ticket is a JSON object; only `id` is required. An optional `state` object carries what the service
remembers about the ticket (its level, milestones, ...); without it the ticket is new to the service.
Unknown keys are errors that name the key (with a suggestion for typos), so a misspelled attribute never
silently changes a simulation. Date-times are ISO 8601; one without a UTC offset is taken as UTC.

The document's shape is the pydantic models below (`_TicketDocument`, `_StateDocument`: extra keys
forbidden); each value check raises the one-line message a support admin reads, and `_format_error`
turns pydantic's error into `SOURCE: key.path: problem`.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

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


# ------------------------------------------------------------------------------------ value checks
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


def _problem(message: str, at: str = "") -> PydanticCustomError:
    """A bad value: `message` for the admin; `at` continues the key path inside the value (`[2]`)."""
    return PydanticCustomError("ticket_format", "{message}", {"message": message, "at": at})


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _problem(f"expected a string, got {_kind(value)}")


def _text_or_number(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        text = _text(value)
        if text is not None and text not in choices:
            raise _problem(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return check


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _problem(f"expected true or false, got {_kind(value)}")
    return value


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _problem(f"expected an ISO 8601 date-time string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _problem(f"{value!r} is not an ISO 8601 date-time (e.g. 2026-11-27T09:30:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _texts(choices: tuple[str, ...] | None = None) -> Callable[[Any], tuple[str, ...]]:
    item = _one_of(choices) if choices else _text

    def check(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _problem(f"expected a list of strings, got {_kind(value)}")
        out = []
        for i, raw in enumerate(value):
            try:
                text = item(raw)
            except PydanticCustomError as exc:
                raise _problem(exc.context["message"], at=f"[{i}]") from None
            if text is None:
                raise _problem("expected a string, got null", at=f"[{i}]")
            out.append(text)
        return tuple(out)

    return check


def _field_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, (str, bool, int, float)):
                raise _problem(f"list items must be strings, numbers or booleans, got {_kind(item)}", at=f"[{i}]")
        return tuple(value)
    raise _problem(f"expected a string, number, boolean, list or null, got {_kind(value)}")


Text = Annotated[str | None, BeforeValidator(_text)]
TextOrNumber = Annotated[str | None, BeforeValidator(_text_or_number)]
Time = Annotated[datetime | None, BeforeValidator(_time)]
Texts = Annotated[tuple[str, ...], BeforeValidator(_texts())]
Flag = Annotated[bool, BeforeValidator(_flag)]
FieldValue = Annotated[Any, BeforeValidator(_field_value)]


def _objects_only(value: Any) -> Any:
    if value is not None and not isinstance(value, Mapping):
        raise _problem(f"expected a JSON object, got {_kind(value)}")
    return value


def _object_or_nothing(value: Any) -> Any:
    """An object; a false value (`""`, `0`, `[]`) counts as none given."""
    return _objects_only(value or None)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _PersonDocument(_Document):
    id: TextOrNumber = None
    name: Text = None
    email: Text = None


class _MilestonesDocument(_Document):
    acknowledge: Time = None
    diagnose: Time = None
    interim_fix: Time = None
    resolve: Time = None


assert tuple(_MilestonesDocument.model_fields) == CLOCKS


class _StateDocument(_Document):
    level: Text = None
    entered_level_at: Time = None
    matrix_version: Text = None
    rule_id: Text = None
    bypassed: Flag = False
    pending_level: Text = None
    pending_cause: Text = None
    data_requested: Texts = ()
    milestones: Annotated[_MilestonesDocument | None, BeforeValidator(_object_or_nothing)] = None
    pending_breaches: Annotated[tuple[str, ...], BeforeValidator(_texts(CLOCKS))] = ()
    last_public_update_at: Time = None
    manual_rule_level: Text = None
    rejected_level: Text = None
    clock_state: Annotated[dict[str, Any] | None, BeforeValidator(_object_or_nothing)] = None

    def to_state(self, ticket: Ticket) -> TicketState:
        milestones = self.milestones.model_dump(exclude_none=True) if self.milestones is not None else {}
        return TicketState(
            vendor=ticket.vendor, ticket_id=ticket.id, level=self.level, entered_level_at=self.entered_level_at,
            matrix_version=self.matrix_version, rule_id=self.rule_id, bypassed=self.bypassed,
            pending_level=self.pending_level, pending_cause=self.pending_cause, data_requested=self.data_requested,
            milestones=milestones, pending_breaches=self.pending_breaches,
            last_public_update_at=self.last_public_update_at, manual_rule_level=self.manual_rule_level,
            rejected_level=self.rejected_level, clock_state=dict(self.clock_state or {}),
        )


def _ticket_id(value: Any) -> str:
    if value is None:
        raise _problem("missing: every ticket needs an `id`")
    text = _text_or_number(value)
    if not text:
        raise _problem("must not be empty")
    return text


class _TicketDocument(_Document):
    vendor: Text = None
    id: Annotated[str, BeforeValidator(_ticket_id)]
    subject: Text = None
    status: Annotated[str | None, BeforeValidator(_one_of(STATUSES))] = None
    priority: Annotated[str | None, BeforeValidator(_one_of(PRIORITIES))] = None
    tags: Texts = ()
    organization: Text = None
    group: Text = None
    channel: Text = None
    requester: Annotated[_PersonDocument | None, BeforeValidator(_objects_only)] = None
    assignee: Annotated[_PersonDocument | None, BeforeValidator(_objects_only)] = None
    fields: Annotated[dict[str, FieldValue] | None, BeforeValidator(_object_or_nothing)] = None
    created_at: Time = None
    updated_at: Time = None
    level_set_at: Time = None
    field_changed_at: Annotated[dict[str, Time] | None, BeforeValidator(_objects_only)] = None
    first_public_agent_reply_at: Time = None
    last_public_agent_reply_at: Time = None
    satisfaction: TextOrNumber = None
    version_token: TextOrNumber = None
    url: Text = None
    state: Annotated[_StateDocument | None, BeforeValidator(_objects_only)] = None

    def to_ticket(self) -> Ticket:
        def person(document: _PersonDocument | None) -> Person | None:
            return Person(**document.model_dump()) if document is not None else None

        return Ticket(
            vendor=self.vendor or "neutral", id=self.id, subject=self.subject or "", status=self.status or "open",
            priority=self.priority, tags=frozenset(self.tags), organization=self.organization, group=self.group,
            channel=self.channel, requester=person(self.requester) or Person(), assignee=person(self.assignee),
            fields=dict(self.fields or {}), created_at=self.created_at, updated_at=self.updated_at,
            level_set_at=self.level_set_at,
            field_changed_at={k: v for k, v in (self.field_changed_at or {}).items() if v is not None},
            first_public_agent_reply_at=self.first_public_agent_reply_at,
            last_public_agent_reply_at=self.last_public_agent_reply_at, satisfaction=self.satisfaction,
            version_token=self.version_token, url=self.url,
        )


TICKET_KEYS = tuple(_TicketDocument.model_fields)
STATE_KEYS = tuple(_StateDocument.model_fields)


def _format_error(source: str, error: ValidationError) -> TicketFormatError:
    """The problem a reader meets first (see `_reading_order`), as `SOURCE: key.path: problem`."""
    first = min(error.errors(), key=_reading_order)
    path = ""
    for part in first["loc"]:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else str(part)
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        known = _known_keys(first["loc"][:-1])
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(known)})"
        return TicketFormatError(source, path, f"unknown key {key!r}{suggestion}")
    if first["type"] == "ticket_format":
        return TicketFormatError(source, path + first["ctx"]["at"], first["ctx"]["message"])
    if first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return TicketFormatError(source, path, f"expected a JSON object, got {_kind(first['input'])}")
    if first["type"] == "missing" and first["loc"] == ("id",):
        return TicketFormatError(source, path, "missing: every ticket needs an `id`")
    return TicketFormatError(source, path, first["msg"])


def _reading_order(error: Any) -> tuple[Any, ...]:
    """Which of several problems is reported: a document's unknown keys before its values; the ticket's
    `id` when it is missing, then `fields` and `field_changed_at`, then the other keys in their documented
    order; the state last (its unknown keys, then those of its milestones, then its values)."""
    loc, unknown = error["loc"], error["type"] == "extra_forbidden"
    head = loc[0]
    if head != "state":
        if unknown and len(loc) == 1:
            return (0,)
        if head == "id":
            return (1,) if error["type"] == "missing" or error.get("ctx", {}).get("message", "").startswith("missing") \
                else (4,)
        if head in ("fields", "field_changed_at"):
            return (2 if head == "fields" else 3,)
        return (5, TICKET_KEYS.index(head), 0 if unknown else 1)
    if len(loc) == 1:
        return (6, 0)
    if unknown and len(loc) == 2:
        return (6, 1)
    if loc[1] == "milestones" and (unknown or len(loc) == 2):
        return (6, 2)
    if loc[1] == "clock_state":
        return (6, 3)
    return (6, 4, STATE_KEYS.index(loc[1]))


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = _TicketDocument
    for part in loc:
        annotation = model.model_fields[part].annotation
        model = next(a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)
                     and issubclass(a, BaseModel))
    return list(model.model_fields)


# ------------------------------------------------------------------------------------- reading
def _document(data: Any, source: str) -> _TicketDocument:
    if not isinstance(data, Mapping):
        raise TicketFormatError(source, "", f"expected a JSON object, got {_kind(data)}")
    try:
        return _TicketDocument.model_validate(dict(data))
    except ValidationError as exc:
        raise _format_error(source, exc) from None


def ticket_from_json(data: Any, *, source: str = "ticket") -> Ticket:
    """A `Ticket` from one neutral JSON object. Raises TicketFormatError naming the bad key."""
    return _document(data, source).to_ticket()


def ticket_and_state_from_json(data: Any, *, source: str = "ticket") -> tuple[Ticket, TicketState | None]:
    document = _document(data, source)
    ticket = document.to_ticket()
    return ticket, document.state.to_state(ticket) if document.state is not None else None


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
        "clock_state": dict(state.clock_state),
    }
    return {k: v for k, v in out.items() if v not in (None, [], {})}


