"""Jira Service Management connector (jira 3.10.5 client + the JSM `servicedeskapi`).

What goes through which door, and why:

* The `jira.JIRA` client is built with `get_server_info=False`, `validate=False` and `max_retries=0`:
  nothing is sent at construction (start-up never fails on a Jira outage), and its `ResilientSession`
  makes exactly one attempt per request. Its own loop would otherwise repeat 429/503 responses *including
  POSTs*, which would duplicate customer replies; `connectors.retry` is the only retry layer.
* Reads that are one request in the client go through the client (`issue()`, `myself()`).
* Everything else is sent through the client's session with the exact URL and body we want:
  - the field edit: `Issue.update()` would reload the issue with a GET after the PUT (and translates
    `fields=` in ways we do not control), so we PUT `/rest/api/{2|3}/issue/{key}` ourselves;
  - the search: `enhanced_search_issues()` first loads `GET /rest/api/{v}/field` to translate field
    names, so we call `GET /rest/api/3/search/jql` (the current search; `/search` is deprecated) ourselves;
  - comments: the client's `add_comment()` uses the platform API, where comments on a JSM issue are
    *public by default* and v3 bodies must be ADF. The JSM endpoint
    `POST /rest/servicedeskapi/request/{key}/comment` takes plain text and an explicit `"public"` flag.
* Every vendor error becomes a `connectors.base` error in `_translate_http_error` / `_translate_exception`,
  and nowhere else. Messages carry method, path, status and Jira's own error text, never credentials.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import requests
from jira.resilientsession import ResilientSession
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import (
    PART_FIELDS,
    PART_NOTE,
    PART_REPLY,
    AllOrNothingCredentials,
    ApplyProgress,
    ApplyResult,
    ConfigurationError,
    ConnectorError,
    NotFound,
    Permanent,
    PostedComment,
    Transient,
    credential_given,
    fold_reply_times,
)
from connectors import http
from connectors.customer_data import DEFAULT_TTL_SECONDS, TtlCache
from connectors.http import DoNotRepeat, Redactor, error_for_status, error_for_transport, safe_to_repeat
from connectors.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from integration.model import Decision, Person, Ticket, ticket_reference
from matrix_config.schema import LEVEL_ATTRIBUTE, JiraField, Matrix

log = logging.getLogger(__name__)

VENDOR = "jira"
JSM_API = "/rest/servicedeskapi"
PAGE_SIZE = 100


# ------------------------------------------------------------------------------------------ settings
def _split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class JiraSettings(AllOrNothingCredentials, BaseSettings):
    vendor_label: ClassVar[str] = "Jira"
    env_prefix_label: ClassVar[str] = "JIRA_"
    missing_separator: ClassVar[str] = ", "

    """Jira/JSM API settings. URL, email and token are optional here so the settings always load;
    `build_from_env` returns None (dry run) when none of them is set and raises ConfigurationError when
    only some are."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    url: str | None = Field(None, alias="JIRA_URL")  # https://your-domain.atlassian.net
    email: str | None = Field(None, alias="JIRA_EMAIL")  # the API user's login email (basic auth with the token)
    api_token: SecretStr | None = Field(None, alias="JIRA_API_TOKEN")
    project_keys_csv: str = Field("", alias="JIRA_PROJECT_KEYS")  # comma-separated, e.g. "SUP,OPS"
    api_version: int = Field(3, alias="JIRA_API_VERSION", ge=2, le=3)  # platform REST API version
    account_id: str | None = Field(None, alias="JIRA_ACCOUNT_ID")  # skip the `myself` lookup when set
    # Site-specific custom field ids of JSM's own fields (Jira admin > Issues > Custom fields).
    organization_field: str | None = Field(None, alias="JIRA_ORGANIZATION_FIELD")  # "Organizations"
    request_type_field: str | None = Field(None, alias="JIRA_REQUEST_TYPE_FIELD")  # "Request Type"
    # Status names (case-insensitive) with a neutral meaning beyond their status category.
    pending_statuses_csv: str = Field("Waiting for customer", alias="JIRA_PENDING_STATUSES")
    on_hold_statuses_csv: str = Field("Pending", alias="JIRA_ON_HOLD_STATUSES")
    closed_statuses_csv: str = Field("Closed,Canceled,Cancelled", alias="JIRA_CLOSED_STATUSES")
    # JQL without a zone is read in the API user's time zone; None = take it from `myself`.
    timezone_name: str | None = Field(None, alias="JIRA_TIMEZONE")
    timeout_seconds: float = Field(30.0, alias="JIRA_TIMEOUT_SECONDS", gt=0)
    # Other bots/apps whose public comments must not count as an agent's acknowledgement (account ids).
    non_agent_accounts_csv: str = Field("", alias="JIRA_NON_AGENT_ACCOUNTS")
    # JSM SLA metric names per matrix clock, when the project's differ from the defaults, e.g.
    # "acknowledge=Time to first response,resolve=Time to resolution" (see connectors.jira_sla).
    sla_metrics_csv: str = Field("", alias="JIRA_SLA_METRICS")
    # How long a JSM organization's properties (matrix `organization_property`) are reused before they are
    # read again.
    customer_data_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, alias="JIRA_CUSTOMER_DATA_TTL_SECONDS", gt=0)

    @property
    def project_keys(self) -> list[str]:
        return _split_list(self.project_keys_csv)

    @property
    def has_credentials(self) -> bool:
        return not self.missing_settings()

    def credential_settings_given(self) -> list[str]:
        """Names of the JIRA_* credential settings that are set (names only, never values)."""
        values = {"JIRA_URL": self.url, "JIRA_EMAIL": self.email, "JIRA_API_TOKEN": self.api_token}
        return [name for name, value in values.items() if credential_given(value)]

    def missing_settings(self) -> list[str]:
        given = self.credential_settings_given()
        return [name for name in ("JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN") if name not in given]

    def describe(self) -> str:
        """One line for the start-up banner: mode, identity and site; never the token."""
        if not self.credential_settings_given():
            return "dry run (no JIRA_* credentials): issues are read from webhooks, nothing is written"
        missing = self.missing_settings()
        if missing:
            return f"incomplete settings (missing {', '.join(missing)})"
        parts = urlsplit(str(self.url))
        where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"live as {self.email} on {where}"

    @property
    def sla_metric_names(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in _split_list(self.sla_metrics_csv) if "=" in item)
        return {clock.strip(): name.strip() for clock, name in pairs}

    def redactor(self) -> Redactor:
        """What must never appear in a message: the token and the login email in every encoded form, and
        the Basic credential the client sends (`base64("email:TOKEN")`)."""
        token = self.api_token.get_secret_value() if self.api_token is not None else ""
        return Redactor([token, self.email], basic_credentials=[(str(self.email), token)] if self.email else [])

    def status_config(self) -> "StatusConfig":
        return StatusConfig(
            pending=frozenset(s.lower() for s in _split_list(self.pending_statuses_csv)),
            on_hold=frozenset(s.lower() for s in _split_list(self.on_hold_statuses_csv)),
            closed=frozenset(s.lower() for s in _split_list(self.closed_statuses_csv)),
        )


