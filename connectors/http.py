"""The HTTP edge both vendor connectors share: one table from an HTTP status to a `connectors.base`
error, one table for transport exceptions, the `sent` rules that decide whether a customer could get
a duplicate reply, and the one secret redactor.

`sent` (see README "Delivery guarantees"): an error is marked `sent=False` only when nothing of the
request can have reached the vendor - a 429, any 4xx but 409 (both vendors validate a write as a whole
and store none of it), the client-side budget refusing to send, a connect timeout, a refused connection,
an unresolvable host. 409, 5xx (a gateway may time out after the vendor stored the write), a 503 with
Retry-After (a proxy may answer it after the vendor acted), a read timeout and a reset stay unknown.

A vendor keeps only its own words: which text of its error body is worth showing, and how a message
names the request. Both pass through `Redactor` before they are put in an error.
"""
from __future__ import annotations

import base64
import html
import json
import re
from typing import Any, Iterable, Mapping
from urllib.parse import quote, quote_plus

import requests

from connectors import telemetry
from connectors.base import (
    REDACTED,
    Conflict,
    ConnectorError,
    NotFound,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
    not_sent,
    parse_retry_after,
    redact_urls_in_text,
)

# ------------------------------------------------------------------------------ status -> error
# Row kinds, in the order they are tried. A vendor words each kind its own way (`messages`); the class and
# the `sent` rule are the same for both vendors.
RATE_LIMITED = "rate_limited"  # 429
UNAVAILABLE = "unavailable"  # 503 with a usable Retry-After
UNAUTHORIZED = "unauthorized"  # 401, 403
NOT_FOUND = "not_found"  # 404
CONFLICT = "conflict"  # 409
SERVER_ERROR = "server_error"  # other 5xx
REJECTED = "rejected"  # other 4xx
UNEXPECTED = "unexpected"  # any other non-2xx (1xx, 3xx)


def status_kind(status: int, retry_after: float | None) -> str | None:
    """The row of the table an HTTP status falls in; None for 2xx."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return RATE_LIMITED
    if status == 503 and retry_after is not None:
        return UNAVAILABLE
    if status in (401, 403):
        return UNAUTHORIZED
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return CONFLICT
    if status >= 500:
        return SERVER_ERROR
    if 400 <= status < 500:
        return REJECTED
    return UNEXPECTED


def error_for_status(status: int, retry_after_header: str | None, *, messages: Mapping[str, str],
                     default: str) -> ConnectorError | None:
    """THE mapping from an HTTP error status to our error types (None for 2xx). `messages` words some
    kinds (the keys above) for the vendor; every other kind gets `default`. Messages must already be
    redacted: they go into the error as they are."""
    retry_after = parse_retry_after(retry_after_header)
    kind = status_kind(status, retry_after)
    if kind is None:
        return None
    message = messages.get(kind, default)
    if kind == RATE_LIMITED:
        return not_sent(RateLimited(message, retry_after=retry_after))
    if kind == UNAVAILABLE:
        return RateLimited(message, retry_after=retry_after)
    if kind == UNAUTHORIZED:
        return not_sent(Unauthorized(message))
    if kind == NOT_FOUND:
        return not_sent(NotFound(message))
    if kind == CONFLICT:
        return Conflict(message)
    if kind == SERVER_ERROR:
        return Transient(message)
    if kind == REJECTED:
        return not_sent(Permanent(message))
    return Permanent(message)


def count_responses(vendor: str):
    """A `requests` response hook that counts every answer of `vendor` by endpoint and status, and its
    rate-limit answers (the RATE_LIMITED and UNAVAILABLE rows), in connectors.telemetry. Install it before
    a hook that raises the mapped error."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        request = response.request
        status = response.status_code
        kind = status_kind(status, parse_retry_after(response.headers.get("Retry-After"))) if status >= 300 else None
        telemetry.vendor_response(vendor, (request.method or "?") if request is not None else "?",
                                  (request.url or "") if request is not None else "", status,
                                  kind in (RATE_LIMITED, UNAVAILABLE))
        return response

    return hook


# --------------------------------------------------------------------------- transport -> error
UNREADABLE = "unreadable"  # a 2xx whose body is not JSON (a proxy's page)
NOT_CONNECTED = "not_connected"  # the connection was never established: nothing was sent
TIMED_OUT = "timed_out"  # after connecting: the vendor may have acted
CONNECTION_FAILED = "connection_failed"  # reset, aborted: the vendor may have acted
REQUEST_FAILED = "request_failed"  # any other requests error


def transport_kind(error: BaseException) -> str | None:
    """The row a transport exception falls in; None for an exception that is not the transport's."""
    if isinstance(error, (requests.JSONDecodeError, json.JSONDecodeError)):
        return UNREADABLE
    if request_never_sent(error):
        return NOT_CONNECTED
    if isinstance(error, requests.Timeout):
        return TIMED_OUT
    if isinstance(error, requests.ConnectionError):
        return CONNECTION_FAILED
    if isinstance(error, requests.RequestException):
        return REQUEST_FAILED
    return None


