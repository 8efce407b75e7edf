"""Alert channels: Slack incoming webhook, Microsoft Teams workflow webhook, a generic JSON webhook signed
with HMAC-SHA256, and e-mail over SMTP. What to send and when is decided in `integration.alerts`; this
module formats one `AlertMessage` for one channel and sends it, translating every failure once into the
connector error types (connectors.base) so that the one retry layer (connectors.retry) decides:

- HTTP 429 (and 503 with Retry-After) -> RateLimited(retry_after); 5xx, timeouts, refused or reset
  connections -> Transient; 401/403 -> Unauthorized; 404/410 (a deleted Slack hook, a removed Teams
  workflow) -> NotFound; any other 4xx -> Permanent.
- SMTP: authentication refused -> Unauthorized; a 4xx reply, a dropped connection or a timeout ->
  Transient; a 5xx reply (recipient or sender refused) -> Permanent.
- A channel whose environment variable is unset or empty -> Permanent (naming the variable).

Secrets. The webhook URLs (Slack's and Teams' carry their credential in the path), the signing secret and
the SMTP password are read from the environment variables the matrix names, at send time. Error messages
are built here from the channel name, the HTTP status or SMTP code and the exception type; any text taken
from a server reply is redacted of every secret value. Requests go through the standard library's
urllib.request rather than requests/urllib3, whose DEBUG log prints every request's path, and a Slack or
Teams path is the secret itself.

Signed webhook (kind `webhook`): `POST` of the JSON document below with these headers:

    Content-Type: application/json
    X-Escalation-Alert-Id: <stable id of the alert: the same on a re-send>
    X-Escalation-Timestamp: <Unix seconds when this request was signed>
    X-Escalation-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes with the shared secret,
compares in constant time, and refuses timestamps older than a few minutes (replay). Body:
`{"id", "event", "title", "text", "ticket": {"vendor", "id", "url", "subject"}, "level": {"id", "name"},
"owner", "clock", "time_left", "overdue_by", "decided_at"}` (absent values are null).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Mapping, Protocol

from connectors.base import NotFound, Permanent, RateLimited, Transient, Unauthorized, parse_retry_after
from connectors.retry import RetryPolicy, call_with_retry
from matrix_config.schema import AlertChannel


class AlertMessage(Protocol):
    """What a channel formats: integration.alerts.AlertMessage (connectors know only the core's model, so
    the message is described here by the attributes the formats read)."""

    alert_id: str
    event: str
    title: str
    text: str
    vendor: str
    ticket_id: str
    ticket_url: str | None
    subject: str | None
    level: str | None
    level_name: str | None
    owner: str | None
    clock: str | None
    time_left: str | None
    overdue_by: str | None
    decided_at: str | None

    def facts(self) -> list[tuple[str, str]]: ...

# Alerts are worth little late and a sender thread should not sit on one channel: fewer, shorter
# retries than a ticket write. A longer Retry-After sends the row back to the outbox with that delay.
ALERT_RETRY_POLICY = RetryPolicy(attempts=3, max_total_seconds=20.0, backoff_base=0.5, backoff_max=5.0,
                                 max_retry_after=10.0)

SIGNATURE_HEADER = "X-Escalation-Signature"
TIMESTAMP_HEADER = "X-Escalation-Timestamp"
ALERT_ID_HEADER = "X-Escalation-Alert-Id"
USER_AGENT = "escalation-matrix-alerts/1"


class _Secrets:
    """The environment values one channel uses; `redact` removes every one of them from a text."""

    def __init__(self, name: str, environ: Mapping[str, str]):
        self.name, self.environ = name, environ
        self.values: list[str] = []
        self.logins: list[tuple[str, str]] = []

    def read(self, variable: str) -> str:
        value = (self.environ.get(variable) or "").strip()
        if not value:
            raise Permanent(f"channel '{self.name}': environment variable {variable} is not set")
        self.values.append(value)
        return value

    def read_url(self, variable: str) -> str:
        """A webhook URL: its path and query are secret too (Slack's and Teams' credential is the path), and
        a receiver may quote them back in an error without the scheme and host."""
        url = self.read(variable)
        parts = urllib.parse.urlsplit(url)
        self.values += [fragment for fragment in (parts.path, parts.query) if len(fragment) > 1]
        self.values += [piece for piece in re.split(r"[/?&=;]", f"{parts.path}?{parts.query}") if len(piece) >= 8]
        return url

    def redact(self, text: str) -> str:
        from connectors.http import Redactor  # the vendor edge's redactor: encoded forms, Basic/Bearer, URLs

        text = Redactor(self.values, basic_credentials=self.logins)(text)
        for value in sorted(self.values, key=len, reverse=True):  # short URL pieces below its minimum too
            text = text.replace(value, "***")
        return text


# ------------------------------------------------------------------------------------ formats
def slack_escape(text: str) -> str:
    """Slack's mrkdwn reads <...> as links and mentions (<!channel>): a ticket subject must not become one."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    link = f"\n<{message.ticket_url}|Open ticket {message.ticket_id}>" if message.ticket_url else ""
    facts = "  ".join(f"*{label}:* {slack_escape(value)}" for label, value in message.facts())
    return {
        # the notification preview, and clients without blocks
        "text": slack_escape(f"{message.title}\n{message.text}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": (slack_escape(message.text) + link)[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": facts[:3000] or " "}]},
        ],
    }


def teams_payload(message: AlertMessage) -> dict[str, Any]:
    """A Teams Workflows webhook ("When a Teams webhook request is received") takes a message whose
    attachments are Adaptive Cards."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": message.text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in message.facts()]},
        ],
    }
    if message.ticket_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": f"Open ticket {message.ticket_id}",
                            "url": message.ticket_url}]
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


def webhook_document(message: AlertMessage) -> dict[str, Any]:
    return {
        "id": message.alert_id, "event": message.event, "title": message.title, "text": message.text,
        "ticket": {"vendor": message.vendor, "id": message.ticket_id, "url": message.ticket_url,
                   "subject": message.subject},
        "level": {"id": message.level, "name": message.level_name} if message.level else None,
        "owner": message.owner, "clock": message.clock, "time_left": message.time_left,
        "overdue_by": message.overdue_by, "decided_at": message.decided_at,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Escalation-Signature value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def email_message(message: AlertMessage, sender: str, to: list[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    mail["X-Escalation-Alert-Id"] = message.alert_id
    facts = "\n".join(f"{label}: {value}" for label, value in message.facts())
    mail.set_content(f"{message.text}\n\n{facts}\n")
    return mail


# ------------------------------------------------------------------------------------ transport
def _post_json(name: str, url: str, payload: dict[str, Any], timeout: float, secrets: _Secrets,
               headers: Mapping[str, str] | None = None, body: bytes | None = None) -> None:
    data = body if body is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        what = f"channel '{name}': HTTP {status}"
        try:
            detail = secrets.redact(exc.read(300).decode("utf-8", "replace")).strip()
        except Exception:  # noqa: BLE001 - the body is only a hint
            detail = ""
        if detail:
            what += f" ({detail[:200]})"
        if status == 429 or (status == 503 and retry_after is not None):
            raise RateLimited(what, retry_after=retry_after) from None
        if status >= 500 or status == 408:
            raise Transient(what) from None
        if status in (401, 403):
            raise Unauthorized(what) from None
        if status in (404, 410):
            raise NotFound(f"{what}: the webhook no longer exists; check the URL in its environment variable") from None
        raise Permanent(what) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        kind = type(reason).__name__ if isinstance(reason, BaseException) else "error"
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise Permanent(f"channel '{name}': TLS certificate not trusted") from None
        raise Transient(f"channel '{name}': connection failed ({kind})") from None
    except (TimeoutError, socket.timeout):
        raise Transient(f"channel '{name}': no answer within {timeout:g}s") from None
    except (ConnectionError, OSError) as exc:
        raise Transient(f"channel '{name}': connection failed ({type(exc).__name__})") from None


def _send_email(name: str, channel: AlertChannel, message: AlertMessage, secrets: _Secrets) -> None:
    settings = channel.email
    password = secrets.read(settings.password_env) if settings.password_env else None
    if password and settings.username:
        secrets.logins.append((settings.username, password))
    mail = email_message(message, settings.sender, list(settings.to))
    timeout = channel.timeout_seconds
    try:
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with client:
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.username and password is not None:
                client.login(settings.username, password)
            client.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise Unauthorized(f"channel '{name}': SMTP login refused ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        error = Transient if all(400 <= code < 500 for code in codes) else Permanent
        raise error(f"channel '{name}': SMTP recipients refused ({', '.join(map(str, codes))})") from None
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        error = Transient if 400 <= code < 500 else Permanent
        raise error(f"channel '{name}': SMTP {code} ({secrets.redact(_smtp_text(exc.smtp_error))[:200]})") from None
    except smtplib.SMTPNotSupportedError:
        raise Permanent(f"channel '{name}': the SMTP server does not offer {settings.security.upper()} "
                        "or AUTH; check `security`") from None
    except (smtplib.SMTPServerDisconnected, TimeoutError, socket.timeout, ConnectionError, OSError,
            smtplib.SMTPException) as exc:
        raise Transient(f"channel '{name}': SMTP {type(exc).__name__}") from None


def _smtp_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def send(name: str, channel: AlertChannel, message: AlertMessage, environ: Mapping[str, str] | None = None) -> None:
    """One attempt at sending `message` to `channel`; raises connectors.base errors (no secrets in them)."""
    secrets = _Secrets(name, os.environ if environ is None else environ)
    timeout = channel.timeout_seconds
    if channel.slack is not None:
        _post_json(name, secrets.read_url(channel.slack.webhook_url_env), slack_payload(message), timeout, secrets)
    elif channel.teams is not None:
        _post_json(name, secrets.read_url(channel.teams.webhook_url_env), teams_payload(message), timeout, secrets)
    elif channel.webhook is not None:
        url = secrets.read_url(channel.webhook.webhook_url_env)
        secret = secrets.read(channel.webhook.secret_env)
        body = json.dumps(webhook_document(message), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {ALERT_ID_HEADER: message.alert_id, TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(secret, timestamp, body)}
        _post_json(name, url, {}, timeout, secrets, headers=headers, body=body)
    elif channel.email is not None:
        _send_email(name, channel, message, secrets)
    else:  # the schema allows exactly one kind
        raise Permanent(f"channel '{name}' has no kind")


def send_with_retry(name: str, channel: AlertChannel, message: AlertMessage, *, policy: RetryPolicy | None = None,
                    environ: Mapping[str, str] | None = None) -> None:
    """`send` through the one retry layer (Transient retried with backoff, Retry-After honoured)."""
    call_with_retry(send, name, channel, message, environ, policy=policy or ALERT_RETRY_POLICY)
