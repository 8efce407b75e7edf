"""Schemathesis hooks for docs/openapi.yaml: every generated webhook body is sent as bytes fixed before the
call, and, while a `WebhookSigner` is active (`signing(...)`), those exact bytes are signed as Zendesk or
Jira would sign them. Without an active signer the generated (random) credential headers go out as they
are: unsigned deliveries.

Schemathesis runs `before_call` hooks from its global dispatcher only, so the hook is registered on import
and does nothing outside the two webhook routes."""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

import schemathesis
from schemathesis.core import NotSet

from webhooks.signatures import (
    JIRA_SIGNATURE_HEADER,
    ZENDESK_SIGNATURE_HEADER,
    ZENDESK_TIMESTAMP_HEADER,
    jira_signature,
    zendesk_signature,
)

ZENDESK_PATH = "/webhooks/zendesk"
JIRA_PATH = "/webhooks/jira"
# The shared-secret header docs/openapi.yaml documents (JIRA_SHARED_SECRET_HEADER's default).
JIRA_SHARED_SECRET_HEADER = "X-Escalation-Token"


@dataclass(frozen=True)
class WebhookSigner:
    """Credentials for the body about to be sent. `jira_method` is "signature" (X-Hub-Signature) or
    "shared-secret" (the JSM automation header)."""

    zendesk_secret: str
    zendesk_timestamp: str
    jira_secret: str
    jira_shared_secret: str
    jira_method: str = "signature"

    def headers(self, path: str, body: bytes) -> dict[str, str]:
        if path == ZENDESK_PATH:
            return {
                ZENDESK_SIGNATURE_HEADER: zendesk_signature(self.zendesk_secret, self.zendesk_timestamp, body),
                ZENDESK_TIMESTAMP_HEADER: self.zendesk_timestamp,
            }
        if self.jira_method == "shared-secret":
            return {JIRA_SHARED_SECRET_HEADER: self.jira_shared_secret}
        return {JIRA_SIGNATURE_HEADER: jira_signature(self.jira_secret, body)}

    def replaced_headers(self, path: str) -> tuple[str, ...]:
        """Generated credential headers to drop, so that only this signer's method authenticates."""
        if path == ZENDESK_PATH:
            return (ZENDESK_SIGNATURE_HEADER, ZENDESK_TIMESTAMP_HEADER)
        return (JIRA_SIGNATURE_HEADER, JIRA_SHARED_SECRET_HEADER)


_active_signer: ContextVar[WebhookSigner | None] = ContextVar("webhook_signer", default=None)


@contextmanager
def signing(signer: WebhookSigner | None) -> Iterator[None]:
    """Sign every webhook call made inside the block with `signer` (None: send them unsigned)."""
    token = _active_signer.set(signer)
    try:
        yield
    finally:
        _active_signer.reset(token)


def encoded_body(case: Any) -> bytes:
    """The generated body as the bytes to send and sign. Non-ASCII text goes out as UTF-8; a lone surrogate
    (which no UTF-8 encoder accepts) is passed through, so the app sees the invalid bytes a broken client
    would send."""
    if isinstance(case.body, NotSet):
        return b""
    if isinstance(case.body, bytes):
        return case.body
    return json.dumps(case.body, ensure_ascii=False).encode("utf-8", "surrogatepass")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path not in (ZENDESK_PATH, JIRA_PATH):
        return
    body = encoded_body(case)
    kwargs["data"] = body
    signer = _active_signer.get()
    if signer is None:
        return
    headers = {name: value for name, value in dict(case.headers or {}).items()
               if name.lower() not in {replaced.lower() for replaced in signer.replaced_headers(path)}}
    headers.update(signer.headers(path, body))
    case.headers = headers
