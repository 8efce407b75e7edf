"""Corrective actions as Jira issues (issue 11): created in the matrix's `incident.actions.project`, assigned to
the owner with the due date, and linked to the incident's ticket: a JSM request by an issue link
(`POST /rest/api/3/issueLink`), a Zendesk ticket by a remote link to its agent URL
(`POST /rest/api/3/issue/{key}/remotelink`), so the action shows where the incident happened.

The owner may be given as a Jira accountId or as an e-mail address (agents know their colleagues' addresses,
not their account ids); an address is resolved with `GET /rest/api/3/user/search`, and exactly one active
user must match. Creating an issue is not repeatable: the retry layer never re-sends the POST after a
timeout (`connectors.http.safe_to_repeat`), so an unclear outcome is reported rather than duplicated."""
from __future__ import annotations

from datetime import date
from typing import Any

from connectors.base import Permanent
from connectors.jira.client import JiraClient
from connectors.jira.settings import JiraSettings
from integration.model import Ticket
from matrix_config.schema import CorrectiveActions


def _paragraph(text: str, link: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if link:
        node["marks"] = [{"type": "link", "attrs": {"href": link}}]
    return {"type": "paragraph", "content": [node]}


def resolve_owner(client: JiraClient, owner: str) -> tuple[str, str | None]:
    """(accountId, display name) of `owner`: an accountId as given, or the one active user an e-mail finds."""
    if "@" not in owner:
        return owner, None
    users = client.get_json("/rest/api/3/user/search", {"query": owner}) or []
    active = [u for u in users if u.get("active", True) and u.get("accountId")]
    if len(active) != 1:
        found = "no Jira user" if not active else f"{len(active)} Jira users"
        raise Permanent(f"owner {owner!r}: {found} found; give the owner's Jira accountId instead")
    return active[0]["accountId"], active[0].get("displayName")


def create_corrective_action(settings: JiraSettings, config: CorrectiveActions, *, ticket: Ticket, summary: str,
                             owner: str, due: date, client: JiraClient | None = None) -> dict[str, Any]:
    """Create the action's issue and link it to `ticket`; returns {key, url, owner, owner_name}."""
    client = client or JiraClient(settings)
    account_id, owner_name = resolve_owner(client, owner)
    where = f"{ticket.vendor} ticket {ticket.id}"
    fields = {
        "project": {"key": config.project},
        "issuetype": {"name": config.issue_type},
        "summary": summary,
        "assignee": {"accountId": account_id},
        "duedate": due.isoformat(),
        "labels": ["corrective-action"],
        "description": {"type": "doc", "version": 1, "content": [
            _paragraph(f"Corrective action of the incident on {where}.", ticket.url)]},
    }
    created = client.request("POST", client.platform("issue"), json={"fields": fields}).json()
    key = created["key"]
    if ticket.vendor == "jira":
        client.request("POST", client.platform("issueLink"), json={
            "type": {"name": config.link_type}, "inwardIssue": {"key": key}, "outwardIssue": {"key": ticket.id}})
    elif ticket.url:
        client.request("POST", client.platform(f"issue/{key}/remotelink"), json={
            "globalId": f"escalation-matrix:{ticket.vendor}:{ticket.id}",
            "relationship": "corrective action of",
            "object": {"url": ticket.url, "title": f"Incident: {where}" + (f" — {ticket.subject}" if ticket.subject else "")}})
    return {"key": key, "url": f"{client.base_url}/browse/{key}", "owner": account_id, "owner_name": owner_name}
