"""A best-effort Ticket from a Zendesk webhook payload, for dry runs without API credentials (no API call)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from connectors.base import fold_reply_times
from connectors.zendesk.mapping import (
    fields_from,
    id_or_none,
    neutral_priority,
    neutral_status,
    parse_time,
    ticket_from_raw,
)
from connectors.zendesk.settings import AGENT_ROLES, VENDOR
from integration.model import Person, Ticket, ticket_reference
from matrix_config.schema import Matrix


def snapshot_from_webhook(payload: Mapping[str, Any], matrix: Matrix, *, previous: Ticket | None = None) -> Ticket | None:
    """Best-effort Ticket from a webhook body, for dry runs without API credentials.

    Event subscriptions (`type: zen:event-type:ticket.*`) put the ticket in `detail` with string ids and
    UPPER-case enums; trigger webhooks carry whatever JSON the admin wrote (the conventional keys
    `ticket_id`, `ticket_status`, `ticket_priority`, `tags` as a space-separated string are understood).
    Custom fields are not part of either payload, so only tag-based fields are filled.

    A `ticket.comment_added` event that is public and written by an agent (`author.is_staff` or an
    agent/admin role; never the requester) is an acknowledgement: it sets the reply facts. One payload
    only knows its own comment, so the offline connector folds the stored payloads oldest first:
    `ticket = snapshot_from_webhook(payload, matrix, previous=ticket)`. With `previous` (the same ticket
    from earlier payloads) the earliest first reply and the latest reply survive, and a payload that says
    nothing usable returns `previous` unchanged."""
    ticket = _ticket_from_payload(payload, matrix) if isinstance(payload, Mapping) else None
    if previous is not None and (previous.vendor != VENDOR or (ticket is not None and ticket.id != previous.id)):
        previous = None  # another ticket's facts never mix in
    if ticket is None:
        return previous
    if previous is not None and ticket.requester.id is None and previous.requester.id is not None:
        ticket = ticket.with_(requester=previous.requester)
    reply_at = _agent_reply_time(payload, ticket.requester.id)
    return fold_reply_times(ticket, previous, reply_at)


def _ticket_from_payload(payload: Mapping[str, Any], matrix: Matrix) -> Ticket | None:
    detail = payload.get("detail")
    if isinstance(detail, Mapping) and detail.get("id") is not None:
        # Event payloads carry no custom fields and no sideloads: only tag-based fields and ids.
        return ticket_from_raw(detail, matrix, requester=Person(id=id_or_none(detail.get("requester_id"))))
    ticket_id = payload.get("ticket_id")
    if ticket_id is None and isinstance(payload.get("ticket"), Mapping):
        ticket_id = payload["ticket"].get("id")
    if ticket_id in (None, ""):
        return None
    raw_tags = payload.get("tags") or ""
    tags = frozenset(str(t).lower() for t in (raw_tags.split() if isinstance(raw_tags, str) else raw_tags))
    return Ticket(
        vendor=VENDOR,
        id=ticket_reference(ticket_id),
        subject=str(payload.get("ticket_title") or ""),
        status=neutral_status(payload.get("ticket_status")),
        priority=neutral_priority(payload.get("ticket_priority")),
        tags=tags,
        fields=fields_from(matrix, tags, {}),
    )


def _event_time(value: Any) -> datetime | None:
    """Event times carry nanoseconds ("2025-01-08T14:25:30.123456789Z"); datetime takes microseconds."""
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    return parse_time(text)


def _agent_reply_time(payload: Mapping[str, Any], requester_id: str | None) -> datetime | None:
    """When the payload is a public comment by an agent: the comment's time; else None."""
    if not str(payload.get("type") or "").endswith("ticket.comment_added"):
        return None
    event = payload.get("event")
    comment = event.get("comment") if isinstance(event, Mapping) else None
    if not isinstance(comment, Mapping) or comment.get("is_public", comment.get("public")) is not True:
        return None
    author = comment.get("author") if isinstance(comment.get("author"), Mapping) else {}
    author_id = str(author.get("id")) if author.get("id") is not None else None
    if author_id is not None and author_id == requester_id:
        return None
    role = str(author.get("role") or "").lower()
    if author.get("is_staff") is not True and role not in AGENT_ROLES:
        return None
    detail = payload.get("detail") if isinstance(payload.get("detail"), Mapping) else {}
    return (_event_time(comment.get("created_at")) or _event_time(payload.get("time"))
            or _event_time(detail.get("updated_at")))
