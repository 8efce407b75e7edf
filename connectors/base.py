"""The one interface every helpdesk connector implements, and the errors it may raise.

Vendor libraries' exceptions (zenpy, jira, requests) are translated into these types at the connector
edge, once; retry and dead-letter decisions in the core look only at these types.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar, Iterator, Protocol, Sequence, runtime_checkable

from integration.model import Decision, Ticket

# ---------------------------------------------------------------------------------- secrets in text
# "Secrets never reach an error message" is part of the error contract, so the vendor-neutral URL half of
# the one redactor lives here (the core and the web edge use it); connectors.http.Redactor adds the
# credential forms a vendor connector knows.
REDACTED = "***"
_SECRET_QUERY_KEYS = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# A URL inside free text (an exception message, an error page): up to the next whitespace or quote;
# punctuation that ends the sentence rather than the URL is peeled off and put back after masking.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SENTENCE_PUNCTUATION = ".,;:!?)]}>'\""


def redact_url(url: str | None) -> str:
    """A URL fit for logs, errors and reprs (DATABASE_URL, QUEUE_URL, REDIS_URL, a link in an error page):
    `scheme://user:***@host/db`, with password-like query parameters (`?password=`, `sslpassword=`,
    `api_key=`) masked too. Never raises."""
    if not url:
        return ""
    try:
        from sqlalchemy import make_url

        parsed = make_url(url)
        if parsed.query:
            query = {k: (REDACTED if _SECRET_QUERY_KEYS.search(k) else v) for k, v in parsed.query.items()}
            parsed = parsed.set(query=query)
        return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", REDACTED)
    except Exception:  # noqa: BLE001 - a description must never fail or leak
        scheme, sep, rest = str(url).partition("://")
        if not sep:
            return REDACTED
        # Keep what cannot hold a secret: the host part after the last "@", without a query.
        host = rest.rsplit("@", 1)[-1].split("?", 1)[0]
        return f"{scheme}://{REDACTED}@{host}" if "@" in rest else f"{scheme}://{host}"


def _may_hold_secret(url: str) -> bool:
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    query = url.partition("?")[2]
    return "@" in authority or bool(query and _SECRET_QUERY_KEYS.search(query))


def redact_urls_in_text(text: str) -> str:
    """`text` with every URL that carries a password (`user:pass@host`) or a password-like query
    parameter masked by `redact_url`; other URLs are left exactly as written."""
    def mask(match: re.Match[str]) -> str:
        found = match.group()
        url = found.rstrip(_SENTENCE_PUNCTUATION)
        if not _may_hold_secret(url):
            return found
        return redact_url(url) + found[len(url):]

    return _URL_IN_TEXT.sub(mask, text)


class ConfigurationError(Exception):
    """A connector's settings are incomplete or contradictory (e.g. ZENDESK_EMAIL without ZENDESK_API_TOKEN).
    Raised at start-up so the process fails fast instead of silently running as a dry run. The message
    names settings, never their values."""


def credential_given(value: Any) -> bool:
    """Whether a credential setting is set: a non-blank string or SecretStr (its value is never shown)."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return bool(value and str(value).strip())


class AllOrNothingCredentials:
    """Mixin for a vendor's settings class: its credential settings are all set (live) or none (dry run).
    Subclasses name the vendor and list what is set and what is missing."""

    vendor_label: ClassVar[str] = "vendor"
    env_prefix_label: ClassVar[str] = "VENDOR_"
    missing_separator: ClassVar[str] = "; "

    def credential_settings_given(self) -> list[str]:
        raise NotImplementedError

    def missing_settings(self) -> list[str]:
        raise NotImplementedError

    def check_complete(self) -> bool:
        """True when the credentials are complete, False when none is set (dry run). Raises
        ConfigurationError when some are set but not all: a typo must not silently turn into a dry run."""
        given = self.credential_settings_given()
        if not given:
            return False
        missing = self.missing_settings()
        if missing:
            raise ConfigurationError(
                f"{self.vendor_label} settings incomplete: {', '.join(given)} set, but missing "
                f"{self.missing_separator.join(missing)}. Set the missing settings, or unset every {self.env_prefix_label}* "
                "credential to run as a dry run.")
        return True