@dataclass(frozen=True)
class StatusConfig:
    pending: frozenset[str] = frozenset({"waiting for customer"})
    on_hold: frozenset[str] = frozenset({"pending"})
    closed: frozenset[str] = frozenset({"closed", "canceled", "cancelled"})


@dataclass(frozen=True)
class NormalizeOptions:
    """What normalization needs beyond the matrix (all from JiraSettings)."""

    server_url: str | None = None
    statuses: StatusConfig = StatusConfig()
    organization_field: str | None = None
    request_type_field: str | None = None
    own_account_id: str | None = None
    non_agents: frozenset[str] = frozenset()  # account ids whose public comments are not agent replies

    @classmethod
    def from_settings(cls, settings: JiraSettings, own_account_id: str | None = None) -> "NormalizeOptions":
        return cls(
            server_url=(settings.url or "").rstrip("/") or None,
            statuses=settings.status_config(),
            organization_field=settings.organization_field,
            request_type_field=settings.request_type_field,
            own_account_id=own_account_id or settings.account_id,
            non_agents=frozenset(_split_list(settings.non_agent_accounts_csv)),
        )


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


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _to_matrix_value(plain: Any, mapping: JiraField) -> Any:
    """Jira option value -> matrix value via `values` (matrix value -> Jira value); unmapped values pass as is."""
    if isinstance(plain, list):
        return [_to_matrix_value(v, mapping) for v in plain]
    for matrix_value, jira_value in mapping.values.items():
        if _same(jira_value, plain):
            return matrix_value
    return plain


