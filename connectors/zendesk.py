"""Zendesk Support connector: reads tickets into the neutral model and writes decisions back with as
few `PUT /api/v2/tickets/{id}` calls as Zendesk allows (one; two when a decision carries both a customer
reply and an internal note, because Zendesk takes one comment per update; zero when nothing changes).

HTTP: one `requests.Session` (`ZendeskClient`) carries every call, zenpy's included:
- its adapter has `max_retries=0` (zenpy's default adapter would retry 503s itself) and takes each request
  from the client-side budget (`connectors.ratelimit`) before sending;
- a response hook turns every non-2xx answer into a `connectors.base` error *inside* the session call,
  so zenpy's `_call_api` never sees a 429 and never runs its sleep-and-retry loop;
- zenpy is built with `proactive_ratelimit=None` and `ratelimit_budget=None` (its budget is a counter
  that is never refilled) and `disable_cache=True` (its object cache would serve stale tickets).
The only retry loop is `connectors.retry.call_with_retry` around each call.

zenpy is used for `users/me`. Ticket reads, the ticket PUT, lookups and the incremental export go
through the same session as plain JSON: zenpy's `Ticket` model cannot express `additional_tags` /
`remove_tags` / `safe_update` + `updated_stamp` (it serializes its own attribute set and `tags`), and
the neutral model needs the raw sideloads (users, organizations) anyway.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from requests.adapters import HTTPAdapter

from connectors.base import (
    PART_FIELDS,
    PART_NOTE,
    PART_REPLY,
    AllOrNothingCredentials,
    ApplyProgress,
    ApplyResult,
    ConfigurationError,
    Conflict,
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
from connectors.http import Redactor, budget_exhausted, error_for_status, error_for_transport
from connectors.ratelimit import RateLimiter, limiter_for
from connectors.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from integration.model import Decision, Person, Ticket, ticket_reference
from matrix_config.schema import LEVEL_ATTRIBUTE, PRIORITIES, Matrix, ZendeskField

log = logging.getLogger(__name__)

VENDOR = "zendesk"

# Zendesk status -> neutral status. Zendesk calls on-hold "hold".
_STATUS_FROM_ZENDESK = {"new": "new", "open": "open", "pending": "pending", "hold": "on_hold",
                        "on-hold": "on_hold", "on_hold": "on_hold", "solved": "solved", "closed": "closed"}
_AGENT_ROLES = {"agent", "admin"}
NOTE_CONFLICT_ROUNDS = 2  # re-sends of a decision's second (note-only) update after 409


# ------------------------------------------------------------------------------------------ settings
class ZendeskSettings(AllOrNothingCredentials, BaseSettings):
    vendor_label: ClassVar[str] = "Zendesk"
    env_prefix_label: ClassVar[str] = "ZENDESK_"

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    subdomain: str | None = Field(None, alias="ZENDESK_SUBDOMAIN")
    base_url: str | None = Field(None, alias="ZENDESK_BASE_URL")  # sandbox or proxy, e.g. https://acme1.zendesk.com
    email: str | None = Field(None, alias="ZENDESK_EMAIL")
    api_token: SecretStr | None = Field(None, alias="ZENDESK_API_TOKEN")
    oauth_token: SecretStr | None = Field(None, alias="ZENDESK_OAUTH_TOKEN")
    # Client-side budget for all workers together; the plan's limit (Enterprise 700/min) minus headroom
    # for agents' apps and other integrations on the same account.
    requests_per_minute: int = Field(400, alias="ZENDESK_REQUESTS_PER_MINUTE", gt=0)
    user_id: str | None = Field(None, alias="ZENDESK_USER_ID")  # the integration user; else learned from users/me
    timeout_seconds: float = Field(30.0, alias="ZENDESK_TIMEOUT_SECONDS", gt=0)
    # How long an organization's / user's custom fields (matrix `organization_field` / `user_field`) are
    # reused before they are read again.
    customer_data_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, alias="ZENDESK_CUSTOMER_DATA_TTL_SECONDS", gt=0)

    @property
    def api_base(self) -> str | None:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.subdomain:
            return f"https://{self.subdomain}.zendesk.com"
        return None

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_base) and self._has_auth

    @property
    def _has_auth(self) -> bool:
        return credential_given(self.oauth_token) or (credential_given(self.email) and credential_given(self.api_token))

    def credential_settings_given(self) -> list[str]:
        """Names of the ZENDESK_* credential settings that are set (names only, never values)."""
        values = {"ZENDESK_SUBDOMAIN": self.subdomain, "ZENDESK_BASE_URL": self.base_url,
                  "ZENDESK_EMAIL": self.email, "ZENDESK_API_TOKEN": self.api_token,
                  "ZENDESK_OAUTH_TOKEN": self.oauth_token}
        return [name for name, value in values.items() if credential_given(value)]

    def missing_settings(self) -> list[str]:
        """What is still needed for a live connector; [] when complete. Each item names settings only."""
        missing: list[str] = []
        if not self.api_base:
            missing.append("ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL")
        if not self._has_auth:
            if credential_given(self.api_token):
                missing.append("ZENDESK_EMAIL (an API token authenticates together with the agent's email)")
            elif credential_given(self.email):
                missing.append("ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN")
            else:
                missing.append("ZENDESK_EMAIL + ZENDESK_API_TOKEN, or ZENDESK_OAUTH_TOKEN")
        return missing

    def describe(self) -> str:
        """One line for the start-up banner: mode, identity and account; never a token."""
        if not self.credential_settings_given():
            return "dry run (no ZENDESK_* credentials): tickets are read from webhooks, nothing is written"
        missing = self.missing_settings()
        if missing:
            return f"incomplete settings (missing {'; '.join(missing)})"
        parts = urlsplit(self.api_base or "")
        where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        who = "with an OAuth token" if credential_given(self.oauth_token) else f"as {self.email}"
        return f"live {who} on {where}"

    def redactor(self) -> Redactor:
        """What must never appear in a message: both tokens in every encoded form, and the Basic
        credential Zendesk's API-token authentication sends (`base64("email/token:TOKEN")`)."""
        api_token = self.api_token.get_secret_value() if self.api_token is not None else ""
        oauth_token = self.oauth_token.get_secret_value() if self.oauth_token is not None else ""
        basic = [(f"{self.email}/token", api_token)] if self.email and api_token else []
        return Redactor([api_token, oauth_token], basic_credentials=basic)


