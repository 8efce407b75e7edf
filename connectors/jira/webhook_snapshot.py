"""A best-effort Ticket from a Jira webhook payload, for dry runs without API credentials (no API call)."""
from __future__ import annotations

from typing import Any

from connectors.base import fold_reply_times
from connectors.jira.mapping import is_agent_comment, parse_jira_time, ticket_from_issue
from connectors.jira.settings import VENDOR, JiraSettings, NormalizeOptions
from integration.model import Ticket, ticket_reference
from matrix_config.schema import Matrix


def snapshot_from_webhook(payload: dict[str, Any], matrix: Matrix, *, previous: Ticket | None = None) -> Ticket | None:
    """Best-effort Ticket from a webhook (no API call), for dry runs without credentials and for logging.

    `jira:issue_*` payloads carry the issue. A `comment_created`/`comment_updated` payload that is public
    to the customer (`comment.jsdPublic`) and written by an agent (see `is_agent_comment`: not the
    reporter, the integration, a portal customer or an automation account) is an acknowledgement and sets
    the reply facts. Its `issue` has only a few fields (no labels, reporter or custom fields), so with
    `previous` the ticket's attributes come from `previous` and only the reply facts change.

    One payload only knows its own comment, so the offline connector folds the stored payloads oldest
    first: `ticket = snapshot_from_webhook(payload, matrix, previous=ticket)`. With `previous` (the same
    issue from earlier payloads) the earliest first reply and the latest reply survive, and a payload that
    says nothing usable returns `previous` unchanged."""
    if not isinstance(payload, dict):
        return previous
    issue = payload.get("issue")
    issue_key = ticket_reference(issue.get("key")) if isinstance(issue, dict) and issue.get("key") else None
    if previous is not None and (previous.vendor != VENDOR or (issue_key and previous.id != issue_key)):
        previous = None  # another issue's facts never mix in
    if not issue_key or not isinstance(issue.get("fields"), dict):
        return previous
    settings = JiraSettings()
    options = NormalizeOptions.from_settings(settings)
    comment = payload.get("comment")
    is_comment_event = str(payload.get("webhookEvent") or "").startswith("comment_") and isinstance(comment, dict)
    if is_comment_event and previous is not None:
        ticket = previous  # the comment payload's issue is partial: keep what earlier payloads said
    else:
        ticket = ticket_from_issue(issue, matrix, options)
        if previous is not None and ticket.requester.id is None and previous.requester.id is not None:
            ticket = ticket.with_(requester=previous.requester)
    reply_at = None
    if is_comment_event:
        as_jsm = {"author": comment.get("author"), "public": comment.get("jsdPublic") is True,
                  "created": comment.get("created")}
        if is_agent_comment(as_jsm, ticket.requester.id, options.own_account_id, options.non_agents):
            reply_at = parse_jira_time(comment.get("created")) or parse_jira_time(
                {"epochMillis": payload["timestamp"]} if payload.get("timestamp") else None)
    return fold_reply_times(ticket, previous, reply_at)
