"""Jira/JSM API JSON <-> the neutral model (integration.model.Ticket) in matrix terms: issue fields, labels,
statuses, priorities, groups, comments, changelog, and the shapes Jira's edit takes."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from connectors.jira.settings import VENDOR, NormalizeOptions, StatusConfig
from integration.model import Person, Ticket, ticket_reference
from matrix_config.schema import LEVEL_ATTRIBUTE, JiraField, Matrix


# ------------------------------------------------------------------------------------ normalization
def parse_jira_time(value: Any) -> datetime | None:
    """Jira platform times ("2019-08-27T12:43:24.193-0700") and JSM DateDTOs ({"epochMillis": ...})."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        if value.get("epochMillis") is not None:
            return datetime.fromtimestamp(int(value["epochMillis"]) / 1000, tz=timezone.utc)
        value = value.get("iso8601") or value.get("jira")
        if not value:
            return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def adf_to_text(node: Any) -> str:
    """Plain text of an Atlassian Document Format value (API v3 returns rich-text fields as ADF)."""
    if isinstance(node, list):
        return "".join(adf_to_text(child) for child in node)
    if not isinstance(node, dict):
        return "" if node is None else str(node)
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    inner = adf_to_text(node.get("content", []))
    if node.get("type") in ("paragraph", "heading", "listItem", "codeBlock", "blockquote"):
        return inner.rstrip("\n") + "\n"
    return inner if node.get("type") != "doc" else inner.strip("\n")


def text_to_adf(text: str) -> dict[str, Any]:
    paragraphs = [p for p in str(text).split("\n")]
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": ([{"type": "text", "text": p}] if p else [])} for p in paragraphs
        ],
    }


def jira_value_to_plain(value: Any) -> Any:
    """A Jira field value as a plain scalar (or list of scalars): select options by their value, groups and
    components by name, users by display name, request types by name, ADF by its text."""
    if value is None:
        return None
    if isinstance(value, list):
        items = [jira_value_to_plain(v) for v in value]
        return [v for v in items if v is not None]
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return adf_to_text(value) or None
        if "requestType" in value and isinstance(value["requestType"], dict):
            return value["requestType"].get("name")
        for key in ("value", "name", "displayName", "title", "id", "accountId", "key"):
            if value.get(key) is not None:
                return value[key]
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def to_matrix_value(plain: Any, mapping: JiraField) -> Any:
    """Jira option value -> matrix value via `values` (matrix value -> Jira value); unmapped values pass as is."""
    if isinstance(plain, list):
        return [to_matrix_value(v, mapping) for v in plain]
    for matrix_value, jira_value in mapping.values.items():
        if same_value(jira_value, plain):
            return matrix_value
    return plain


def to_jira_value(value: Any, mapping: JiraField) -> Any:
    if isinstance(value, (list, tuple)):
        return [to_jira_value(v, mapping) for v in value]
    if isinstance(value, str) and value in mapping.values:
        return mapping.values[value]
    return value


def _label_value(labels: Sequence[str], prefix: str) -> str | None:
    for label in labels:
        if label.lower().startswith(prefix.lower()) and len(label) > len(prefix):
            return label[len(prefix):]
    return None


def neutral_status(status: Mapping[str, Any] | None, config: StatusConfig) -> str:
    if not status:
        return "open"
    name = str(status.get("name") or "").strip().lower()
    category = str((status.get("statusCategory") or {}).get("key") or "").lower()
    if name in config.pending:
        return "pending"
    if name in config.on_hold:
        return "on_hold"
    if category == "done":
        return "closed" if name in config.closed else "solved"
    if category == "new":
        return "new"
    return "open"


def neutral_priority(priority: Mapping[str, Any] | None, matrix: Matrix) -> str | None:
    name = (priority or {}).get("name")
    if not name:
        return None
    for neutral, jira_name in matrix.vendors.jira.priorities.items():
        if same_value(jira_name, name):
            return neutral
    return None