def _to_jira_value(value: Any, mapping: JiraField) -> Any:
    if isinstance(value, (list, tuple)):
        return [_to_jira_value(v, mapping) for v in value]
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
        if _same(jira_name, name):
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
        if group.jira is not None and _same(group.jira, value):
            return key
    # A Team field may come back as an object whose id we configured while `name` was read first.
    if isinstance(raw, dict):
        for key, group in matrix.groups.items():
            if group.jira is not None and any(_same(group.jira, v) for v in raw.values() if isinstance(v, str)):
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
            values[name] = None if raw_label is None else _to_matrix_value(raw_label, jira)
        elif jira.field in fields:
            values[name] = _to_matrix_value(jira_value_to_plain(fields.get(jira.field)), jira)
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


# ------------------------------------------------------------------------------------------ errors
def _jira_error_text(response: requests.Response | None, redact: Redactor) -> str:
    """Jira's own words from an error body, redacted before they are shortened (a cut never leaves part
    of a secret behind)."""
    if response is None:
        return ""
    try:
        data = response.json()
    except (requests.JSONDecodeError, json.JSONDecodeError):
        text = (response.text or "").strip()
        return redact(text)[:300]
    if not isinstance(data, dict):
        return ""
    parts: list[str] = []
    messages = data.get("errorMessages") or []
    if isinstance(messages, list):
        parts.extend(str(m) for m in messages)
    errors = data.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{k}: {v}" for k, v in errors.items())
    elif isinstance(errors, list):  # JSM ErrorResponse uses errorMessage / i18nErrorMessage
        parts.extend(str(e) for e in errors)
    for key in ("errorMessage", "message"):
        if data.get(key):
            parts.append(str(data[key]))
    return redact("; ".join(parts))[:500]


def _translate_http_error(method: str, path: str, response: requests.Response, redact: Redactor) -> ConnectorError:
    """A Jira/JSM HTTP error response through the one status table (`connectors.http.error_for_status`).

    Jira rejects a field edit as a whole (400 names the offending fields, nothing is stored) and a
    refused comment is not posted."""
    status = response.status_code
    detail = _jira_error_text(response, redact)
    message = f"jira {method} {path}: HTTP {status}" + (f": {detail}" if detail else "")
    error = error_for_status(status, response.headers.get("Retry-After"), default=message, messages={
        # Never the request's headers; Jira's own text only after the credentials are redacted from it.
        http.UNAUTHORIZED: f"jira {method} {path}: HTTP {status}: credentials rejected or not permitted "
                           "(check JIRA_EMAIL / JIRA_API_TOKEN and the API user's project permissions)"
                           + (f": {detail}" if detail else ""),
    })
    return error if error is not None else Permanent(message)


def _translate_exception(method: str, path: str, error: BaseException, redact: Redactor) -> ConnectorError:
    """THE mapping from client/transport exceptions (jira.JIRAError, requests errors) to our error types."""
    from jira.exceptions import JIRAError

    if isinstance(error, ConnectorError):
        return error
    if isinstance(error, JIRAError):
        if error.response is not None and getattr(error.response, "status_code", None):
            return _translate_http_error(method, path, error.response, redact)
        if error.status_code:
            return Transient(f"jira {method} {path}: HTTP {error.status_code}") if error.status_code >= 500 else \
                Permanent(f"jira {method} {path}: HTTP {error.status_code}")
        return Transient(f"jira {method} {path}: {redact(str(error.text or 'no response'))}")
    # A reset or "Connection aborted" is a ConnectionError too, but may come after Jira read (and acted on)
    # the request.
    mapped = error_for_transport(error, messages={
        http.UNREADABLE: f"jira {method} {path}: unreadable response",  # a 2xx whose body is not JSON
        http.NOT_CONNECTED: f"jira {method} {path}: could not connect ({type(error).__name__})",
        http.TIMED_OUT: f"jira {method} {path}: timed out",
        http.CONNECTION_FAILED: f"jira {method} {path}: connection failed",
        http.REQUEST_FAILED: f"jira {method} {path}: {type(error).__name__}",
    })
    if mapped is None:
        raise error  # anything else is our own bug: it propagates as itself, never retried as a vendor error
    return mapped


# ------------------------------------------------------------------------------------------ connector
@dataclass
class _Identity:
    account_id: str | None = None
    time_zone: str | None = None


