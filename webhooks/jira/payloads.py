"""Jira webhook bodies -> NeutralEvent.

Two kinds of body arrive on the same endpoint:

* Admin webhooks (System > WebHooks, signed with X-Hub-Signature): `webhookEvent` names the event,
  `issue.key` the issue, `user.accountId` who acted (for comments: `comment.author.accountId`),
  `timestamp` epoch milliseconds.
* JSM automation "Send web request" (cannot sign; authenticated by a shared-secret header): the body is
  what the admin typed into the rule. We accept exactly AUTOMATION_BODY_TEMPLATE.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from integration.model import NeutralEvent, ticket_reference
from webhooks.errors import PayloadError, quote
from webhooks.parsing import (
    MAX_ID_LENGTH,
    BodyKind,
    check_exact_keys,
    get_path,
    optional_id,
    parse_body,
    parse_epoch_millis,
    parse_iso_time,
    require_string,
    storable_text,
    template_event,
)

VENDOR = "jira"
# Project keys: an uppercase letter, then uppercase letters, digits or underscores.
_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]+-[1-9][0-9]*$")

AUTOMATION_BODY_TEMPLATE = """{
  "issueKey": "{{issue.key}}",
  "event": "issue_updated",
  "actor": "{{initiator.accountId}}",
  "occurredAt": "{{now}}"
}"""
AUTOMATION_KEYS = ("issueKey", "event", "actor", "occurredAt")
# The automation body's `event` maps onto the admin webhook event names, so the pipeline sees one vocabulary.
AUTOMATION_EVENTS = {
    "issue_created": "jira:issue_created",
    "issue_updated": "jira:issue_updated",
    "comment_created": "comment_created",
}


def _actor_from_user(payload: dict[str, Any]) -> str | None:
    return optional_id(payload, "user.accountId")


def _actor_from_comment(payload: dict[str, Any]) -> str | None:
    return optional_id(payload, "comment.author.accountId") or _actor_from_user(payload)


# webhookEvent -> how to find the actor. Events not listed (comment_updated, comment_deleted, worklog_*,
# attachment_*, issuelink_*, ...) are recorded as ignored and answered 200.
EVENT_HANDLERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "jira:issue_created": _actor_from_user,
    "jira:issue_updated": _actor_from_user,
    "comment_created": _actor_from_comment,
    # A pass on a deleted issue reads 404; the pipeline then closes the ticket as deleted (timers cancelled)
    # instead of dead-lettering it.
    "jira:issue_deleted": _actor_from_user,
}


def parse_jira(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    return parse_body(payload, delivery_id, "Jira", BODY_KINDS)


def parse_admin_webhook(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    webhook_event = require_string(payload, "webhookEvent")
    timestamp = get_path(payload, "timestamp", None)
    occurred_at = parse_epoch_millis(timestamp, "timestamp") if timestamp is not None else None
    handler = EVENT_HANDLERS.get(webhook_event)
    if handler is None:
        return NeutralEvent(
            vendor=VENDOR,
            ticket_id=_ignored_event_reference(payload),
            event_type=webhook_event,
            delivery_id=delivery_id,
            actor_id=_actor_from_user(payload),
            occurred_at=occurred_at,
            handled=False,
        )
    return NeutralEvent(
        vendor=VENDOR,
        ticket_id=_issue_key(get_path(payload, "issue.key"), "issue.key"),
        event_type=webhook_event,
        delivery_id=delivery_id,
        actor_id=handler(payload),
        occurred_at=occurred_at,
        handled=True,
    )


def parse_automation(payload: dict[str, Any], delivery_id: str | None) -> NeutralEvent:
    check_exact_keys(payload, AUTOMATION_KEYS, "Jira automation body")
    event_type = template_event(payload, AUTOMATION_EVENTS)
    return NeutralEvent(
        vendor=VENDOR,
        ticket_id=_issue_key(payload["issueKey"], "issueKey"),
        event_type=event_type,
        delivery_id=delivery_id,
        actor_id=optional_id(payload, "actor"),
        occurred_at=parse_iso_time(payload["occurredAt"], "occurredAt"),
        handled=True,
    )


BODY_KINDS = (
    BodyKind("webhookEvent", parse_admin_webhook, "an admin webhook body (webhookEvent, issue)"),
    BodyKind("issueKey", parse_automation, "the documented automation body (issueKey, event, actor, occurredAt)"),
)


def _issue_key(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ISSUE_KEY.match(ticket_reference(value)):
        raise PayloadError(f"{path} must be a Jira issue key like ABC-123, not {quote(value)}")
    return storable_text(ticket_reference(value), path, MAX_ID_LENGTH)


def _ignored_event_reference(payload: dict[str, Any]) -> str:
    """Best ticket reference for an ignored event; worklog and link events carry only numeric ids, and
    project/user events none ("")."""
    key = get_path(payload, "issue.key", None)
    if isinstance(key, str) and _ISSUE_KEY.match(ticket_reference(key)):
        return _issue_key(key, "issue.key")
    for path in ("issue.id", "worklog.issueId", "issueLink.sourceIssueId"):
        value = optional_id(payload, path) if isinstance(get_path(payload, path, None), (str, int)) else None
        if value:
            return value
    return ""
