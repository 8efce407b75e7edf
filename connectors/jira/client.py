"""Jira's error edge: every Jira/JSM HTTP error and client exception becomes a `connectors.base` error
here, through the one status and transport tables in `connectors.http`, with Jira's own text redacted."""
from __future__ import annotations

import json

import requests
from jira.exceptions import JIRAError

from connectors import http
from connectors.base import ConnectorError, Permanent, Transient
from connectors.http import Redactor, error_for_status, error_for_transport


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