class ConnectorError(Exception):
    """Base for every error a connector raises. Messages never contain secrets. What is retried is
    decided by type in `connectors.retry` (Transient, RateLimited), not by the error itself."""

    # Whether the failed call may have written anything. False: certainly nothing of it reached the
    # vendor (refused before sending, connect timeout, 429/4xx on the only request) - set it on the
    # instance only then; an `apply` that already made a write must leave it None. None: unknown (a read
    # timeout after sending). The pipeline abandons an intent whose apply raised with sent=False.
    sent: bool | None = None


def not_sent(error: ConnectorError) -> ConnectorError:
    """`error`, marked as certainly not having reached the vendor (`sent=False`)."""
    error.sent = False
    return error


class Transient(ConnectorError):
    """Network failure, timeout, 5xx: try again later."""


class RateLimited(Transient):
    """429 (or 503 with Retry-After): wait `retry_after` seconds, then try again."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(ConnectorError):
    """The ticket changed under us (Zendesk safe_update 409). Not retried by `connectors.retry`: the
    processing pass re-fetches and re-decides."""


class NotFound(ConnectorError):
    """The ticket (or a referenced group/field) does not exist or is not visible: dead-letter."""


class Unauthorized(ConnectorError):
    """Credentials rejected (401/403): dead-letter and alert; retrying will not help."""


class Permanent(ConnectorError):
    """Any other error that retrying cannot fix (400/422 validation, bad mapping)."""


# The parts of a decision a connector writes, each confirmed on its own: the structured changes (priority,
# group, tags, fields), the customer-visible reply, the internal note. A vendor may need several requests
# for one decision (Zendesk takes one comment per update; JSM posts comments apart from the field edit).
PART_FIELDS, PART_REPLY, PART_NOTE = "fields", "reply", "note"

# progress(written, sending): called by `apply` between two requests of one decision - `written` every
# part the vendor has confirmed so far, `sending` the parts of the request about to go out. The pipeline
# stores it durably, so a worker killed between two requests is recovered part by part.
ApplyProgress = Callable[[list[str], list[str]], None]


@dataclass
class ApplyResult:
    """What `apply` did, for the audit log."""

    writes: int = 0  # vendor API write calls made
    requests: list[dict[str, Any]] = field(default_factory=list)  # method, path, status per call (no bodies with secrets)
    dry_run: bool = False
    parts: list[str] = field(default_factory=list)  # PART_* the vendor confirmed written, in order
    # The ticket's updated_at as the vendor returned it with the last write (None: the vendor does not say,
    # e.g. Jira's 204): what the echo of that write will report (integration.pipeline.seen).
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PostedComment:
    """A comment the integration user posted on a ticket (`Connector.own_comments`)."""

    body: str
    public: bool
    created_at: datetime | None = None


class ConnectorDefaults:
    """What a connector answers where its vendor (or test double) offers nothing more. Every connector
    derives from it, so the core calls each member of `Connector` unconditionally instead of probing."""

    # Whether `field_changes` reads the vendor's change history (Zendesk: one audits request); without it
    # the engine falls back to the ticket's `updated_at` and the pipeline asks nothing.
    reads_field_history: ClassVar[bool] = False

    def field_changes(self, ticket: Ticket) -> dict[str, datetime]:
        """When each matrix attribute of `ticket` last changed, from the vendor's history; {} when unknown."""
        return {}

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment] | None:
        """The comments the integration user posted after `since` (vendor time); None when this connector
        cannot list them (one that writes a decision in one request: its comments are taken as written
        with the fields)."""
        return None

    def fetch_tickets(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        """Several tickets in as few reads as the vendor allows (a burst of events across tickets), by id;
        a ticket left out is read alone by its pass. {}: this connector reads tickets one at a time."""
        return {}

    def webhook_ticket_stamp(self, payload: bytes) -> datetime | None:
        """The ticket's updated_at as a stored webhook body reports it (the version of the ticket the event
        describes), or None when the body does not carry one (catch-up and admin hints, bodies that only say
        when the webhook was sent). None always costs a read: the pass fetches the ticket."""
        return None


@runtime_checkable
class Connector(Protocol):
    vendor: str  # "zendesk" | "jira"
    reads_field_history: ClassVar[bool]

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        """Read the ticket from the vendor API and normalize it. Raises NotFound, Unauthorized, ..."""

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        """Carry out the decision with as few writes as the vendor allows; zero when it writes nothing.
        `ticket` is the snapshot the decision was made from (its version_token guards concurrent edits:
        a stale snapshot raises Conflict). A connector that needs several requests for one decision reports
        to `progress` between them (one that writes in one request has nothing to report) and returns the
        parts written in `ApplyResult.parts`."""

    def own_user_id(self) -> str | None:
        """The vendor user id the connector writes as; events by this actor are the service's own echoes."""

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment] | None:
        """The comments the integration user posted after `since` (vendor time), or None when the connector
        cannot list them. Crash recovery looks there for a reply or note it cannot see in the ticket's
        fields (see ConnectorDefaults)."""

    def field_changes(self, ticket: Ticket) -> dict[str, datetime]:
        """When each matrix attribute last changed (see ConnectorDefaults.reads_field_history)."""

    def fetch_tickets(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        """Several tickets in bulk, by id (see ConnectorDefaults)."""

    def webhook_ticket_stamp(self, payload: bytes) -> datetime | None:
        """The ticket's updated_at a stored webhook body reports, or None (see ConnectorDefaults)."""

    def changed_since(self, watermark: str | None) -> Iterator[tuple[str, str]]:
        """Catch-up scan: yield (ticket_id, new_watermark) for tickets changed since `watermark`
        (Zendesk incremental export cursor / Jira JQL on `updated`)."""


@dataclass(frozen=True)
class VendorPlugin:
    """Everything the service needs from one helpdesk, found by vendor name in `connectors.vendors.PLUGINS`
    (never by module name). A capability a vendor does not have is None.

    - `settings()`: the vendor's settings (its environment variables); `.describe()` is the banner line.
    - `build(matrix, *, database_url, redis_url)`: the live connector, or None when no credential is set
      (dry run); raises ConfigurationError when some are set but not all. The URLs say where the shared
      request budget lives (a vendor without a client-side budget ignores them).
    - `snapshot_from_webhook(payload, matrix, *, previous)`: a best-effort Ticket from one stored webhook.
    - `check_remote(matrix)`: `escalation validate --remote`: one message per thing the account lacks.
    - `sla_plan(loaded, **urls)`, `sla_apply(loaded, **urls)`, `sla_check(loaded, **urls)`: report objects
      the cli renders (`render()`, `to_dict()`, `ok`); `sla_sync(matrix, *, enabled, **urls)`: the periodic
      job (the plan it applied, or None when off or without credentials)."""

    name: str
    settings: Callable[[], Any]
    build: Callable[..., Connector | None]
    snapshot_from_webhook: Callable[..., Ticket | None]
    check_remote: Callable[..., list[str]]
    sla_plan: Callable[..., Any] | None = None
    sla_apply: Callable[..., Any] | None = None
    sla_check: Callable[..., Any] | None = None
    sla_sync: Callable[..., Any] | None = None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    from datetime import timezone

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def fold_reply_times(ticket: Ticket, previous: Ticket | None, reply_at: datetime | None) -> Ticket:
    """`ticket` (built from one webhook payload) with the reply facts of the payloads folded so far:
    the earliest first public agent reply and the latest one, counting `reply_at` (this payload's
    acknowledging comment, if any) and `previous` (the same ticket from the earlier payloads)."""
    firsts = [t for t in (previous.first_public_agent_reply_at if previous else None, reply_at) if t is not None]
    lasts = [t for t in (previous.last_public_agent_reply_at if previous else None, reply_at) if t is not None]
    return ticket.with_(first_public_agent_reply_at=min(firsts) if firsts else ticket.first_public_agent_reply_at,
                        last_public_agent_reply_at=max(lasts) if lasts else ticket.last_public_agent_reply_at)
