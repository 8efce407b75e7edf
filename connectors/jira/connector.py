"""Jira Service Management connector (jira 3.10.5 client + the JSM `servicedeskapi`).

What goes through which door, and why (the transport is `connectors.jira.client.JiraClient`):

* Reads that are one request in the jira library's client go through it (`issue()`, `myself()`).
* Everything else is sent through the client's session with the exact URL and body we want:
  - the field edit: `Issue.update()` would reload the issue with a GET after the PUT (and translates
    `fields=` in ways we do not control), so we PUT `/rest/api/{2|3}/issue/{key}` ourselves;
  - the search: `enhanced_search_issues()` first loads `GET /rest/api/{v}/field` to translate field
    names, so we call `GET /rest/api/3/search/jql` (the current search; `/search` is deprecated) ourselves;
    it also reads a burst of issues at once (`fetch_tickets`: JQL `key in (...)`, the issue GET's fields);
  - comments: the client's `add_comment()` uses the platform API, where comments on a JSM issue are
    *public by default* and v3 bodies must be ADF. The JSM endpoint
    `POST /rest/servicedeskapi/request/{key}/comment` takes plain text and an explicit `"public"` flag.
* Every vendor error becomes a `connectors.base` error in `connectors.jira.client` (over the one status
  and transport tables of `connectors.http`), and nowhere else. Messages carry method, path, status and
  Jira's own error text, never credentials.

The rest of the package: `settings` (JIRA_*), `mapping` (API JSON <-> Ticket), `webhook_snapshot` (dry
runs), `remote` (`validate --remote jira`), `sla` (JSM SLA goals)."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence

from urllib.parse import urlsplit

import requests

from connectors.base import (
    PART_FIELDS,
    PART_NOTE,
    PART_REPLY,
    ApplyProgress,
    ApplyResult,
    ConnectorDefaults,
    ConnectorError,
    NotFound,
    Permanent,
    PostedComment,
)
from connectors.customer_data import TtlCache
from connectors.jira.client import JiraClient, jira_error_messages
from connectors.jira.mapping import (
    encode_field_value,
    group_field_value,
    is_resolved,
    jira_value_to_plain,
    parse_jira_time,
    same_value,
    satisfaction_from_feedback,
    ticket_from_issue,
    to_jira_value,
    to_matrix_value,
)
from connectors.jira.settings import JSM_API, PAGE_SIZE, VENDOR, JiraSettings, NormalizeOptions
from connectors.ratelimit import RateLimiter, limiter_for
from connectors.retry import DEFAULT_POLICY, RetryPolicy
from integration.model import Decision, Ticket
from matrix_config.schema import Matrix

log = logging.getLogger(__name__)
FEEDBACK_KEPT = timedelta(days=7)  # a rated request's rating is reused this long per connector process
# Every issue read, alone or in bulk, asks for the same expansions (with the same `fields`), so a bulk-read
# issue normalizes to the very Ticket its own GET gives. schema: each field's type, which apply() needs to
# shape edit values. changelog: the recent history, in the same request (Ticket.level_set_at).
ISSUE_EXPAND = "schema,changelog"
# Keys per JQL `key in (...)` and issues per search page: the enhanced search returns at most 100 issues
# a page when fields are asked for (fewer with heavy expansions: the pages are followed by nextPageToken).
KEYS_PER_SEARCH = 100
# A Jira issue key: the project key (an uppercase letter, then uppercase letters, digits or underscores)
# and the issue number. Only text of this shape is ever put into JQL.
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]*")


# ------------------------------------------------------------------------------------------ connector
@dataclass
class _Identity:
    account_id: str | None = None
    time_zone: str | None = None


class JiraConnector(ConnectorDefaults):
    vendor = VENDOR  # the changelog comes with the issue GET: no history request of its own

    def __init__(
        self,
        settings: JiraSettings,
        matrix: Matrix,
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        rate_limiter: RateLimiter | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
    ):
        if not settings.has_credentials:
            raise Permanent("jira: JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN are required")
        self.settings = settings
        self.matrix = matrix
        # The site's request budget: `rate_limiter`, else shared through Redis / PostgreSQL like Zendesk's
        # (connectors.ratelimit.limiter_for), else one of this process.
        limiter = rate_limiter if rate_limiter is not None else limiter_for(
            f"jira:{urlsplit(str(settings.url)).hostname or settings.url}", settings.requests_per_minute,
            redis_url=redis_url, database_url=database_url)
        self.client = JiraClient(settings, session=session, retry_policy=retry_policy, rate_limiter=limiter)
        self._identity: _Identity | None = None
        self._field_schemas: dict[str, dict[str, Any]] = {}
        self._all_fields_loaded = False
        self._customer_data = TtlCache(timedelta(seconds=settings.customer_data_ttl_seconds), clock)
        # JSM request feedback, once read with a rating: a customer rates a request once, so a later pass on
        # the same resolved request reuses it instead of asking again. "No feedback yet" is never cached.
        self._feedback = TtlCache(FEEDBACK_KEPT, clock)

    # ---- identity ---------------------------------------------------------------------------------
    def _myself(self) -> _Identity:
        if self._identity is None:
            path = self.client.platform("myself")
            data = self.client.call("GET", path, self.client.jira.myself)
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
        path = self.client.platform(f"issue/{key}")
        # expand=changelog: when an agent set the level, the level's clocks start at that change
        # (Ticket.level_set_at), with no extra call.
        issue = self.client.call(
            "GET", path,
            lambda: self.client.jira.issue(key, fields=",".join(self._issue_fields()), expand=ISSUE_EXPAND),
        )
        raw = dict(issue.raw)
        self._remember_schemas(raw.get("schema"))
        return raw

    def _remember_schemas(self, schemas: Any) -> None:
        """Field types Jira sent with a read (`expand=schema`): per issue on a GET, per page on a search."""
        if isinstance(schemas, Mapping):
            for field_id, schema in schemas.items():
                self._field_schemas[field_id] = schema

    def public_comments(self, key: str) -> list[dict[str, Any]]:
        """Public JSM comments. `public` and `internal` both default to true in this endpoint, so asking for
        public ones alone needs `internal=false` too."""
        path = f"{JSM_API}/request/{key}/comment"
        comments: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self.client.get_json(path, {"public": "true", "internal": "false", "start": start, "limit": PAGE_SIZE})
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
        return self._ticket_from_read(ticket_id, self._fetch_issue(ticket_id))

    def _ticket_from_read(self, key: str, raw: Mapping[str, Any]) -> Ticket:
        """The Ticket of an issue as read (alone or in bulk): its public JSM comments, and once resolved its
        feedback, and its organization's properties are read per issue, the same way for both."""
        try:
            comments = self.public_comments(key)
        except NotFound:
            log.warning("jira %s is not a JSM request; no public replies can be read", key)
            comments = []
        ticket = ticket_from_issue(raw, self.matrix, self._normalize_options(), comments)
        if is_resolved(raw):
            ticket = ticket.with_(satisfaction=self._satisfaction(ticket.id))
        properties = self._organization_properties(raw)
        return ticket.with_(fields={**ticket.fields, **properties}) if properties else ticket

    def fetch_tickets(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        """Many issues with one search per KEYS_PER_SEARCH keys (`GET /rest/api/{v}/search/jql`, JQL
        `key in (...)`, the `fields` and `expand` of the issue GET) instead of one issue GET each; their JSM
        comments (and feedback, organization properties) are still read per issue, as `fetch_ticket` does.

        Left out, so that each pass reads its issue alone and meets the proper error there: ids that are not
        issue keys (never put into JQL), keys Jira does not return (deleted, moved to another key, not
        visible to the API user), and, once a per-issue read fails, that issue and every one after it (a
        failure there, e.g. the budget running out, would repeat for each; their passes retry as usual)."""
        keys = list(dict.fromkeys(str(t) for t in ticket_ids))
        searchable = [k for k in keys if is_issue_key(k)]
        if len(searchable) < len(keys):
            log.warning("jira: %d ticket id(s) are not issue keys and are read one by one",
                        len(keys) - len(searchable))
        out: dict[str, Ticket] = {}
        for start in range(0, len(searchable), KEYS_PER_SEARCH):
            for key, raw in self._issues_by_key(searchable[start:start + KEYS_PER_SEARCH]).items():
                try:
                    out[key] = self._ticket_from_read(key, raw)
                except ConnectorError as error:
                    log.info("jira %s: read in bulk, then %s; it and the issues after it are read by their "
                             "passes", key, error)
                    return out
        return out

    def _issues_by_key(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The raw issues of `keys` Jira returns, by key. A search whose JQL names a key Jira does not know
        (or the API user may not see) is refused as a whole: 400 "An issue with key 'SUP-9' does not exist
        for field 'key'." (the enhanced search has no validateQuery=warn). Those keys are dropped and the
        rest asked again; a 400 naming none of them is raised."""
        remaining = list(keys)
        while remaining:
            refused: list[str] = []

            def note_refusal(response: requests.Response) -> None:
                if response.status_code == 400:
                    refused[:] = jira_error_messages(response)

            try:
                issues = list(self.search(issue_keys_jql(remaining), self._issue_fields(),
                                          page_size=KEYS_PER_SEARCH, expand=ISSUE_EXPAND, on_response=note_refusal))
            except Permanent:
                unknown = {k for k in remaining if any(f"'{k}'" in message for message in refused)}
                if not unknown:
                    raise
                log.info("jira: %d issue key(s) unknown to the search; their passes read them alone", len(unknown))
                remaining = [k for k in remaining if k not in unknown]
                continue
            wanted = set(remaining)
            # A moved issue comes back under its new key: left out, its own GET follows the move.
            return {str(issue.get("key")): issue for issue in issues if issue.get("key") in wanted}
        return {}

    def _satisfaction(self, key: str) -> str | None:
        """The request's CSAT rating, `GET /rest/servicedeskapi/request/{key}/feedback`, read only once the
        request is resolved (JSM asks for feedback on resolution) and, once rated, not again within
        FEEDBACK_KEPT. Jira answers 404 while the customer has not rated (or the issue is no JSM request):
        no rating, no error."""
        def load() -> str:
            rating = satisfaction_from_feedback(self.client.get_json(f"{JSM_API}/request/{key}/feedback"))
            if rating is None:
                raise NotFound(f"jira: request {key} has feedback without a 1..5 rating")
            return rating

        try:
            return self._feedback.get_or_load(("feedback", key), load)
        except NotFound:
            return None

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
                    return (self.client.get_json(path) or {}).get("value")
                except NotFound:
                    return None

            value = self._customer_data.get_or_load(("organization", str(organization_id), key), load)
            if isinstance(value, Mapping):
                # A property written as {"value": ...} or {"name": ...} by an admin's script.
                value = jira_value_to_plain(value)
            if value not in (None, ""):
                out[name] = to_matrix_value(value, jira)
        return out

    # ---- field metadata -------------------------------------------------------------------------------
    def all_fields(self) -> list[dict[str, Any]]:
        fields = self.client.get_json(self.client.platform("field"))
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
            if same_value(ticket.fields.get(name), value):
                continue
            jira_value = to_jira_value(value, jira)
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
                set_fields[str(jira.field)] = encode_field_value(jira_value, schema, self.client.api_version)

        body: dict[str, Any] = {}
        if set_fields:
            body["fields"] = set_fields
        operations = [{"add": label} for label in add_labels] + [{"remove": label} for label in remove_labels]
        if operations:
            body["update"] = {"labels": operations}
        return body

    def webhook_ticket_stamp(self, payload: bytes) -> datetime | None:
        """`issue.fields.updated` of an admin webhook's `jira:issue_created` / `jira:issue_updated` body (the
        issue after the change). Comment webhooks carry a partial issue, and the automation body's
        `occurredAt` is when the rule ran: None for those (the pass reads the issue)."""
        try:
            body = json.loads(payload)
        except (TypeError, ValueError, RecursionError):
            return None
        if not isinstance(body, dict) or body.get("webhookEvent") not in ("jira:issue_created", "jira:issue_updated"):
            return None
        issue = body.get("issue")
        fields = issue.get("fields") if isinstance(issue, dict) else None
        return parse_jira_time(fields.get("updated")) if isinstance(fields, dict) else None

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
                response = self.client.request(method, path, json=payload)
            except ConnectorError as error:
                if maybe_written:
                    error.sent = None
                raise
            maybe_written = True
            return response

        if body:
            path = self.client.platform(f"issue/{key}")
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
            page = self.client.get_json(path, {"public": "true", "internal": "true", "start": start, "limit": PAGE_SIZE})
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
    def search(self, jql: str, fields: Sequence[str], page_size: int = PAGE_SIZE, *, expand: str | None = None,
               on_response: Callable[[requests.Response], None] | None = None) -> Iterator[dict[str, Any]]:
        """`GET /rest/api/3/search/jql`, following `nextPageToken` until `isLast`."""
        path = self.client.platform("search/jql")
        token: str | None = None
        while True:
            params: dict[str, Any] = {"jql": jql, "fields": ",".join(fields), "maxResults": page_size}
            if expand:
                params["expand"] = expand
            if token:
                params["nextPageToken"] = token
            page = self.client.get_json(path, params, on_response=on_response)
            # expand=schema: the search sends the field types once per page, not per issue.
            self._remember_schemas(page.get("schema"))
            for issue in page.get("issues") or []:
                self._remember_schemas(issue.get("schema"))
                yield issue
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return

    def _project_clause(self) -> str:
        keys = self.settings.project_keys
        return f"project in ({', '.join(jql_quote(k) for k in keys)}) AND " if keys else ""

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


def jql_quote(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_issue_key(value: str) -> bool:
    return ISSUE_KEY.fullmatch(value) is not None


def issue_keys_jql(keys: Sequence[str]) -> str:
    """JQL for exactly these issues. Anything that is not an issue key is refused (ValueError), never quoted
    into the query."""
    bad = [k for k in keys if not is_issue_key(k)]
    if bad or not keys:
        raise ValueError(f"jira: not issue keys: {', '.join(repr(k)[:40] for k in bad[:3]) or 'none given'}")
    return f"key in ({', '.join(jql_quote(k) for k in keys)})"


# ------------------------------------------------------------------------------------------ factories
def build_from_env(matrix: Matrix, *, database_url: str | None = None, redis_url: str | None = None,
                   **kwargs: Any) -> JiraConnector | None:
    """The connector from JIRA_* environment variables, or None (dry run) when none of JIRA_URL,
    JIRA_EMAIL, JIRA_API_TOKEN is set. Raises ConfigurationError when only some are. `database_url` and
    `redis_url`: where the site's client-side request budget (JIRA_REQUESTS_PER_MINUTE) is shared."""
    settings = JiraSettings()
    if not settings.check_complete():
        return None
    return JiraConnector(settings, matrix, database_url=database_url, redis_url=redis_url, **kwargs)