# ------------------------------------------------------------------------- the one error edge
def _zendesk_description(response: requests.Response, redact: Redactor) -> str:
    """Zendesk's own words: `{"error": ..., "description": ..., "details": {...}}` or an HTML page.
    Redacted before it is shortened, so a cut never leaves part of a secret behind."""
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type:
        return "non-JSON error page" if response.text.lstrip().startswith("<") else redact(response.text)[:200]
    try:
        body = response.json()
    except (requests.JSONDecodeError, json.JSONDecodeError):
        return redact(response.text)[:200]
    if not isinstance(body, dict):
        return redact(str(body))[:300]
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        parts.append(str(error.get("title") or error.get("message") or error))
    elif error:
        parts.append(str(error))
    if body.get("description"):
        parts.append(str(body["description"]))
    details = body.get("details")
    if isinstance(details, dict):
        for name, problems in details.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                text = problem.get("description") if isinstance(problem, dict) else problem
                parts.append(f"{name}: {text}")
    return redact("; ".join(parts))[:500] or f"HTTP {response.status_code}"


def error_for_response(response: requests.Response, redact: Redactor = Redactor()) -> ConnectorError | None:
    """Map one Zendesk answer to our error type (None for 2xx) through the one status table
    (`connectors.http.error_for_status`). The message names method, path and Zendesk's description:
    never the URL's query, headers or credentials.

    Zendesk validates a ticket update as a whole and stores none of it (fields, tags, comment) when it
    answers 4xx; 409 is also the answer to a guarded retry whose first attempt was stored."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    request = response.request
    path = urlsplit(request.url).path if request is not None and request.url else "?"
    method = request.method if request is not None else "?"
    where = f"Zendesk {status} on {method} {path}"
    description = _zendesk_description(response, redact)
    retry_after = response.headers.get("Retry-After")
    return error_for_status(status, retry_after, default=f"{where}: {description}", messages={
        http.RATE_LIMITED: f"{where}: rate limited (Retry-After {retry_after})",
        http.UNAVAILABLE: f"{where}: unavailable",
        http.UNAUTHORIZED: f"{where}: credentials rejected or not allowed ({description})",
        http.NOT_FOUND: f"{where}: not found",
        http.CONFLICT: f"{where}: the ticket changed since it was read ({description})",
    })


def error_for_exception(error: BaseException, redact: Redactor = Redactor()) -> ConnectorError:
    if isinstance(error, ConnectorError):
        return error
    name = type(error).__name__
    # A reset or "Connection aborted" is a ConnectionError too, but may come after Zendesk read the request.
    mapped = error_for_transport(error, messages={
        http.UNREADABLE: f"Zendesk answered with an unreadable body ({name})",
        http.NOT_CONNECTED: f"Zendesk unreachable ({name})",
        http.TIMED_OUT: f"Zendesk unreachable ({name})",
        http.CONNECTION_FAILED: f"Zendesk unreachable ({name})",
        http.REQUEST_FAILED: f"Zendesk request failed ({name})",
    })
    if mapped is not None:
        return mapped
    from zenpy.lib.exception import APIException, RecordNotFoundException, ZenpyException

    if isinstance(error, RecordNotFoundException):
        return NotFound("Zendesk: record not found")
    if isinstance(error, APIException):
        response = getattr(error, "response", None)
        mapped = error_for_response(response, redact) if response is not None else None
        return mapped or Permanent(redact(f"Zendesk API error: {error}")[:500])
    if isinstance(error, ZenpyException):
        return Permanent(redact(f"zenpy: {error}")[:500])
    # Any exception this function does not know is our own bug: it propagates as itself instead of being
    # retried as a vendor error.
    raise error


# ------------------------------------------------------------------------------- HTTP client
class _BudgetedAdapter(HTTPAdapter):
    """No transport retries; every request is taken from the shared client-side budget first."""

    def __init__(self, limiter: RateLimiter | None):
        super().__init__(max_retries=0)
        self.limiter = limiter

    def send(self, request, *args, **kwargs):
        if self.limiter is not None:
            wait = self.limiter.try_acquire()
            if wait > 0:
                raise budget_exhausted("Zendesk", wait)
        return super().send(request, *args, **kwargs)


class ZendeskClient:
    """The HTTP edge: base URL, auth, budget, error mapping and retries. Paths start with /api/v2."""

    def __init__(
        self,
        settings: ZendeskSettings,
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        rate_limiter: RateLimiter | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
    ):
        base = settings.api_base
        if not base:
            raise Permanent("Zendesk base URL missing: set ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL")
        self.settings = settings
        self.base_url = base
        self.retry_policy = retry_policy
        self._redact = settings.redactor()
        self.limiter = rate_limiter if rate_limiter is not None else limiter_for(
            f"zendesk:{urlsplit(base).hostname or base}", settings.requests_per_minute,
            redis_url=redis_url, database_url=database_url)
        self.session = session or requests.Session()
        adapter = _BudgetedAdapter(self.limiter)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        if settings.oauth_token is not None:
            self.session.headers["Authorization"] = f"Bearer {settings.oauth_token.get_secret_value()}"
        elif settings.email and settings.api_token is not None:
            self.session.auth = (f"{settings.email}/token", settings.api_token.get_secret_value())
        self.session.hooks["response"] = [self._raise_mapped]
        self._zenpy = None

    # A hook runs inside Session.send: raising here means neither zenpy nor our own code ever handles
    # a raw error response (and zenpy's 429 sleep loop is never reached).
    def _raise_mapped(self, response: requests.Response, *args, **kwargs):
        error = error_for_response(response, self._redact)
        if error is not None:
            raise error
        return response

    def url(self, path: str) -> str:
        if not path.startswith(("http://", "https://")):
            return f"{self.base_url}{path}"
        # Pagination links come from response bodies: never send the credentials to another host.
        given, ours = urlsplit(path), urlsplit(self.base_url)
        if (given.scheme, given.netloc) != (ours.scheme, ours.netloc):
            raise Permanent(f"Zendesk pagination link points to another host ({given.netloc}); not followed")
        return path

    def _send_once(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        try:
            response = self.session.request(method, self.url(path), params=params, json=body,
                                            timeout=self.settings.timeout_seconds)
            if response.status_code == 204 or not response.content:
                return None
            if "json" not in response.headers.get("Content-Type", "json"):
                raise Transient(f"Zendesk {response.status_code} on {method} {urlsplit(response.url).path}: "
                                "non-JSON body (an error page from a proxy?)")
            return response.json()
        except ConnectorError:
            raise
        except Exception as error:  # noqa: BLE001 - translated once, here
            raise error_for_exception(error, self._redact) from None

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None,
                retry: bool = True) -> Any:
        if not retry:
            return self._send_once(method, path, params, body)
        return call_with_retry(self._send_once, method, path, params, body, policy=self.retry_policy)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def get_all(self, path: str, key: str, *, page_size: int = 100, sideloads: dict[str, list] | None = None,
                **params: Any) -> list[dict]:
        """Follow cursor pagination (`links.next`, `meta.has_more`) or offset `next_page`. Sideloaded
        lists (e.g. `users` with include=users) are collected into `sideloads` when given."""
        items: list[dict] = []
        url: str | None = path
        query: dict[str, Any] | None = {**params, "page[size]": page_size}
        while url:
            data = self.request("GET", url, params=query) or {}
            items.extend(data.get(key) or [])
            if sideloads is not None:
                for name, value in data.items():
                    if name != key and isinstance(value, list):
                        sideloads.setdefault(name, []).extend(value)
            query = None  # the next link carries the query
            meta, links = data.get("meta") or {}, data.get("links") or {}
            if meta.get("has_more") and links.get("next"):
                url = links["next"]
            elif data.get("next_page"):
                url = data["next_page"]
            else:
                url = None
        return items

    def zenpy(self):
        """A zenpy client on this session (same budget, hook and retry policy as every other call)."""
        if self._zenpy is None:
            from zenpy import Zenpy

            parts = urlsplit(self.base_url)
            host = parts.hostname or ""
            subdomain, _, domain = host.partition(".")
            client = Zenpy(
                subdomain=subdomain,
                domain=domain or "zendesk.com",
                session=self.session,
                anonymous=True,  # our session already carries the credentials
                timeout=self.settings.timeout_seconds,
                proactive_ratelimit=None,  # its "proactive" limiter sleeps in-process; ours is shared
                ratelimit_budget=None,  # never refilled once spent; the retry layer bounds waiting instead
                disable_cache=True,  # its object cache would answer fetches from memory
            )
            for api in (client.users,):
                api.protocol = parts.scheme or "https"
            self._zenpy = client
        return self._zenpy

    def me(self) -> dict:
        """The authenticated user (`GET /api/v2/users/me`) through zenpy when the base URL is a plain
        host; directly when it has a port (zenpy can only express one via ZENPY_FORCE_NETLOC, a
        process-wide environment variable we do not set)."""
        if urlsplit(self.base_url).port is None:
            def call() -> dict:
                try:
                    user = self.zenpy().users.me()
                except ConnectorError:
                    raise
                except Exception as error:  # noqa: BLE001
                    raise error_for_exception(error, self._redact) from None
                if hasattr(user, "to_dict"):
                    return user.to_dict()
                if isinstance(user, Mapping):
                    return dict(user)
                # zenpy hands back the raw response when its body is not JSON (a proxy's page).
                raise Transient("Zendesk answered users/me with an unreadable body")

            return call_with_retry(call, policy=self.retry_policy)
        return (self.get("/api/v2/users/me") or {}).get("user") or {}


# ---------------------------------------------------------------------------- matrix <-> zendesk
def _tag(prefix: str, value: Any) -> str:
    # Zendesk lower-cases tags and turns spaces into separate tags.
    return f"{prefix}{value}".strip().lower().replace(" ", "_")


def _zendesk_value(mapping: ZendeskField, value: Any) -> Any:
    if value is None:
        return None
    for matrix_value, vendor_value in mapping.values.items():
        if str(matrix_value).lower() == str(value).lower():
            return vendor_value
    return value


def _matrix_value(mapping: ZendeskField, vendor_value: Any) -> Any:
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


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _neutral_priority(value: Any) -> str | None:
    text = str(value).lower() if value else None
    return text if text in PRIORITIES else None


def _neutral_status(value: Any) -> str:
    return _STATUS_FROM_ZENDESK.get(str(value or "open").lower(), "open")


def _fields_from(matrix: Matrix, tags: frozenset[str], custom: Mapping[int, Any],
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
            value = _matrix_value(zd, matches[0])
            if name == LEVEL_ATTRIBUTE:
                # Several level tags (an agent added one by hand): the highest level wins.
                levels = [_canonical_level(matrix, _matrix_value(zd, m)) for m in matches]
                known = [lv for lv in levels if any(lv == level.id for level in matrix.levels)]
                value = max(known, key=matrix.level_index) if known else levels[0]
            out[name] = value
        elif zd.custom_field is not None and zd.custom_field in custom:
            raw = _coerce(custom[zd.custom_field], (field_types or {}).get(zd.custom_field))
            value = _matrix_value(zd, raw) if zd.values else raw
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


def _id_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _ticket_from_raw(raw: Mapping[str, Any], matrix: Matrix, *, custom: Mapping[int, Any] | None = None,
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
        status=_neutral_status(raw.get("status")),
        priority=_neutral_priority(raw.get("priority")),
        tags=tags,
        group=_group_key(matrix, raw.get("group_id")),
        channel=via.get("channel") if isinstance(via, Mapping) else None,
        fields=_fields_from(matrix, tags, custom or {}, field_types),
        created_at=_parse_time(raw.get("created_at")),
        updated_at=_parse_time(raw.get("updated_at")),
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
        when = _parse_time(audit.get("created_at")) if isinstance(audit, Mapping) else None
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


# --------------------------------------------------------------------------------- connector
@dataclass
class _Lookups:
    """Account metadata the connector needs per ticket, cached and refreshed when an unknown id shows up."""

    field_types: dict[int, str] = field(default_factory=dict)
    fields_loaded: bool = False
    own_user_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ZendeskConnector:
    vendor = VENDOR

    def __init__(
        self,
        settings: ZendeskSettings,
        matrix: Matrix,
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        database_url: str | None = None,
        redis_url: str | None = None,
    ):
        self.settings = settings
        self.matrix = matrix
        # redis_url / database_url: where the shared request budget lives (connectors.ratelimit.limiter_for);
        # neither given = a budget of this process only.
        self.client = ZendeskClient(settings, session=session, retry_policy=retry_policy, rate_limiter=rate_limiter,
                                    database_url=database_url, redis_url=redis_url)
        self._lookups = _Lookups(own_user_id=settings.user_id)
        self._clock = clock
        self._customer_data = TtlCache(timedelta(seconds=settings.customer_data_ttl_seconds), clock)

    # ------------------------------------------------------------------ lookups
    def own_user_id(self) -> str | None:
        if self._lookups.own_user_id is None:
            user = self.client.me()
            if user.get("id") is not None:
                self._lookups.own_user_id = str(user["id"])
        return self._lookups.own_user_id

    def _field_types(self, needed: set[int]) -> dict[int, str]:
        lookups = self._lookups
        with lookups.lock:
            if not lookups.fields_loaded or not needed <= lookups.field_types.keys():
                for item in self.client.get_all("/api/v2/ticket_fields", "ticket_fields"):
                    lookups.field_types[int(item["id"])] = str(item.get("type") or "")
                lookups.fields_loaded = True
            return lookups.field_types

    def _mapped_custom_field_ids(self) -> set[int]:
        return {m.zendesk.custom_field for m in self.matrix.fields.values()
                if m.zendesk is not None and m.zendesk.custom_field is not None}

    def _customer_fields(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Matrix attributes mapped to `organization_field` / `user_field`: the ticket's organization and
        requester are read in full (`GET organizations/{id}`, `users/{id}`; the ticket's sideloads are partial
        records without custom fields), each at most once per ZENDESK_CUSTOMER_DATA_TTL_SECONDS."""
        out: dict[str, Any] = {}
        sources = (("organization_field", "organization_id", "organizations", "organization", "organization_fields"),
                   ("user_field", "requester_id", "users", "user", "user_fields"))
        for source, id_key, collection, record, fields_key in sources:
            mapped = {name: m.zendesk for name, m in self.matrix.fields.items()
                      if m.zendesk is not None and getattr(m.zendesk, source) is not None}
            record_id = _id_or_none(raw.get(id_key))
            if not mapped or record_id is None:
                continue

            def load(path: str = f"/api/v2/{collection}/{record_id}", record: str = record,
                     fields_key: str = fields_key) -> dict[str, Any]:
                try:
                    return dict(((self.client.get(path) or {}).get(record) or {}).get(fields_key) or {})
                except NotFound:
                    return {}  # deleted since the ticket named it: the attributes are empty

            values = self._customer_data.get_or_load((collection, record_id), load)
            for name, zd in mapped.items():
                value = _matrix_value(zd, values.get(getattr(zd, source)))
                if value is not None:
                    out[name] = value
        return out

    # ------------------------------------------------------------------ read
    def fetch_ticket(self, ticket_id: str) -> Ticket:
        data = self.client.get(f"/api/v2/tickets/{ticket_id}", include="users,organizations") or {}
        raw = data.get("ticket")
        if not raw:
            raise NotFound(f"Zendesk ticket {ticket_id} not found")
        users = {str(u.get("id")): u for u in data.get("users") or []}
        orgs = {str(o.get("id")): o for o in data.get("organizations") or []}
        custom = {int(cf["id"]): cf.get("value") for cf in raw.get("custom_fields") or [] if cf.get("id") is not None}
        mapped = self._mapped_custom_field_ids() & set(custom)
        field_types = self._field_types(mapped) if mapped else {}
        requester_id = _id_or_none(raw.get("requester_id"))
        requester = users.get(requester_id or "", {})
        assignee_id = _id_or_none(raw.get("assignee_id"))
        assignee = users.get(assignee_id or "")
        organization = orgs.get(str(raw.get("organization_id")))
        first_reply, last_reply = self._public_agent_replies(str(raw["id"]), requester_id)
        rating = raw.get("satisfaction_rating") or {}
        score = rating.get("score") if isinstance(rating, dict) else None
        ticket = _ticket_from_raw(
            raw, self.matrix, custom=custom, field_types=field_types,
            organization=organization.get("name") if organization else None,
            requester=Person(id=requester_id, name=requester.get("name"), email=requester.get("email")),
            assignee=Person(id=assignee_id, name=assignee.get("name"), email=assignee.get("email")) if assignee_id else None,
            first_public_agent_reply_at=first_reply,
            last_public_agent_reply_at=last_reply,
            satisfaction=score if score in ("good", "bad") else None,
            url=f"{self.client.base_url}/agent/tickets/{raw['id']}",
        )
        customer = self._customer_fields(raw)
        return ticket.with_(fields={**ticket.fields, **customer}) if customer else ticket

    def field_changes(self, ticket: Ticket) -> dict[str, datetime]:
        """When each matrix attribute (the level among them) last changed, from the ticket audits
        (`GET /api/v2/tickets/{id}/audits`, one request per 100 audits). The pipeline asks only when a pass
        needs the time of a change: a level someone else set, or a move a rule caused."""
        audits = self.client.get_all(f"/api/v2/tickets/{ticket.id}/audits", "audits")
        return attribute_changes(audits, self.matrix)

    def _public_agent_replies(self, ticket_id: str, requester_id: str | None) -> tuple[datetime | None, datetime | None]:
        """First and last public comment by an agent: an author who is neither the requester nor the
        integration user (and, where Zendesk sideloads the author, whose role is agent or admin)."""
        sideloads: dict[str, list] = {}
        comments = self.client.get_all(f"/api/v2/tickets/{ticket_id}/comments", "comments",
                                       sideloads=sideloads, include="users")
        own = self.own_user_id()
        times: list[datetime] = []
        authors = {str(u.get("id")): u for u in sideloads.get("users", [])}
        for comment in comments:
            if not comment.get("public"):
                continue
            author = str(comment.get("author_id")) if comment.get("author_id") is not None else None
            if author is None or author == requester_id or author == own:
                continue
            role = (authors.get(author) or {}).get("role")
            if role is not None and role not in _AGENT_ROLES:
                continue
            when = _parse_time(comment.get("created_at"))
            if when is not None:
                times.append(when)
        return (min(times), max(times)) if times else (None, None)

    def changed_since(self, watermark: str | None, *, initial_lookback: timedelta = timedelta(hours=1)) -> Iterator[tuple[str, str]]:
        """Tickets changed since `watermark` via the cursor-based incremental export.

        `watermark` is an export cursor, or digits = a unix start time; None starts `initial_lookback`
        ago. Each ticket is yielded with the watermark that is safe to persist once it is processed: the
        previous cursor for all but the last ticket of a page, the page's `after_cursor` for the last, so
        a crash mid-page replays that page (at-least-once) instead of skipping its rest."""
        if watermark and not watermark.isdigit():
            params: dict[str, Any] = {"cursor": watermark}
            current = watermark
        else:
            start = int(watermark) if watermark else int((self._clock() - initial_lookback).timestamp())
            params = {"start_time": start}
            current = str(start)
        while True:
            page = self.client.get("/api/v2/incremental/tickets/cursor", **params) or {}
            tickets = page.get("tickets") or []
            after = page.get("after_cursor") or current
            seen: set[str] = set()
            for index, ticket in enumerate(tickets):
                ticket_id = str(ticket["id"])
                last = index == len(tickets) - 1
                if ticket_id in seen and not last:
                    continue
                seen.add(ticket_id)
                yield ticket_id, after if last else current
            if page.get("end_of_stream") or not page.get("after_cursor") or page.get("after_cursor") == current:
                return
            current = after
            params = {"cursor": after}

    # ------------------------------------------------------------------ write
    def build_updates(self, ticket: Ticket, decision: Decision) -> list[dict[str, Any]]:
        """The ticket bodies `apply` would send (without `safe_update`/`updated_stamp`), in order.

        The first update carries every field change plus the customer reply (or the note when there is
        no reply); an internal note that shares the decision with a reply goes in a second, comment-only
        update. Reply first: the customer-visible text and the level tag (hence the SLA policy) land
        together under one safe_update, so a stale snapshot sends the customer nothing; the note is
        informational and cannot overwrite anything an agent changed."""
        changes: dict[str, Any] = {}
        if decision.priority and decision.priority != ticket.priority:
            changes["priority"] = decision.priority
        if decision.owner_group and decision.owner_group != ticket.group:
            group = self.matrix.groups.get(decision.owner_group)
            if group is None or group.zendesk is None:
                raise Permanent(f"matrix group {decision.owner_group!r} has no Zendesk group id")
            changes["group_id"] = int(group.zendesk)

        current_tags = {t.lower() for t in ticket.tags}
        add: list[str] = [t.lower() for t in decision.add_tags]
        remove: list[str] = [t.lower() for t in decision.remove_tags]
        custom_fields: list[dict[str, Any]] = []
        for name, value in decision.field_updates.items():
            mapping = self.matrix.fields.get(name)
            if mapping is None or mapping.zendesk is None:
                raise Permanent(f"matrix field {name!r} has no Zendesk mapping")
            zd = mapping.zendesk
            if zd.read_only:
                raise Permanent(f"matrix field {name!r} is an organization/user field; the service only reads it")
            if zd.tag_prefix is not None:
                prefix = zd.tag_prefix.lower()
                new_tag = _tag(zd.tag_prefix, _zendesk_value(zd, value)) if value not in (None, "") else None
                if new_tag:
                    add.append(new_tag)
                # The old value's tag goes: for `level` this takes the previous level's SLA policy off.
                remove.extend(t for t in current_tags if t.startswith(prefix) and t != new_tag)
            else:
                if ticket.fields.get(name) == value:
                    continue
                custom_fields.append({"id": zd.custom_field, "value": _zendesk_value(zd, value)})
        add_tags = sorted({t for t in add if t not in current_tags})
        remove_tags = sorted({t for t in remove if t in current_tags and t not in add})
        if add_tags:
            changes["additional_tags"] = add_tags
        if remove_tags:
            changes["remove_tags"] = remove_tags
        if custom_fields:
            changes["custom_fields"] = custom_fields

        comments = []
        if decision.public_reply:
            comments.append({"body": decision.public_reply, "public": True})
        if decision.internal_note:
            comments.append({"body": decision.internal_note, "public": False})
        if not changes and not comments:
            return []
        updates = [dict(changes)]
        if comments:
            updates[0]["comment"] = comments[0]
            updates.extend({"comment": comment} for comment in comments[1:])
        return updates

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        """Send `build_updates` in order, each under safe_update; before every update after the first,
        `progress` hears which parts Zendesk has confirmed and which the next update carries (a worker
        killed between the reply and the note update is recovered from that, see integration.pipeline).

        `sent` of a raised error: once any PUT of this apply may have been stored (it succeeded, or it
        failed with an unknown outcome, or met 409), every error raised says `sent=None`; `sent=False`
        comes through only when nothing of this apply can have reached Zendesk."""
        updates = self.build_updates(ticket, decision)
        result = ApplyResult()
        stamp = ticket.version_token
        # Our own comments from this apply are newer than the snapshot the decision was made from; an
        # identical comment from an earlier cycle (the same data request sent last week) is not.
        since = ticket.updated_at or _parse_time(ticket.version_token)
        path = f"/api/v2/tickets/{ticket.id}"
        maybe_written = False
        try:
            for index, changes in enumerate(updates):
                if index and progress is not None:
                    progress(list(result.parts), _update_parts(changes))
                for attempt in range(NOTE_CONFLICT_ROUNDS + 1):
                    # Every write is guarded: a retried PUT after an ambiguous timeout gets 409 instead of
                    # posting its comment twice, and an agent's concurrent edit is never overwritten.
                    body = {**changes, "safe_update": True, "updated_stamp": stamp} if stamp else changes
                    try:
                        response = self.client.request("PUT", path, body={"ticket": body}) or {}
                    except Conflict:
                        # 409 after an attempt that timed out may mean that attempt was stored.
                        maybe_written = True
                        comment = changes.get("comment")
                        if comment is None or (index == 0 and len(changes) > 1):
                            # A first update with field changes: the pipeline re-fetches and sees whether
                            # they are on the ticket (then the update was stored: `recovered`, no resend).
                            raise
                        stamp, posted = self._stamp_and_posted(ticket.id, comment, since)
                        if posted:
                            # An earlier, ambiguous attempt stored this comment-only update. Sending it
                            # again would repeat the comment; raising Conflict would let the pipeline
                            # decide again and repeat a customer reply (it cannot see a comment on the
                            # ticket's fields). Not counted in `writes` (no call of ours was confirmed);
                            # the request list records it.
                            result.requests.append({"method": "PUT", "path": path, "status": 409,
                                                    "already_stored": True, "comment_public": comment.get("public")})
                            result.parts.extend(_update_parts(changes))
                            break
                        # The first update raises: the pipeline re-fetches and re-decides. A later one is
                        # the comment-only note of a decision whose reply and fields are already written:
                        # it cannot overwrite an agent's edit, so it is re-sent on the fresh stamp.
                        if index == 0 or attempt == NOTE_CONFLICT_ROUNDS:
                            raise
                        continue
                    except ConnectorError as error:
                        if (index == 0 and attempt == 0 and isinstance(error, Permanent)
                                and _moves_assigned_group(changes, ticket) and _assignee_not_in_group(error)):
                            # Zendesk refused the move (422, nothing stored): resend once, assignee cleared.
                            updates[:] = _unassign_for_move(updates, ticket, self.matrix, decision.owner_group)
                            changes = updates[0]
                            result.requests.append({"method": "PUT", "path": path, "status": 422,
                                                    "assignee_not_in_group": True})
                            continue
                        if error.sent is not False:
                            maybe_written = True
                        raise
                    maybe_written = True
                    result.writes += 1
                    result.requests.append({"method": "PUT", "path": path, "status": 200,
                                            "comment_public": (changes.get("comment") or {}).get("public")})
                    stamp = (response.get("ticket") or {}).get("updated_at") or stamp
                    result.parts.extend(_update_parts(changes))
                    if index == 0 and _moves_assigned_group(changes, ticket) and \
                            (response.get("ticket") or {}).get("assignee_id", ticket.assignee.id) is None:
                        # The account unassigned silently: the note still says so (in the note not sent
                        # yet, or in one more internal comment when the note went with this update).
                        updates[:] = _unassign_for_move(updates, ticket, self.matrix, decision.owner_group,
                                                        sent=1)
                    break
        except ConnectorError as error:
            if maybe_written:
                error.sent = None
            raise
        return result

    def _stamp_and_posted(self, ticket_id: str, comment: Mapping[str, Any],
                          since: datetime | None) -> tuple[str | None, bool]:
        """The ticket's current updated_at, and whether `comment` is among its latest comments by the
        integration user, created after `since` (the snapshot's updated_at). Without `since` nothing
        counts as posted: a duplicate is better than a lost comment."""
        stamp = ((self.client.get(f"/api/v2/tickets/{ticket_id}") or {}).get("ticket") or {}).get("updated_at")
        if since is None:
            return stamp, False
        latest = (self.client.get(f"/api/v2/tickets/{ticket_id}/comments", sort="-created_at",
                                  **{"page[size]": 10}) or {}).get("comments") or []
        own = self.own_user_id()

        def ours_since(c: Mapping[str, Any]) -> bool:
            created = _parse_time(c.get("created_at"))
            # Strictly newer: a comment from the snapshot's very second may be an earlier cycle's (its
            # write set that updated_at). Missing our own same-second comment costs a duplicate at
            # worst; counting an old one would silently drop this comment.
            return created is not None and created > since

        posted = any(str(c.get("author_id")) == own and c.get("body") == comment["body"]
                     and bool(c.get("public")) == bool(comment.get("public", True)) and ours_since(c)
                     for c in latest)
        return stamp, posted

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment]:
        """The integration user's comments on the ticket created strictly after `since` (vendor time),
        among its latest 100: what crash recovery looks for before sending a reply or note again."""
        latest = (self.client.get(f"/api/v2/tickets/{ticket_id}/comments", sort="-created_at",
                                  **{"page[size]": 100}) or {}).get("comments") or []
        own = self.own_user_id()
        posted = []
        for comment in latest:
            created = _parse_time(comment.get("created_at"))
            if str(comment.get("author_id")) != own or (since is not None and (created is None or created <= since)):
                continue
            posted.append(PostedComment(body=str(comment.get("body") or ""), public=bool(comment.get("public")),
                                        created_at=created))
        return posted