def _group_value(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if isinstance(raw, dict):
        for key in ("name", "value", "id", "teamId"):
            if raw.get(key):
                return str(raw[key])
        return None
    return str(raw) if raw else None


def matrix_group(raw: Any, matrix: Matrix) -> str | None:
    """Vendor group field value -> matrix group key (None when the matrix does not know it)."""
    value = _group_value(raw)
    if value is None:
        return None
    for key, group in matrix.groups.items():
        if group.jira is not None and same_value(group.jira, value):
            return key
    # A Team field may come back as an object whose id we configured while `name` was read first.
    if isinstance(raw, dict):
        for key, group in matrix.groups.items():
            if group.jira is not None and any(same_value(group.jira, v) for v in raw.values() if isinstance(v, str)):
                return key
    return None


def _person(user: Mapping[str, Any] | None) -> Person | None:
    if not user:
        return None
    return Person(id=user.get("accountId"), name=user.get("displayName"), email=user.get("emailAddress"))


# Atlassian's "Automation for Jira" app user: its auto-replies are not an agent acknowledging the request.
AUTOMATION_ACCOUNT_ID = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"


def is_agent_comment(comment: Mapping[str, Any], reporter_id: str | None, own_account_id: str | None,
                     non_agents: frozenset[str] = frozenset()) -> bool:
    """A public reply counts as the agent's when its author is neither the customer nor the integration
    nor an automation/bot account. JSM portal-only customers have account ids starting with "qm:"."""
    author = comment.get("author") or {}
    author_id = author.get("accountId")
    if not author_id:
        return False
    if author_id in (reporter_id, own_account_id, AUTOMATION_ACCOUNT_ID) or author_id in non_agents:
        return False
    if str(author_id).startswith("qm:"):
        return False
    return comment.get("public") is True


def reply_times(
    comments: Sequence[Mapping[str, Any]], reporter_id: str | None, own_account_id: str | None,
    non_agents: frozenset[str] = frozenset(),
) -> tuple[datetime | None, datetime | None]:
    agent_comments = (c for c in comments if is_agent_comment(c, reporter_id, own_account_id, non_agents))
    times = sorted(t for t in (parse_jira_time(c.get("created")) for c in agent_comments) if t is not None)
    return (times[0], times[-1]) if times else (None, None)


def last_reply_author(comments: Sequence[Mapping[str, Any]], reporter_id: str | None, own_account_id: str | None,
                      non_agents: frozenset[str] = frozenset()) -> Person | None:
    """The author of the latest public agent reply (the one-customer-voice check compares it with the contact)."""
    dated = [(t, c) for c in comments if is_agent_comment(c, reporter_id, own_account_id, non_agents)
             for t in [parse_jira_time(c.get("created"))] if t is not None]
    if not dated:
        return None
    author = max(dated, key=lambda pair: pair[0])[1].get("author") or {}
    return Person(id=author.get("accountId"), name=author.get("displayName"), email=author.get("emailAddress"))


def attribute_changes(changelog: Any, matrix: Matrix, *, group_field: str | None = None,
                      organization_field: str | None = None) -> dict[str, datetime]:
    """When each matrix attribute last changed, from an issue's changelog (`expand=changelog` on the issue
    GET: the recent histories, newest first; or `/issue/{key}/changelog` pages). Items are matched by
    `fieldId` (`field` holds a custom field's display name); a label-keyed attribute changes when its
    prefixed labels change, `tags` with any label. Attributes without a change in the changelog are absent."""
    histories = changelog.get("histories") if isinstance(changelog, Mapping) else changelog
    if not isinstance(histories, list):
        return {}
    by_field: dict[str, list[str]] = {"priority": ["priority"], "status": ["status"], "summary": ["subject"]}
    prefixes: dict[str, str] = {}
    for name, mapping in matrix.fields.items():
        jira = mapping.jira
        if jira is None:
            continue
        if jira.label_prefix is not None:
            prefixes[name] = str(jira.label_prefix)
        elif jira.field:
            by_field.setdefault(jira.field, []).append(name)
    for field_id, name in ((group_field, "group"), (organization_field, "organization")):
        if field_id:
            by_field.setdefault(field_id, []).append(name)

    def labels(text: Any, prefix: str = "") -> set[str]:
        return {label for label in str(text or "").split() if label.startswith(prefix)}

    changed: dict[str, datetime] = {}
    for history in histories:
        when = parse_jira_time(history.get("created")) if isinstance(history, Mapping) else None
        if when is None:
            continue
        names: set[str] = set()
        for item in history.get("items") or []:
            if not isinstance(item, Mapping):
                continue
            field_id = item.get("fieldId") or item.get("field")
            names.update(by_field.get(str(field_id), ()))
            if field_id == "labels":
                names.add("tags")
                names.update(name for name, prefix in prefixes.items()
                             if labels(item.get("fromString"), prefix) != labels(item.get("toString"), prefix))
        for name in names:
            if name not in changed or when > changed[name]:
                changed[name] = when
    return changed


def ticket_from_issue(
    issue: Mapping[str, Any],
    matrix: Matrix,
    options: NormalizeOptions = NormalizeOptions(),
    comments: Sequence[Mapping[str, Any]] | None = None,
) -> Ticket:
    """Normalize a Jira issue (REST `IssueBean` or a webhook's `issue`) into a Ticket in matrix terms."""
    fields: Mapping[str, Any] = issue.get("fields") or {}
    labels = [str(label) for label in (fields.get("labels") or [])]
    reporter = _person(fields.get("reporter")) or Person()

    values: dict[str, Any] = {}
    for name, mapping in matrix.fields.items():
        jira = mapping.jira
        if jira is None:
            continue
        if jira.label_prefix is not None:
            raw_label = _label_value(labels, jira.label_prefix)
            values[name] = None if raw_label is None else to_matrix_value(raw_label, jira)
        elif jira.field in fields:
            values[name] = to_matrix_value(jira_value_to_plain(fields.get(jira.field)), jira)
    if options.request_type_field and "request_type" not in values:
        values["request_type"] = jira_value_to_plain(fields.get(options.request_type_field))

    organization = None
    if options.organization_field:
        orgs = jira_value_to_plain(fields.get(options.organization_field))
        if isinstance(orgs, list):
            organization = str(orgs[0]) if orgs else None
        elif orgs is not None:
            organization = str(orgs)

    group_field = matrix.vendors.jira.group_field
    first_reply, last_reply = reply_times(comments or [], reporter.id, options.own_account_id, options.non_agents)
    changes = attribute_changes(issue.get("changelog"), matrix, group_field=group_field,
                                organization_field=options.organization_field)
    key = ticket_reference(issue.get("key") or issue.get("id"))
    return Ticket(
        vendor=VENDOR,
        id=key,
        subject=str(fields.get("summary") or ""),
        status=neutral_status(fields.get("status"), options.statuses),
        priority=neutral_priority(fields.get("priority"), matrix),
        tags=frozenset(labels),
        organization=organization,
        group=matrix_group(fields.get(group_field), matrix) if group_field else None,
        channel=None,
        requester=reporter,
        assignee=_person(fields.get("assignee")),
        fields=values,
        created_at=parse_jira_time(fields.get("created")),
        updated_at=parse_jira_time(fields.get("updated")),
        level_set_at=changes.get(LEVEL_ATTRIBUTE),
        field_changed_at=changes,
        first_public_agent_reply_at=first_reply,
        last_public_agent_reply_at=last_reply,
        last_public_agent_reply_by=last_reply_author(comments or [], reporter.id, options.own_account_id,
                                                     options.non_agents),
        # Jira has no conditional edit; the updated time is kept for the audit log only.
        version_token=str(fields.get("updated")) if fields.get("updated") else None,
        url=f"{options.server_url}/browse/{key}" if options.server_url else None,
    )


def encode_field_value(value: Any, schema: Mapping[str, Any] | None, api_version: int = 3) -> Any:
    """A plain value in the shape Jira's edit takes for a field of this schema type."""
    if value is None:
        return None
    schema = schema or {}
    kind = schema.get("type")
    custom = str(schema.get("custom") or "")
    if kind == "array":
        items = value if isinstance(value, (list, tuple)) else [value]
        item_schema = {"type": schema.get("items")}
        return [encode_field_value(v, item_schema, api_version) for v in items]
    if kind in ("option", "option-with-child"):
        return {"value": str(value)}
    if kind == "group":
        return {"name": str(value)}
    if kind == "user":
        return {"accountId": str(value)}
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() else number
    if custom.endswith(":atlassian-team") or kind == "team":
        return str(value)
    if kind == "string" and custom.endswith(":textarea") and api_version == 3:
        return text_to_adf(str(value))
    if kind == "string":
        return str(value)
    return value


def group_field_value(group_id: str, kind: str) -> Any:
    if kind == "group":
        return {"name": group_id}
    if kind == "select":
        return {"value": group_id}
    return group_id  # team: the Team field takes the team id as a plain string


def satisfaction_from_feedback(feedback: Mapping[str, Any] | None) -> str | None:
    """`Ticket.satisfaction` from JSM request feedback (`CSATFeedbackFullDTO`): the 1..5 rating as text, the
    shape the CSAT table scales (1 = 0 %, 5 = 100 %); None for no rating or one outside 1..5."""
    rating = (feedback or {}).get("rating")
    if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 1 <= rating <= 5:
        return None
    return str(int(rating))


def is_resolved(issue: Mapping[str, Any]) -> bool:
    """Done in Jira's terms: the status category is `done` or a resolution is set (when the issue carries it)."""
    fields: Mapping[str, Any] = issue.get("fields") or {}
    category = str(((fields.get("status") or {}).get("statusCategory") or {}).get("key") or "").lower()
    return category == "done" or bool(fields.get("resolution"))
