"""Zendesk API JSON <-> the neutral model (integration.model.Ticket) in matrix terms: tags, custom fields,
groups, statuses, priorities, and when each attribute last changed (ticket audits)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from connectors.zendesk.settings import VENDOR
from integration.model import Ticket, ticket_reference
from matrix_config.schema import LEVEL_ATTRIBUTE, PRIORITIES, Matrix, ZendeskField


# Zendesk status -> neutral status. Zendesk calls on-hold "hold".
_STATUS_FROM_ZENDESK = {"new": "new", "open": "open", "pending": "pending", "hold": "on_hold",
                        "on-hold": "on_hold", "on_hold": "on_hold", "solved": "solved", "closed": "closed"}
# ---------------------------------------------------------------------------- matrix <-> zendesk
def prefixed_tag(prefix: str, value: Any) -> str:
    # Zendesk lower-cases tags and turns spaces into separate tags.
    return f"{prefix}{value}".strip().lower().replace(" ", "_")


def to_zendesk_value(mapping: ZendeskField, value: Any) -> Any:
    if value is None:
        return None
    for matrix_value, vendor_value in mapping.values.items():
        if str(matrix_value).lower() == str(value).lower():
            return vendor_value
    return value


def to_matrix_value(mapping: ZendeskField, vendor_value: Any) -> Any:
    if vendor_value is None or vendor_value == "":
        return None
    for matrix_value, mapped in mapping.values.items():
        if str(mapped).lower() == str(vendor_value).lower():
            return matrix_value
    return vendor_value


def _canonical_level(matrix: Matrix, value: Any) -> Any:
    if value is None:
        return None
    for level in matrix.levels:
        if level.id.lower() == str(value).lower():
            return level.id
    return value


def _coerce(value: Any, field_type: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        if field_type == "integer":
            return int(value)
        if field_type == "decimal":
            return float(value)
    except (TypeError, ValueError):
        return value
    if field_type == "checkbox":
        return value in (True, "true", "1", 1)
    return value


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def neutral_priority(value: Any) -> str | None:
    text = str(value).lower() if value else None
    return text if text in PRIORITIES else None


def neutral_status(value: Any) -> str:
    return _STATUS_FROM_ZENDESK.get(str(value or "open").lower(), "open")


def fields_from(matrix: Matrix, tags: frozenset[str], custom: Mapping[int, Any],
                 field_types: Mapping[int, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, mapping in matrix.fields.items():
        zd = mapping.zendesk
        if zd is None:
            continue
        if zd.tag_prefix is not None:
            prefix = zd.tag_prefix.lower()
            matches = sorted(t[len(prefix):] for t in tags if t.startswith(prefix) and len(t) > len(prefix))
            if not matches:
                continue
            value = to_matrix_value(zd, matches[0])
            if name == LEVEL_ATTRIBUTE:
                # Several level tags (an agent added one by hand): the highest level wins.
                levels = [_canonical_level(matrix, to_matrix_value(zd, m)) for m in matches]
                known = [lv for lv in levels if any(lv == level.id for level in matrix.levels)]
                value = max(known, key=matrix.level_index) if known else levels[0]
            out[name] = value
        elif zd.custom_field is not None and zd.custom_field in custom:
            raw = _coerce(custom[zd.custom_field], (field_types or {}).get(zd.custom_field))
            value = to_matrix_value(zd, raw) if zd.values else raw
            if name == LEVEL_ATTRIBUTE:
                value = _canonical_level(matrix, value)
            if value is not None:
                out[name] = value
    return out


def _group_key(matrix: Matrix, group_id: Any) -> str | None:
    if group_id in (None, ""):
        return None
    for key, mapping in matrix.groups.items():
        if mapping.zendesk is not None and str(mapping.zendesk) == str(group_id):
            return key
    return None


def id_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def ticket_from_raw(raw: Mapping[str, Any], matrix: Matrix, *, custom: Mapping[int, Any] | None = None,
                     field_types: Mapping[int, str] | None = None, **facts: Any) -> Ticket:
    """A Ticket from a Zendesk ticket object: the API's `ticket` or an event's `detail` (same keys; the
    event has string ids and UPPER-case enums). `facts` adds what only the caller knows (requester,
    assignee, organization, replies, ...)."""
    tags = frozenset(str(t).lower() for t in raw.get("tags") or [])
    via = raw.get("via")
    return Ticket(
        vendor=VENDOR,
        id=ticket_reference(raw["id"]),
        subject=raw.get("subject") or "",
        status=neutral_status(raw.get("status")),
        priority=neutral_priority(raw.get("priority")),
        tags=tags,
        group=_group_key(matrix, raw.get("group_id")),
        channel=via.get("channel") if isinstance(via, Mapping) else None,
        fields=fields_from(matrix, tags, custom or {}, field_types),
        created_at=parse_time(raw.get("created_at")),
        updated_at=parse_time(raw.get("updated_at")),
        version_token=raw.get("updated_at"),
        **facts,
    )


def attribute_changes(audits: Any, matrix: Matrix) -> dict[str, datetime]:
    """When each matrix attribute last changed: the `created_at` of the latest audit with a `Change` event
    on it. A custom field's `field_name` is its id as a string; a tag-keyed attribute changes when its
    prefixed tags change (`value`/`previous_value` are tag lists, or space-separated strings in older
    audits), `tags` with any tag; built-ins by their ticket property. Unchanged attributes are absent."""
    if not isinstance(audits, list):
        return {}
    by_field: dict[str, list[str]] = {"priority": ["priority"], "status": ["status"], "group_id": ["group"],
                                      "organization_id": ["organization"], "subject": ["subject"]}
    prefixes: dict[str, str] = {}
    for name, mapping in matrix.fields.items():
        zd = mapping.zendesk
        if zd is None:
            continue
        if zd.tag_prefix is not None:
            prefixes[name] = str(zd.tag_prefix).lower()
        elif zd.custom_field is not None:
            by_field.setdefault(str(zd.custom_field), []).append(name)

    def tags(value: Any, prefix: str = "") -> set[str]:
        items = value.split() if isinstance(value, str) else (value or [])
        return {str(t).lower() for t in items if str(t).lower().startswith(prefix)}

    changed: dict[str, datetime] = {}
    # Zendesk lists a ticket's audits oldest first: the last audit that changed an attribute set its value.
    for audit in reversed(audits):
        when = parse_time(audit.get("created_at")) if isinstance(audit, Mapping) else None
        if when is None:
            continue
        for event in audit.get("events") or []:
            if not isinstance(event, Mapping) or event.get("type") != "Change":
                continue
            field_name = str(event.get("field_name"))
            names = list(by_field.get(field_name, ()))
            if field_name == "tags":
                names.append("tags")
                names += [name for name, prefix in prefixes.items()
                          if tags(event.get("value"), prefix) != tags(event.get("previous_value"), prefix)]
            for name in names:
                changed.setdefault(name, when)
    return changed
