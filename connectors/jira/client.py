"""Jira's HTTP edge: `JiraClient` (the jira library's client and session, one attempt per request, the one
retry layer around it), and the error mapping: every Jira/JSM HTTP error and client exception becomes a
`connectors.base` error here, through the one status and transport tables in `connectors.http`, with
Jira's own text redacted."""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import requests
from jira import JIRA
from jira.exceptions import JIRAError
from jira.resilientsession import ResilientSession

from connectors import http
from connectors.base import ConnectorError, Permanent, Transient
from connectors.http import (
    DoNotRepeat,
    Redactor,
    budget_exhausted,
    error_for_status,
    error_for_transport,
    safe_to_repeat,
)
from connectors.jira.settings import JiraSettings
from connectors.ratelimit import RateLimiter
from connectors.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry


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


def jira_error_messages(response: requests.Response) -> list[str]:
    """The `errorMessages` of a Jira error body, whole and unredacted: for matching, never for showing."""
    try:
        data = response.json()
    except (requests.JSONDecodeError, json.JSONDecodeError, ValueError):
        return []
    messages = data.get("errorMessages") if isinstance(data, dict) else None
    return [str(m) for m in messages] if isinstance(messages, list) else []


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


# ------------------------------------------------------------------------------------------ transport
class JiraClient:
    """The HTTP edge to one Jira site: the `jira.JIRA` client, its session, retries and error mapping.

    Built with `get_server_info=False`, `validate=False` and `max_retries=0`: nothing is sent at
    construction (start-up never fails on a Jira outage), and its `ResilientSession` makes exactly one
    attempt per request; `connectors.retry` is the only retry layer. Paths start with /rest."""

    def __init__(self, settings: JiraSettings, *, session: requests.Session | None = None,
                 retry_policy: RetryPolicy = DEFAULT_POLICY, rate_limiter: RateLimiter | None = None):
        self.settings = settings
        self.limiter = rate_limiter
        self.retry_policy = retry_policy
        self.api_version = int(settings.api_version)
        self.base_url = str(settings.url).rstrip("/")
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        self._redact = settings.redactor()
        # No request here: get_server_info=False, validate=False, check_update off. max_retries=0 makes
        # ResilientSession try exactly once (its loop runs while retry_number <= max_retries).
        self.jira = JIRA(
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
                session.auth = self.jira._session.auth
            for name, value in self.jira._session.headers.items():
                session.headers.setdefault(name, value)
            self.jira._session = session  # type: ignore[assignment]
        self.session: requests.Session = self.jira._session
        self.session.hooks["response"].insert(0, http.count_responses("jira"))

    def platform(self, path: str) -> str:
        """The platform REST path of the configured API version: `/rest/api/{2|3}/{path}`."""
        return f"/rest/api/{self.api_version}/{path.lstrip('/')}"

    def _once(self, method: str, path: str, call: Callable[[], Any]) -> Any:
        if self.limiter is not None:
            wait = self.limiter.try_acquire()
            if wait > 0:
                raise budget_exhausted("Jira", wait)
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

    def call(self, method: str, path: str, call: Callable[[], Any]) -> Any:
        """`call()` (one request to `method path`) through the retry layer, its errors translated."""
        try:
            return call_with_retry(self._once, method, path, call, policy=self.retry_policy,
                                   meter=("jira", method, path))
        except DoNotRepeat as wrapped:
            raise wrapped.error from None

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, on_response: Callable[[requests.Response], None] | None = None
                ) -> requests.Response:
        """One call through the budget, retry and error layers. `on_response` sees every answer, errors
        included, before it is translated (a caller that acts on Jira's own words in a 400)."""
        url = self.base_url + path
        extra: dict[str, Any] = {}
        if not isinstance(self.session, ResilientSession):
            extra["timeout"] = self.settings.timeout_seconds  # ResilientSession adds its own

        def send() -> requests.Response:
            try:
                response = self.session.request(method, url, params=params, json=json, **extra)
            except JIRAError as error:  # the client's ResilientSession raises on an error status
                if on_response is not None and isinstance(error.response, requests.Response):
                    on_response(error.response)
                raise
            if on_response is not None:
                on_response(response)
            return response

        return self.call(method, path, send)

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *,
                 on_response: Callable[[requests.Response], None] | None = None) -> Any:
        response = self.request("GET", path, params=params, on_response=on_response)
        try:
            return response.json()
        except (requests.JSONDecodeError, json.JSONDecodeError):
            raise Transient(f"jira GET {path}: unreadable response") from None