# ------------------------------------------------------------------- group moves of assigned tickets
# Zendesk allows only an assignee who is a member of the ticket's group. Moving an assigned ticket to a
# group its assignee is not in is refused with 422 on most accounts, e.g. {"error": "RecordInvalid",
# "description": "Record validation errors", "details": {"assignee": [{"description": "Assignee: is not a
# member of the group"}]}} (zenpy issue #628); some accounts instead store the move and unassign. Neither
# case is known before the write without reading group memberships on every move, so the move is sent as
# is (one PUT when the assignee is a member, the common case) and only a refusal costs a second PUT.
def _moves_assigned_group(changes: Mapping[str, Any], ticket: Ticket) -> bool:
    return "group_id" in changes and "assignee_id" not in changes and bool(ticket.assignee and ticket.assignee.id)


def _assignee_not_in_group(error: ConnectorError) -> bool:
    text = str(error).lower()
    return "assignee" in text and "not a member of the group" in text


def unassign_note(ticket: Ticket, matrix: Matrix, group_key: str | None) -> str:
    """The sentence the internal note carries when a move of the service unassigned the ticket."""
    person = ticket.assignee.name or ticket.assignee.email or ticket.assignee.id if ticket.assignee else "?"
    group = matrix.groups.get(group_key or "")
    label = (group.label if group is not None and group.label else group_key) or "the new group"
    return f"Assignee {person} is not in {label}; unassigned so the ticket could move."


