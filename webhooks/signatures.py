"""Webhook authentication on the raw request body, before anything parses it.

Modelled on slack_sdk's SignatureVerifier: raw bytes in, `hmac.compare_digest` for every comparison,
and an injectable clock so replay-window tests need no sleeping or patching.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

from webhooks.errors import SignatureError

Clock = Callable[[], datetime]

ZENDESK_SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
JIRA_SIGNATURE_HEADER = "X-Hub-Signature"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + body)). Zendesk uses the signing secret as its literal
    UTF-8 text (it looks like base64 but is not decoded) and the timestamp header exactly as sent."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def jira_signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature value Jira sends for a webhook with a secret: "sha256=<hex HMAC of the body>"."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class ZendeskSignatureVerifier:
    def __init__(self, secret: str, *, max_age_seconds: int = 300, clock: Clock = utc_now):
        if not secret:
            raise ValueError("a Zendesk signing secret is required")
        self._secret = secret
        self._max_age = timedelta(seconds=max_age_seconds)
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise SignatureError unless the signature matches and the timestamp is within the window."""
        signature = headers.get(ZENDESK_SIGNATURE_HEADER)
        timestamp = headers.get(ZENDESK_TIMESTAMP_HEADER)
        if not signature:
            raise SignatureError(f"missing {ZENDESK_SIGNATURE_HEADER} header")
        if not timestamp:
            raise SignatureError(f"missing {ZENDESK_TIMESTAMP_HEADER} header")
        expected = zendesk_signature(self._secret, timestamp, body)
        if not hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace")):
            raise SignatureError("invalid signature")
        # Checked after the signature so that this message is only ever given for a genuine but replayed
        # (or clock-skewed) delivery.
        signed_at = _parse_timestamp(timestamp)
        if abs(self._clock() - signed_at) > self._max_age:
            raise SignatureError("timestamp outside the allowed window")


def _parse_timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SignatureError(f"{ZENDESK_TIMESTAMP_HEADER} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


class JiraVerifier:
    """Jira admin webhooks sign with X-Hub-Signature; JSM automation "Send web request" cannot sign, so
    it sends a configured header carrying a shared secret instead. Either configured method is accepted.

    Jira deliveries carry no signed timestamp and are retried up to ~30 minutes late, so there is no
    replay window here: replays are caught by de-duplication on X-Atlassian-Webhook-Identifier/content.
    """

    def __init__(
        self,
        *,
        webhook_secret: str | None,
        shared_secret_header: str,
        shared_secret: str | None,
    ):
        if not webhook_secret and not shared_secret:
            raise ValueError("a Jira webhook secret or shared secret is required")
        self._webhook_secret = webhook_secret or None
        self._shared_header = shared_secret_header
        self._shared_secret = shared_secret or None

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Return the method that authenticated the delivery ("signature" or "shared-secret")."""
        signature = headers.get(JIRA_SIGNATURE_HEADER)
        if signature:
            if self._webhook_secret is None:
                raise SignatureError(f"{JIRA_SIGNATURE_HEADER} received but JIRA_WEBHOOK_SECRET is not configured")
            expected = jira_signature(self._webhook_secret, body)
            if not hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("utf-8", "replace")):
                raise SignatureError("invalid signature")
            return "signature"
        token = headers.get(self._shared_header)
        if token:
            if self._shared_secret is None:
                raise SignatureError(f"{self._shared_header} received but JIRA_SHARED_SECRET is not configured")
            if not hmac.compare_digest(self._shared_secret.encode("utf-8"), token.encode("utf-8", "replace")):
                raise SignatureError(f"invalid {self._shared_header}")
            return "shared-secret"
        raise SignatureError(f"missing {JIRA_SIGNATURE_HEADER} or {self._shared_header} header")