class JiraConnector:
    vendor = VENDOR

    def __init__(
        self,
        settings: JiraSettings,
        matrix: Any,
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        from jira import JIRA

        if not settings.has_credentials:
            raise Permanent("jira: JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN are required")
        self.settings = settings
        self.matrix: Matrix = getattr(matrix, "matrix", matrix)
        self.retry_policy = retry_policy
        self.api_version = int(settings.api_version)
        self.base_url = str(settings.url).rstrip("/")
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        self._redact = settings.redactor()
        # No request here: get_server_info=False, validate=False, check_update off. max_retries=0 makes
        # ResilientSession try exactly once (its loop runs while retry_number <= max_retries).
        self.client = JIRA(
            server=self.base_url,
            options={"rest_api_version": str(self.api_version), "check_update": False},
            basic_auth=(str(settings.email), token),
            get_server_info=False,
            validate=False,
            max_retries=0,
            timeout=settings.timeout_seconds,
        )
        if session is not None:
            # A caller-supplied session (proxy, custom adapters): give it the client's auth and headers and
            # let the client use it too. A plain requests.Session never retries on its own.
            if session.auth is None:
                session.auth = self.client._session.auth
            for name, value in self.client._session.headers.items():
                session.headers.setdefault(name, value)
            self.client._session = session  # type: ignore[assignment]
        self.session: requests.Session = self.client._session
        self._identity: _Identity | None = None
        self._field_schemas: dict[str, dict[str, Any]] = {}
        self._all_fields_loaded = False
        self._customer_data = TtlCache(timedelta(seconds=settings.customer_data_ttl_seconds), clock)

    # ---- transport -------------------------------------------------------------------------------
    def _platform(self, path: str) -> str:
        return f"/rest/api/{self.api_version}/{path.lstrip('/')}"

    def _once(self, method: str, path: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except ConnectorError:
            raise
        except Exception as exc:  # translated once, here
            error = _translate_exception(method, path, exc, self._redact)
            if isinstance(error, Transient) and not safe_to_repeat(method, error):
                raise DoNotRepeat(error) from None
            raise error from None
        if isinstance(result, requests.Response) and not result.ok:
            error = _translate_http_error(method, path, result, self._redact)
            if isinstance(error, Transient) and not safe_to_repeat(method, error):
                raise DoNotRepeat(error)
            raise error
        return result

    def _with_retry(self, method: str, path: str, call: Callable[[], Any]) -> Any:
        try:
            return call_with_retry(self._once, method, path, call, policy=self.retry_policy)
        except DoNotRepeat as wrapped:
            raise wrapped.error from None

    def _request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> requests.Response:
        url = self.base_url + path

        extra: dict[str, Any] = {}
        if not isinstance(self.session, ResilientSession):
            extra["timeout"] = self.settings.timeout_seconds  # ResilientSession adds its own
        def send() -> requests.Response:
            return self.session.request(method, url, params=params, json=json, **extra)

        return self._with_retry(method, path, send)

    def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self._request("GET", path, params=params)
        try:
            return response.json()
        except (requests.JSONDecodeError, json.JSONDecodeError):
            raise Transient(f"jira GET {path}: unreadable response") from None

    # ---- identity ---------------------------------------------------------------------------------
    def _myself(self) -> _Identity:
        if self._identity is None:
            path = self._platform("myself")
            data = self._with_retry("GET", path, self.client.myself)
            self._identity = _Identity(account_id=data.get("accountId"), time_zone=data.get("timeZone"))
        return self._identity

    def own_user_id(self) -> str | None:
        if self.settings.account_id:
            return self.settings.account_id
        return self._myself().account_id

    def _jql_timezone(self) -> timezone | Any:
        from zoneinfo import ZoneInfo

        name = self.settings.timezone_name or self._myself().time_zone
        try:
            return ZoneInfo(name) if name else timezone.utc
        except Exception:
            return timezone.utc

    # ---- reading ------------------------------------------------------------------------------------
    def _issue_fields(self) -> list[str]:
        names = ["summary", "status", "priority", "labels", "reporter", "assignee", "created", "updated",
                 "issuetype", "project"]
        for mapping in self.matrix.fields.values():
            if mapping.jira is not None and mapping.jira.field:
                names.append(mapping.jira.field)
        for extra in (self.matrix.vendors.jira.group_field, self.settings.organization_field,
                      self.settings.request_type_field):
            if extra:
                names.append(extra)
        return list(dict.fromkeys(names))

    def _normalize_options(self) -> NormalizeOptions:
        return NormalizeOptions.from_settings(self.settings, own_account_id=self.own_user_id())

    def _fetch_issue(self, key: str) -> dict[str, Any]:
        path = self._platform(f"issue/{key}")
        # expand=schema returns each field's type with the issue: apply() needs it to shape edit values.
        # expand=changelog returns the recent history, newest first, in the same request: when an agent set
        # the level, the level's clocks start at that change (Ticket.level_set_at), with no extra call.
        issue = self._with_retry(
            "GET", path,
            lambda: self.client.issue(key, fields=",".join(self._issue_fields()), expand="schema,changelog"),
        )
        raw = dict(issue.raw)
        for field_id, schema in (raw.get("schema") or {}).items():
            self._field_schemas[field_id] = schema
        return raw

    def public_comments(self, key: str) -> list[dict[str, Any]]:
        """Public JSM comments. `public` and `internal` both default to true in this endpoint, so asking for
        public ones alone needs `internal=false` too."""
        path = f"{JSM_API}/request/{key}/comment"
        comments: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self._get_json(path, {"public": "true", "internal": "false", "start": start, "limit": PAGE_SIZE})
            values = page.get("values") or []
            comments.extend(c for c in values if c.get("public") is True)
            if page.get("isLastPage", True) or not values:
                return comments
            start += len(values)

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        """The issue (one GET) and its public JSM comments (one GET per 100), normalized.

        Acknowledgement comes from JSM's request comments rather than the platform `comment` field: the
        `public` flag there is JSM's own notion (what the customer sees), it filters server-side, and it is
        the same endpoint the connector writes replies through. An issue that is not a JSM request (404 on
        the servicedeskapi) has no customer-visible replies."""
        raw = self._fetch_issue(ticket_id)
        try:
            comments = self.public_comments(ticket_id)
        except NotFound:
            log.warning("jira %s is not a JSM request; no public replies can be read", ticket_id)
            comments = []
        ticket = ticket_from_issue(raw, self.matrix, self._normalize_options(), comments)
        properties = self._organization_properties(raw)
        return ticket.with_(fields={**ticket.fields, **properties}) if properties else ticket

    def _organization_properties(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Matrix attributes mapped to `organization_property`: the property of the request's first
        organization (JIRA_ORGANIZATION_FIELD), `GET /rest/servicedeskapi/organization/{id}/property/{key}`,
        each at most once per organization and key per JIRA_CUSTOMER_DATA_TTL_SECONDS. A property the
        organization does not have (404) is an empty attribute."""
        mapped = {name: m.jira for name, m in self.matrix.fields.items()
                  if m.jira is not None and m.jira.organization_property is not None}
        field_id = self.settings.organization_field
        if not mapped or not field_id:
            return {}
        organizations = (raw.get("fields") or {}).get(field_id) or []
        first = organizations[0] if isinstance(organizations, list) and organizations else None
        organization_id = first.get("id") if isinstance(first, Mapping) else None
        if organization_id is None:
            return {}
        out: dict[str, Any] = {}
        for name, jira in mapped.items():
            key = str(jira.organization_property)
            path = f"{JSM_API}/organization/{organization_id}/property/{key}"

            def load(path: str = path) -> Any:
                try:
                    return (self._get_json(path) or {}).get("value")
                except NotFound:
                    return None

            value = self._customer_data.get_or_load(("organization", str(organization_id), key), load)
            if isinstance(value, Mapping):
                # A property written as {"value": ...} or {"name": ...} by an admin's script.
                value = jira_value_to_plain(value)
            if value not in (None, ""):
                out[name] = _to_matrix_value(value, jira)
        return out

    # ---- field metadata -------------------------------------------------------------------------------
    def all_fields(self) -> list[dict[str, Any]]:
        fields = self._get_json(self._platform("field"))
        for item in fields:
            if item.get("id") and item.get("schema"):
                self._field_schemas[item["id"]] = item["schema"]
        self._all_fields_loaded = True
        return fields

    def _schema_for(self, field_id: str) -> dict[str, Any]:
        if field_id not in self._field_schemas and not self._all_fields_loaded:
            self.all_fields()
        if field_id not in self._field_schemas:
            raise Permanent(f"jira: field {field_id} does not exist (check the matrix `fields:` mapping)")
        return self._field_schemas[field_id]

    # ---- writing -------------------------------------------------------------------------------------
    def edit_body(self, ticket: Ticket, decision: Decision) -> dict[str, Any]:
        """The `PUT /issue/{key}` body for the decision's differences from `ticket`; {} when none."""
        jira_vendor = self.matrix.vendors.jira
        set_fields: dict[str, Any] = {}
        add_labels = [t for t in decision.add_tags if t not in ticket.tags]
        remove_labels = [t for t in decision.remove_tags if t in ticket.tags and t not in add_labels]

        if decision.priority and decision.priority != ticket.priority:
            name = jira_vendor.priorities.get(decision.priority)  # type: ignore[call-overload]
            if not name:
                raise Permanent(f"jira: no Jira priority configured for {decision.priority!r} (vendors.jira.priorities)")
            set_fields["priority"] = {"name": name}

        if decision.owner_group and decision.owner_group != ticket.group:
            group = self.matrix.groups.get(decision.owner_group)
            if group is None or not group.jira:
                raise Permanent(f"jira: group {decision.owner_group!r} has no `jira:` id in the matrix")
            if not jira_vendor.group_field:
                raise Permanent("jira: vendors.jira.group_field is not set; cannot assign the owner group")
            set_fields[jira_vendor.group_field] = group_field_value(group.jira, jira_vendor.group_field_kind)

        for name, value in decision.field_updates.items():
            mapping = self.matrix.fields.get(name)
            jira = mapping.jira if mapping else None
            if jira is None:
                log.warning("jira: matrix field %s has no jira mapping; not written", name)
                continue
            if jira.organization_property is not None:
                raise Permanent(f"jira: matrix field {name!r} is an organization property; the service only reads it")
            if _same(ticket.fields.get(name), value):
                continue
            jira_value = _to_jira_value(value, jira)
            if jira.label_prefix is not None:
                prefix = jira.label_prefix.lower()
                new_label = f"{jira.label_prefix}{jira_value}" if value not in (None, "") else None
                for label in ticket.tags:
                    if label.lower().startswith(prefix) and label != new_label and label not in remove_labels:
                        remove_labels.append(label)
                if new_label and new_label not in ticket.tags and new_label not in add_labels:
                    add_labels.append(new_label)
            else:
                schema = self._schema_for(str(jira.field))
                set_fields[str(jira.field)] = encode_field_value(jira_value, schema, self.api_version)

        body: dict[str, Any] = {}
        if set_fields:
            body["fields"] = set_fields
        operations = [{"add": label} for label in add_labels] + [{"remove": label} for label in remove_labels]
        if operations:
            body["update"] = {"labels": operations}
        return body

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        """One field edit (when anything changes), then the public reply, then the internal note.
        Zero requests when the decision changes nothing on the ticket. Before every request after the
        first, `progress` hears the parts Jira has confirmed and the part the next request carries.

        `sent` of a raised error: once an earlier write of this apply succeeded (or failed with an
        unknown outcome), every error raised says `sent=None`: something may be on the ticket already."""
        result = ApplyResult()
        key = ticket.id
        body = self.edit_body(ticket, decision)
        maybe_written = False

        def write(method: str, path: str, payload: dict[str, Any], part: str) -> requests.Response:
            nonlocal maybe_written
            if result.requests and progress is not None:
                progress(list(result.parts), [part])
            try:
                response = self._request(method, path, json=payload)
            except ConnectorError as error:
                if maybe_written:
                    error.sent = None
                raise
            maybe_written = True
            return response

        if body:
            path = self._platform(f"issue/{key}")
            response = write("PUT", path, body, PART_FIELDS)
            result.writes += 1
            result.requests.append({"method": "PUT", "path": path, "status": response.status_code})
            result.parts.append(PART_FIELDS)
        # JSM comment bodies are plain text (wiki markup), also on API v3 where platform comments need ADF.
        for text, public in ((decision.public_reply, True), (decision.internal_note, False)):
            if not text:
                continue
            path = f"{JSM_API}/request/{key}/comment"
            response = write("POST", path, {"body": text, "public": public}, PART_REPLY if public else PART_NOTE)
            result.writes += 1
            result.requests.append({"method": "POST", "path": path, "status": response.status_code,
                                    "public": public})
            result.parts.append(PART_REPLY if public else PART_NOTE)
        return result

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment]:
        """The integration user's JSM comments (public and internal) created strictly after `since`:
        what crash recovery looks for before sending a reply or note again."""
        path = f"{JSM_API}/request/{ticket_id}/comment"
        own = self.own_user_id()
        posted: list[PostedComment] = []
        start = 0
        while True:
            page = self._get_json(path, {"public": "true", "internal": "true", "start": start, "limit": PAGE_SIZE})
            values = page.get("values") or []
            for comment in values:
                created = parse_jira_time(comment.get("created"))
                if (comment.get("author") or {}).get("accountId") != own:
                    continue
                if since is not None and (created is None or created <= since):
                    continue
                posted.append(PostedComment(body=str(comment.get("body") or ""), public=comment.get("public") is True,
                                            created_at=created))
            if page.get("isLastPage", True) or not values:
                return posted
            start += len(values)

    # ---- catch-up ----------------------------------------------------------------------------------------
    def search(self, jql: str, fields: Sequence[str], page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """`GET /rest/api/3/search/jql`, following `nextPageToken` until `isLast`."""
        path = self._platform("search/jql")
        token: str | None = None
        while True:
            params: dict[str, Any] = {"jql": jql, "fields": ",".join(fields), "maxResults": page_size}
            if token:
                params["nextPageToken"] = token
            page = self._get_json(path, params)
            yield from page.get("issues") or []
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return

    def _project_clause(self) -> str:
        keys = self.settings.project_keys
        return f"project in ({', '.join(_jql_quote(k) for k in keys)}) AND " if keys else ""

    def changed_since(self, watermark: str | None) -> Iterator[tuple[str, str]]:
        """Issues updated at or after the watermark (an ISO-8601 instant), oldest first.

        JQL dates have minute precision and are read in the API user's time zone, so the watermark is
        converted to that zone and floored to the minute: the boundary issues come again on the next scan,
        which the idempotent pipeline absorbs. None starts one day back."""
        since = parse_jira_time(watermark) if watermark else None
        if since is None:
            since = datetime.now(timezone.utc) - timedelta(days=1)
        local = since.astimezone(self._jql_timezone())
        jql = f'{self._project_clause()}updated >= "{local:%Y/%m/%d %H:%M}" ORDER BY updated ASC'
        for issue in self.search(jql, ["updated"]):
            updated = parse_jira_time((issue.get("fields") or {}).get("updated"))
            mark = updated.astimezone(timezone.utc).isoformat() if updated else since.isoformat()
            yield str(issue.get("key")), mark


def _jql_quote(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------ factories
def build_from_env(matrix: Any, *, database_url: str | None = None, redis_url: str | None = None,
                   **kwargs: Any) -> JiraConnector | None:
    """The connector from JIRA_* environment variables, or None (dry run) when none of JIRA_URL,
    JIRA_EMAIL, JIRA_API_TOKEN is set. Raises ConfigurationError when only some are. `database_url` and
    `redis_url` are accepted for symmetry with the Zendesk factory and unused: Jira Cloud's limits are
    cost-based and answered with 429 + Retry-After, so there is no client-side budget to share."""
    settings = JiraSettings()
    if not settings.check_complete():
        return None
    return JiraConnector(settings, matrix, **kwargs)


def snapshot_from_webhook(payload: dict[str, Any], matrix: Any, *, previous: Ticket | None = None) -> Ticket | None:
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
    matrix = getattr(matrix, "matrix", matrix)
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


# ------------------------------------------------------------------------------------------ remote validation
def _paged_values(connector: JiraConnector, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Jira's startAt/maxResults/isLast pages."""
    values: list[dict[str, Any]] = []
    start = 0
    while True:
        page = connector._get_json(path, {**(params or {}), "startAt": start, "maxResults": 50})
        batch = page.get("values") or []
        values.extend(batch)
        if page.get("isLast", True) or not batch:
            return values
        start += len(batch)


def _field_options(connector: JiraConnector, field_id: str) -> set[str]:
    options: set[str] = set()
    for context in _paged_values(connector, connector._platform(f"field/{field_id}/context")):
        for option in _paged_values(connector, connector._platform(f"field/{field_id}/context/{context['id']}/option")):
            if option.get("value") is not None:
                options.add(str(option["value"]).lower())
    return options


def remote_problems(connector: JiraConnector, matrix: Matrix) -> list[str]:
    """Everything the matrix names on the Jira side that the site does not have, one line per item."""
    problems: list[str] = []
    jira_vendor = matrix.vendors.jira

    priorities = {str(p.get("name", "")).lower() for p in _paged_values(connector, connector._platform("priority/search"))}
    for neutral, name in jira_vendor.priorities.items():
        if name.lower() not in priorities:
            problems.append(f"vendors.jira.priorities.{neutral}: Jira has no priority named {name!r}")

    fields = {f["id"]: f for f in connector.all_fields() if f.get("id")}

    def field_problem(where: str, field_id: str) -> bool:
        if field_id not in fields:
            problems.append(f"{where}: Jira has no field {field_id!r}")
            return True
        return False

    option_kinds = ("option", "option-with-child")
    for name, mapping in matrix.fields.items():
        jira = mapping.jira
        if jira is None or jira.field is None or field_problem(f"fields.{name}.jira.field", jira.field):
            continue
        schema = fields[jira.field].get("schema") or {}
        is_option = schema.get("type") in option_kinds or (
            schema.get("type") == "array" and schema.get("items") == "option")
        if not is_option:
            continue
        wanted = list(jira.values.values())
        if name == LEVEL_ATTRIBUTE:
            wanted += [jira.values.get(level.id, level.id) for level in matrix.levels]
        if not wanted:
            continue
        options = _field_options(connector, jira.field)
        for value in dict.fromkeys(str(v) for v in wanted):
            if value.lower() not in options:
                problems.append(f"fields.{name}.jira: field {jira.field} has no option {value!r}")

    settings = connector.settings
    for env_name, field_id in (("JIRA_ORGANIZATION_FIELD", settings.organization_field),
                               ("JIRA_REQUEST_TYPE_FIELD", settings.request_type_field)):
        if field_id:
            field_problem(env_name, field_id)
    # JSM organization properties have no site-wide schema (each organization holds its own keys), so
    # only the way to the organizations can be checked.
    for name, mapping in matrix.fields.items():
        if mapping.jira is not None and mapping.jira.organization_property is not None \
                and not settings.organization_field:
            problems.append(f"fields.{name}.jira.organization_property: JIRA_ORGANIZATION_FIELD is not set, so "
                            "the request's organizations (and their properties) cannot be read")

    group_ids = {key: g.jira for key, g in matrix.groups.items() if g.jira}
    for key, group in matrix.groups.items():
        if not group.jira:
            problems.append(f"groups.{key}.jira: no Jira id given")
    group_field = jira_vendor.group_field
    kind = jira_vendor.group_field_kind
    if not group_field and group_ids:
        problems.append("vendors.jira.group_field: not set; owner groups cannot be assigned on Jira")
    if group_field and field_problem("vendors.jira.group_field", group_field):
        group_field = None
    if kind == "group" and group_ids:
        names = sorted(set(group_ids.values()))
        found: set[str] = set()
        for start in range(0, len(names), 50):
            batch = names[start:start + 50]
            found |= {str(g.get("name", "")).lower()
                      for g in _paged_values(connector, connector._platform("group/bulk"), {"groupName": batch})}
        for key, name in group_ids.items():
            if name.lower() not in found:
                problems.append(f"groups.{key}.jira: Jira has no group {name!r}")
    elif kind == "select" and group_field and group_ids:
        options = _field_options(connector, group_field)
        for key, value in group_ids.items():
            if value.lower() not in options:
                problems.append(f"groups.{key}.jira: field {group_field} has no option {value!r}")
    elif kind == "team" and group_field and group_ids:
        # No Jira REST API lists Atlassian teams; JQL rejects (400) a Team value that does not exist.
        number = group_field.removeprefix("customfield_")
        for key, team_id in group_ids.items():
            try:
                next(iter(connector.search(f"cf[{number}] = {_jql_quote(team_id)}", ["id"], page_size=1)), None)
            except Permanent as exc:
                problems.append(f"groups.{key}.jira: team {team_id!r} not accepted by Jira ({exc})")
    return problems


def check_remote(loaded_matrix: Any, *, connector: JiraConnector | None = None) -> list[str]:
    """`escalation validate --remote jira`: one error line per missing priority, field, option, group or team."""
    matrix: Matrix = getattr(loaded_matrix, "matrix", loaded_matrix)
    try:
        connector = connector or build_from_env(matrix)
    except ConfigurationError as exc:
        return [f"jira: {exc}"]
    if connector is None:
        return ["jira: set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN to validate against Jira"]
    try:
        return remote_problems(connector, matrix)
    except ConnectorError as exc:
        return [f"jira: remote validation stopped: {exc}"]