def _unassign_for_move(updates: list[dict[str, Any]], ticket: Ticket, matrix: Matrix, group_key: str | None,
                       *, sent: int = 0) -> list[dict[str, Any]]:
    """`updates` with the first one clearing the assignee (unless `sent` of them already went) and the
    unassignment said in the internal note: appended to the first unsent internal comment, else one more
    internal comment (in the first update when it has none and is unsent, else its own update)."""
    sentence = unassign_note(ticket, matrix, group_key)
    out = [dict(u) for u in updates]
    if sent == 0:
        out[0]["assignee_id"] = None
    for update in out[sent:]:
        comment = update.get("comment")
        if comment is not None and not comment.get("public", True):
            update["comment"] = {**comment, "body": f"{comment['body']}\n\n{sentence}"}
            return out
    if sent == 0 and "comment" not in out[0]:
        out[0]["comment"] = {"body": sentence, "public": False}
    else:
        out.append({"comment": {"body": sentence, "public": False}})
    return out


def _update_parts(changes: Mapping[str, Any]) -> list[str]:
    """The decision parts (connectors.base.PART_*) one ticket update carries."""
    parts = [PART_FIELDS] if any(key != "comment" for key in changes) else []
    comment = changes.get("comment")
    if comment:
        parts.append(PART_REPLY if comment.get("public", True) else PART_NOTE)
    return parts


