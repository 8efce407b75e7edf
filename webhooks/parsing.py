"""Small helpers the vendor payload parsers share: JSON decoding of the raw body and field access that
fails with a message naming the dotted path of what is missing or malformed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from integration.model import NeutralEvent, ticket_reference
from webhooks.errors import PayloadError, quote

_MISSING = object()
# Ids and references are stored in 64-character columns (integration.store.db.EventRow); PostgreSQL refuses
# longer text where SQLite would keep it, so the edge refuses it on both.
MAX_ID_LENGTH = 64
# Python refuses to turn longer digit strings into int (sys.get_int_max_str_digits); no vendor id is near it.
MAX_NUMBER_DIGITS = 4300


class _NumberTooLong(Exception):
    pass


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _NumberTooLong
    return int(digits)


def decode_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NumberTooLong:
        raise PayloadError(f"body has a number with more than {MAX_NUMBER_DIGITS} digits") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    return data


def get_path(data: Any, path: str, default: Any = _MISSING) -> Any:
    """data["a"]["b"] for path "a.b"; PayloadError("missing a.b") when absent and no default is given."""
    current = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(current, dict):
            # Present but of the wrong shape is never "absent", even when a default is allowed.
            raise PayloadError(f"{'.'.join(walked[:-1])} must be an object")
        if part not in current or current[part] is None:
            if default is not _MISSING:
                return default
            raise PayloadError(f"missing {path}")
        current = current[part]
    return current


def require_object(data: Any, path: str) -> dict[str, Any]:
    value = get_path(data, path)
    if not isinstance(value, dict):
        raise PayloadError(f"{path} must be an object")
    return value


def require_string(data: Any, path: str) -> str:
    value = get_path(data, path)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{path} must be a non-empty string")
    return storable_text(value.strip(), path)


def storable_text(value: str, path: str, max_length: int | None = None) -> str:
    """`value` if the event store can keep it as text: no NUL (PostgreSQL refuses it), no lone UTF-16
    surrogate such as "\\ud800" (not encodable as UTF-8), at most `max_length` characters. Otherwise a
    400 naming `path`: retrying such a delivery can never succeed, so it must not be answered 503."""
    if "\x00" in value:
        raise PayloadError(f"{path} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{path} contains an unpaired UTF-16 surrogate (not valid Unicode text)") from None
    if max_length is not None and len(value) > max_length:
        raise PayloadError(f"{path} is longer than {max_length} characters")
    return value


def optional_id(data: Any, path: str) -> str | None:
    """A user/account id as text, or None when absent or empty (Zendesk sends ids as strings in
    event-subscription payloads and as numbers elsewhere; placeholders render unknown users as "")."""
    value = get_path(data, path, None)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return storable_text(str(value), path, MAX_ID_LENGTH)
    if isinstance(value, str):
        return storable_text(ticket_reference(value), path, MAX_ID_LENGTH) or None
    raise PayloadError(f"{path} must be a string or number")


def parse_iso_time(value: Any, path: str) -> datetime:
    """ISO-8601 as the vendors send it: "Z" suffix, nanosecond fractions, "+0000" offsets, or minutes
    only (Zendesk's *_with_timestamp placeholders render "2013-12-12T05:35Z")."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{path} must be an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(f"{path} is not an ISO-8601 time: {quote(value)}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        # Stored as UTC: 9999-12-31T23:59:59-05:00 is a valid ISO time that no datetime can hold in UTC.
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise PayloadError(f"{path} is out of range: {quote(value)}") from None


def parse_epoch_millis(value: Any, path: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{path} must be epoch milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{path} is out of range: {quote(value)}") from None


def check_exact_keys(data: dict[str, Any], required: Iterable[str], what: str) -> None:
    """User-defined bodies (Zendesk trigger, JSM automation) must be exactly the documented template."""
    required = tuple(required)
    missing = [key for key in required if key not in data]
    if missing:
        raise PayloadError(f"{what}: missing {', '.join(missing)}")
    unexpected = sorted(key for key in data if key not in required)
    if unexpected:
        shown = ", ".join(quote(key, 40) for key in unexpected[:5])
        raise PayloadError(f"{what}: unexpected keys {shown} (use the documented body template)")


@dataclass(frozen=True)
class BodyKind:
    """One kind of body a vendor endpoint takes, told apart from the others by a key only it has."""

    marker: str
    parse: Callable[[dict[str, Any], str | None], NeutralEvent]
    description: str  # for the refusal, e.g. "an event-subscription body (type, detail)"


def parse_body(payload: dict[str, Any], delivery_id: str | None, vendor_name: str,
               kinds: Sequence[BodyKind]) -> NeutralEvent:
    """Parse `payload` as the first of `kinds` whose marker key it has; refuse it, listing every kind, when
    it has none."""
    for kind in kinds:
        if kind.marker in payload:
            return kind.parse(payload, delivery_id)
    raise PayloadError(
        f"not a {vendor_name} webhook body: expected " + " or ".join(kind.description for kind in kinds)
    )


def template_event(payload: dict[str, Any], events: Mapping[str, str]) -> str:
    """The event type a documented body template (Zendesk trigger, JSM automation) names in its `event`,
    mapped to the vendor's webhook event vocabulary."""
    event = payload["event"]
    if not isinstance(event, str) or event not in events:
        raise PayloadError(f"event must be one of {', '.join(sorted(events))}, not {quote(event)}")
    return events[event]
