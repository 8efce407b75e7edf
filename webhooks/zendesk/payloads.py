"""Zendesk webhook bodies -> NeutralEvent.

Two kinds of body arrive on the same endpoint:

* Event-subscription webhooks (`"type": "zen:event-type:ticket.<event>"`): Zendesk's fixed schema.
  `detail` is the ticket after the change, with ids as strings and UPPER-case enums ("OPEN", "HIGH");
  `event` holds what changed; `detail.actor_id` is who changed it.
* Trigger webhooks: the body is whatever JSON the admin typed into the trigger. We accept exactly one
  template, TRIGGER_BODY_TEMPLATE, and refuse anything else with a message saying what differs.

A webhook is only a hint that the ticket changed: the processing pass re-reads the ticket from the
API, so nothing but the ticket id, the event type, the actor (to recognise our own writes) and the time
is taken from the body.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from integration.model import NeutralEvent, ticket_reference
from webhooks.errors import PayloadError, quote
from webhooks.parsing import (
    BodyKind,
    check_exact_keys,
    get_path,
    optional_id,
    parse_body,
    parse_iso_time,
    require_object,
    require_string,
    template_event,
)

VENDOR = "zendesk"
EVENT_TYPE_PREFIX = "zen:event-type:"
_TICKET_ID = re.compile(r"^[1-9][0-9]{0,19}$")
_SUBJECT = re.compile(r"^zen:ticket:(?P<id>[^:]+)$")

# The trigger body the README tells admins to paste into "Notify active webhook". Placeholders are
# quoted so Zendesk always produces valid JSON; `event` is fixed text chosen per trigger.
TRIGGER_BODY_TEMPLATE = """{
  "ticket_id": "{{ticket.id}}",
  "event": "ticket_updated",
  "updated_at": "{{ticket.updated_at_with_timestamp}}",
  "current_user_id": "{{current_user.id}}"
}"""
TRIGGER_KEYS = ("ticket_id", "event", "updated_at", "current_user_id")
TRIGGER_EVENTS = {"ticket_created": "ticket.created", "ticket_updated": "ticket.updated"}


def _actor_from_detail(payload: dict[str, Any]) -> str | None:
    return optional_id(payload, "detail.actor_id")


def _actor_from_comment(payload: dict[str, Any]) -> str | None:
    # The comment's author is who acted; detail.actor_id is the fallback for bodies that omit it.
    require_object(payload, "event.comment")
    return optional_id(payload, "event.comment.author.id") or _actor_from_detail(payload)


# Event types the service acts on, each with how to find the actor. Any other
# zen:event-type:ticket.* is a known but unhandled type: recorded as ignored, answered 200.
EVENT_HANDLERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "ticket.created": _actor_from_detail,
    "ticket.priority_changed": _actor_from_detail,
    "ticket.status_changed": _actor_from_detail,
    "ticket.custom_status_changed": _actor_from_detail,
    "ticket.tags_changed": _actor_from_detail,
    "ticket.group_assignment_changed": _actor_from_detail,
    "ticket.agent_assignment_changed": _actor_from_detail,
    "ticket.comment_added": _actor_from_comment,
    "ticket.custom_field_changed": _actor_from_detail,
    "ticket.type_changed": _actor_from_detail,
    "ticket.organization_changed": _actor_from_detail,
    # The requester's organization and the form can decide placement (organization, mapped fields).
    "ticket.requester_changed": _actor_from_detail,
    "ticket.form_changed": _actor_from_detail,
    # A merged-away ticket is closed by Zendesk: the pass records the resolve milestone and stops its clocks.
    "ticket.merged": _actor_from_detail,
    # Deleted and restored tickets: a pass on a deleted ticket fetches nothing (NotFound) and the pipeline
    # closes it as deleted (events done, timers cancelled); a restored ticket gets its pass so escalation resumes. Zendesk's names, from its webhook
    # ticket-event reference (zen:event-type:ticket.soft_deleted, .permanently_deleted, .undeleted).
    "ticket.soft_deleted": _actor_from_detail,
    "ticket.permanently_deleted": _actor_from_detail,
    "ticket.undeleted": _actor_from_detail,
}


def parse_zendesk(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    return parse_body(payload, delivery_id, "Zendesk", BODY_KINDS)


def parse_event_subscription(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    zen_type = require_string(payload, "type")
    if not zen_type.startswith(EVENT_TYPE_PREFIX):
        raise PayloadError(f"type {quote(zen_type)} is not a Zendesk event type (zen:event-type:...)")
    event_type = zen_type[len(EVENT_TYPE_PREFIX):]
    if not event_type.startswith("ticket."):
        raise PayloadError(
            f"unsupported Zendesk event type {quote(zen_type)}: subscribe this webhook to ticket events only"
        )
    require_object(payload, "detail")
    ticket_id = _ticket_id(get_path(payload, "detail.id"), "detail.id")
    subject = get_path(payload, "subject", None)
    if subject is not None:
        match = _SUBJECT.match(subject) if isinstance(subject, str) else None
        if match is None or match.group("id") != ticket_id:
            raise PayloadError(f"subject {quote(subject)} does not match detail.id {ticket_id!r}")
    time = get_path(payload, "time", None)
    occurred_at = parse_iso_time(time, "time") if time is not None else None

    handler = EVENT_HANDLERS.get(event_type)
    actor_id = handler(payload) if handler else _actor_from_detail(payload)
    return NeutralEvent(
        vendor=VENDOR,
        ticket_id=ticket_id,
        event_type=event_type,
        delivery_id=delivery_id,
        actor_id=actor_id,
        occurred_at=occurred_at,
        handled=handler is not None,
    )


def parse_trigger(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    check_exact_keys(payload, TRIGGER_KEYS, "Zendesk trigger body")
    ticket_id = _ticket_id(payload["ticket_id"], "ticket_id")
    event_type = template_event(payload, TRIGGER_EVENTS)
    return NeutralEvent(
        vendor=VENDOR,
        ticket_id=ticket_id,
        event_type=event_type,
        delivery_id=delivery_id,
        actor_id=optional_id(payload, "current_user_id"),
        occurred_at=parse_iso_time(payload["updated_at"], "updated_at"),
        handled=True,
    )


BODY_KINDS = (
    BodyKind("type", parse_event_subscription, "an event-subscription body (type, detail)"),
    BodyKind("ticket_id", parse_trigger,
             "the documented trigger body (ticket_id, event, updated_at, current_user_id)"),
)


def _ticket_id(value: Any, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _TICKET_ID.match(ticket_reference(value)):
        raise PayloadError(f"{path} must be a numeric Zendesk ticket id, not {quote(value)}")
    return ticket_reference(value)