# ------------------------------------------------------------------------------ construction
def build_from_env(matrix: Matrix, **kwargs: Any) -> ZendeskConnector | None:
    """The connector configured by ZENDESK_* variables, or None when none of the credential settings is
    set (dry run). Raises ConfigurationError when some are set but the set is incomplete. No network call.
    `kwargs` go to ZendeskConnector (e.g. `database_url=`, `redis_url=` for the shared request budget)."""
    settings = ZendeskSettings()
    if not settings.check_complete():
        return None
    return ZendeskConnector(settings, matrix, **kwargs)


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
        return _ticket_from_raw(detail, matrix, requester=Person(id=_id_or_none(detail.get("requester_id"))))
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
        status=_neutral_status(payload.get("ticket_status")),
        priority=_neutral_priority(payload.get("ticket_priority")),
        tags=tags,
        fields=_fields_from(matrix, tags, {}),
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
    return _parse_time(text)


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
    if author.get("is_staff") is not True and role not in _AGENT_ROLES:
        return None
    detail = payload.get("detail") if isinstance(payload.get("detail"), Mapping) else {}
    return (_event_time(comment.get("created_at")) or _event_time(payload.get("time"))
            or _event_time(detail.get("updated_at")))


# ------------------------------------------------------------------------------ remote validation
def check_remote(loaded_matrix: Any, *, connector: ZendeskConnector | None = None) -> list[str]:
    """`escalation validate --remote zendesk`: every group id, custom field id and option value the
    matrix names must exist in the account. One message per missing item; [] when all exist."""
    matrix: Matrix = getattr(loaded_matrix, "matrix", loaded_matrix)
    if connector is None:
        try:
            connector = build_from_env(matrix)
        except ConfigurationError as error:
            return [f"zendesk: {error}"]
        if connector is None:
            return ["zendesk: no credentials (set ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL, and ZENDESK_EMAIL + "
                    "ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN) - cannot check the account"]
    client = connector.client
    errors: list[str] = []
    try:
        group_ids = {int(g["id"]) for g in client.get_all("/api/v2/groups", "groups") if not g.get("deleted")}
        fields = {int(f["id"]): f for f in client.get_all("/api/v2/ticket_fields", "ticket_fields")}
    except ConnectorError as error:
        return [f"zendesk: cannot read the account's groups and ticket fields: {error}"]
    for key, mapping in matrix.groups.items():
        if mapping.zendesk is not None and int(mapping.zendesk) not in group_ids:
            errors.append(f"groups.{key}.zendesk: group {mapping.zendesk} does not exist in Zendesk")
    for name, mapping in matrix.fields.items():
        zd = mapping.zendesk
        if zd is None or zd.custom_field is None:
            continue
        remote = fields.get(int(zd.custom_field))
        if remote is None:
            errors.append(f"fields.{name}.zendesk.custom_field: ticket field {zd.custom_field} does not exist in Zendesk")
            continue
        if remote.get("active") is False:
            errors.append(f"fields.{name}.zendesk.custom_field: ticket field {zd.custom_field} is inactive in Zendesk")
        options = remote.get("custom_field_options")
        if options is None:
            continue
        known = {str(o.get("value")) for o in options}
        for matrix_value, option in zd.values.items():
            if str(option) not in known:
                errors.append(f"fields.{name}.zendesk.values.{matrix_value}: option {option!r} does not exist "
                              f"on ticket field {zd.custom_field} ({remote.get('title', '')})")
        if name == LEVEL_ATTRIBUTE:
            # The service writes every level id (through the values map) into this dropdown.
            for level in matrix.levels:
                if level.id not in {str(k) for k in zd.values} and str(level.id) not in known:
                    errors.append(f"fields.level.zendesk: level {level.id} has no option on ticket field "
                                  f"{zd.custom_field} ({remote.get('title', '')}); add it or map it under `values`")
    errors.extend(_customer_field_problems(client, matrix))
    return errors


def _customer_field_problems(client: ZendeskClient, matrix: Matrix) -> list[str]:
    """Every `organization_field` / `user_field` key the matrix reads must be an active custom field of
    the account's organizations / users."""
    errors: list[str] = []
    for source, collection, what in (("organization_field", "organization_fields", "organization field"),
                                     ("user_field", "user_fields", "user field")):
        mapped = {name: getattr(m.zendesk, source) for name, m in matrix.fields.items()
                  if m.zendesk is not None and getattr(m.zendesk, source) is not None}
        if not mapped:
            continue
        try:
            remote = {str(f.get("key")): f for f in client.get_all(f"/api/v2/{collection}", collection)}
        except ConnectorError as error:
            errors.append(f"zendesk: cannot read the account's {what}s: {error}")
            continue
        for name, key in mapped.items():
            found = remote.get(key)
            if found is None:
                known = ", ".join(sorted(remote)) or "none"
                errors.append(f"fields.{name}.zendesk.{source}: {what} {key!r} does not exist in Zendesk "
                              f"(its {what}s: {known})")
            elif found.get("active") is False:
                errors.append(f"fields.{name}.zendesk.{source}: {what} {key!r} is inactive in Zendesk")
    return errors
