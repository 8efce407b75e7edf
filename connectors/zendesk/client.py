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
the neutral model needs the raw sideloads (users, organizations) anyway."""
from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from zenpy.lib.exception import APIException, RecordNotFoundException, ZenpyException

from connectors import http
from connectors.base import ConnectorError, NotFound, Permanent, Transient
from connectors.http import Redactor, budget_exhausted, error_for_status, error_for_transport
from connectors.ratelimit import RateLimiter, limiter_for
from connectors.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from connectors.zendesk.settings import ZendeskSettings


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
        self.session.hooks["response"] = [http.count_responses("zendesk"), self._raise_mapped]
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
        return call_with_retry(self._send_once, method, path, params, body, policy=self.retry_policy,
                               meter=("zendesk", method, path))

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

            return call_with_retry(call, policy=self.retry_policy, meter=("zendesk", "GET", "/api/v2/users/me"))
        return (self.get("/api/v2/users/me") or {}).get("user") or {}