def error_for_transport(error: BaseException, *, messages: Mapping[str, str]) -> ConnectorError | None:
    """THE mapping from a `requests`/JSON exception to our error types; None when `error` is not a
    transport error (the caller maps its client library's own exceptions, or lets our own bug propagate).
    `messages` words every kind above."""
    kind = transport_kind(error)
    if kind is None:
        return None
    if kind == NOT_CONNECTED:
        return not_sent(Transient(messages[kind]))
    return Transient(messages[kind])


def request_never_sent(error: BaseException) -> bool:
    """Whether a `requests` exception proves that no byte of the request reached the server: the TCP
    connection (to the vendor or the proxy) was never established.

    - `ConnectTimeout`: the connect itself timed out (requests raises it only for urllib3's
      ConnectTimeoutError that is not a NewConnectionError) -> never sent.
    - `ConnectionError` wrapping urllib3's `MaxRetryError(reason=NewConnectionError)`: refused, host
      unreachable, name resolution failed (`NameResolutionError` is a NewConnectionError) -> never sent.
    - Any other `ConnectionError` (ProtocolError "Connection aborted", reset by peer, RemoteDisconnected:
      these happen after the request was written), `SSLError`, `ProxyError`, `ReadTimeout` -> False:
      the request may have been read and acted on, so the outcome is unknown.
    """
    if isinstance(error, requests.ConnectTimeout):
        return True
    if not isinstance(error, requests.ConnectionError) or isinstance(error, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return False
    from urllib3.exceptions import NewConnectionError

    cause: Any = error.args[0] if error.args else None
    cause = getattr(cause, "reason", cause)  # requests wraps urllib3's MaxRetryError, which names the cause
    return isinstance(cause, NewConnectionError)


def budget_exhausted(vendor_label: str, wait: float) -> RateLimited:
    """The client-side request budget refused to send: certainly nothing reached the vendor."""
    return not_sent(RateLimited(f"client-side {vendor_label} request budget exhausted", retry_after=wait))


# ------------------------------------------------------------------------ repeating a request
class DoNotRepeat(Exception):
    """Carries a Transient error out of the retry loop for a request that must not be repeated blindly."""

    def __init__(self, error: ConnectorError):
        super().__init__(str(error))
        self.error = error


def safe_to_repeat(method: str, error: ConnectorError) -> bool:
    """GET/PUT are idempotent. A POST (a comment) is repeated only when the vendor certainly did not act
    on it (`sent is False`: a 429, or a connection never established). A 503 with Retry-After is not
    repeated: a proxy may answer it after the vendor stored the comment, and a second POST would reply
    twice."""
    return method in ("GET", "PUT", "HEAD") or error.sent is False


# ------------------------------------------------------------------------------------ redactor
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; no real credential is this short
# An echoed Authorization header (or a proxy's dump of one), whatever credential it carries. Basic is
# masked only when its value decodes to `user:password`, so "Basic authentication failed" stays readable;
# a Bearer value needs a digit and 16 characters for the same reason.
_BASIC = re.compile(r"(?i)\b(basic)(\s+|%20|\+)([A-Za-z0-9+/_-]{4,}={0,2})")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)(?=[A-Za-z0-9._~+/-]*\d)([A-Za-z0-9._~+/-]{16,}={0,2})")


def _base64_forms(text: str) -> set[str]:
    raw = text.encode("utf-8")
    forms = set()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        value = encoded.decode("ascii")
        forms.update({value, value.rstrip("=")})
    return forms


def _text_forms(text: str) -> set[str]:
    """How a value can appear in an error page: as is, percent-encoded (path or form style), HTML- or
    JSON-escaped (also with `\\/`)."""
    json_form = json.dumps(text)[1:-1]
    return {text, quote(text, safe=""), quote(text), quote_plus(text), html.escape(text),
            json_form, json_form.replace("/", "\\/")}


def _basic_value(match: re.Match[str]) -> str:
    value = match.group(3)
    try:
        decoded = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                                   validate=True)
    except (ValueError, TypeError):
        return match.group()
    if b":" not in decoded:
        return match.group()
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


class Redactor:
    """THE secret redactor of the vendor edge: every text a vendor (or a proxy in front of it) sends back
    passes through it before it reaches an error message, a log or the database.

    Masks, with `***`: each secret as written, percent-encoded, HTML- and JSON-escaped and in base64;
    each `(user, password)` pair as the `Authorization: Basic` value built from it (standard and URL-safe
    base64, padded or not; Zendesk's is `base64("email/token:TOKEN")`, Jira's `base64("email:TOKEN")`) and
    as `user:password`; any `Basic <user:password in base64>` and `Bearer <token>` even when it carries
    a credential this process does not know; URL passwords and password-like query parameters
    (`connectors.base.redact_urls_in_text`)."""

    def __init__(self, secrets: Iterable[str | None] = (), *, basic_credentials: Iterable[tuple[str, str]] = ()):
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms |= _text_forms(secret) | _base64_forms(secret)
        for user, password in basic_credentials:
            if user and password:
                pair = f"{user}:{password}"
                forms |= _text_forms(pair) | _base64_forms(pair)
        # Longest first: a pair's form is masked whole before the token inside it.
        ordered = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        text = _BASIC.sub(_basic_value, text)
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        return redact_urls_in_text(text)
