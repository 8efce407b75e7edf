"""Webhook signature checks with the vendors' documented algorithms (vector from the vendor README, tests/vendor/VENDOR_README.md)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone

import pytest

from webhooks.errors import SignatureError
from webhooks.signatures import (
    JiraVerifier,
    ZendeskSignatureVerifier,
    jira_signature,
    zendesk_signature,
)

VECTOR_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
VECTOR_TIMESTAMP = "2021-07-25T10:00:00Z"
VECTOR_BODY = b'{"say": "hello"}'
VECTOR_SIGNATURE = "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0="
VECTOR_TIME = datetime(2021, 7, 25, 10, 0, tzinfo=timezone.utc)


def test_vendor_readme_states_the_vector_this_file_uses(vendor_dir):
    readme = (vendor_dir / "VENDOR_README.md").read_text()
    assert VECTOR_SECRET in readme and VECTOR_TIMESTAMP in readme and VECTOR_SIGNATURE in readme
    assert re.search(r'body `\{"say": "hello"\}`', readme)


def test_zendesk_signature_matches_documented_vector():
    assert zendesk_signature(VECTOR_SECRET, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_zendesk_secret_is_used_as_literal_text_not_base64_decoded():
    decoded_key = base64.b64decode(VECTOR_SECRET)
    wrong = base64.b64encode(
        hmac.new(decoded_key, VECTOR_TIMESTAMP.encode() + VECTOR_BODY, hashlib.sha256).digest()
    ).decode()
    assert wrong != VECTOR_SIGNATURE


def _zendesk_verifier(now: datetime = VECTOR_TIME, max_age: int = 300) -> ZendeskSignatureVerifier:
    return ZendeskSignatureVerifier(VECTOR_SECRET, max_age_seconds=max_age, clock=lambda: now)


def _zendesk_headers(signature: str = VECTOR_SIGNATURE, timestamp: str = VECTOR_TIMESTAMP) -> dict[str, str]:
    return {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


def test_zendesk_verifier_accepts_the_vector():
    _zendesk_verifier().verify(_zendesk_headers(), VECTOR_BODY)


@pytest.mark.parametrize(
    "headers, body, message",
    [
        ({"X-Zendesk-Webhook-Signature-Timestamp": VECTOR_TIMESTAMP}, VECTOR_BODY,
         "missing X-Zendesk-Webhook-Signature header"),
        ({"X-Zendesk-Webhook-Signature": VECTOR_SIGNATURE}, VECTOR_BODY,
         "missing X-Zendesk-Webhook-Signature-Timestamp header"),
        (_zendesk_headers(), b'{"say": "hello!"}', "invalid signature"),  # body changed by one byte
        (_zendesk_headers(timestamp="2021-07-25T10:00:01Z"), VECTOR_BODY, "invalid signature"),
        (_zendesk_headers(signature="not-base64"), VECTOR_BODY, "invalid signature"),
        (_zendesk_headers(signature="Ĳ"), VECTOR_BODY, "invalid signature"),  # non-ASCII header value
    ],
)
def test_zendesk_verifier_rejects(headers, body, message):
    with pytest.raises(SignatureError) as info:
        _zendesk_verifier().verify(headers, body)
    assert info.value.message == message
    assert info.value.status == 401


def test_zendesk_verifier_rejects_signature_made_with_another_secret():
    other = zendesk_signature("another-secret", VECTOR_TIMESTAMP, VECTOR_BODY)
    with pytest.raises(SignatureError, match="^invalid signature$"):
        _zendesk_verifier().verify(_zendesk_headers(signature=other), VECTOR_BODY)


@pytest.mark.parametrize("offset_seconds", [-301, 301, -3600, 86400])
def test_zendesk_replay_outside_the_window_is_rejected_in_both_directions(offset_seconds):
    # A genuine signature, checked by a clock that is too far after (replay) or before (future-dated) it.
    verifier = _zendesk_verifier(now=VECTOR_TIME + timedelta(seconds=offset_seconds))
    with pytest.raises(SignatureError) as info:
        verifier.verify(_zendesk_headers(), VECTOR_BODY)
    assert info.value.message == "timestamp outside the allowed window"


@pytest.mark.parametrize("offset_seconds", [-300, -1, 0, 1, 300])
def test_zendesk_timestamps_inside_the_window_are_accepted(offset_seconds):
    _zendesk_verifier(now=VECTOR_TIME + timedelta(seconds=offset_seconds)).verify(_zendesk_headers(), VECTOR_BODY)


def test_zendesk_window_is_configurable():
    verifier = _zendesk_verifier(now=VECTOR_TIME + timedelta(seconds=61), max_age=60)
    with pytest.raises(SignatureError, match="timestamp outside the allowed window"):
        verifier.verify(_zendesk_headers(), VECTOR_BODY)


def test_zendesk_unparseable_timestamp_is_rejected_even_when_signed():
    timestamp = "yesterday"
    signature = zendesk_signature(VECTOR_SECRET, timestamp, VECTOR_BODY)
    with pytest.raises(SignatureError) as info:
        _zendesk_verifier().verify(_zendesk_headers(signature, timestamp), VECTOR_BODY)
    assert info.value.message == "X-Zendesk-Webhook-Signature-Timestamp is not an ISO-8601 time"


def test_zendesk_verifier_refuses_an_empty_secret():
    with pytest.raises(ValueError):
        ZendeskSignatureVerifier("", clock=lambda: VECTOR_TIME)


# --- Jira ---

JIRA_SECRET = "jira-webhook-secret"
JIRA_BODY = b'{"webhookEvent":"jira:issue_updated","issue":{"key":"HELP-1"}}'


def test_jira_signature_is_sha256_hex_of_the_raw_body():
    expected = hmac.new(JIRA_SECRET.encode(), JIRA_BODY, hashlib.sha256).hexdigest()
    assert jira_signature(JIRA_SECRET, JIRA_BODY) == f"sha256={expected}"


def _jira(webhook_secret="jira-webhook-secret", shared_secret="shared-token") -> JiraVerifier:
    return JiraVerifier(
        webhook_secret=webhook_secret, shared_secret_header="X-Escalation-Token", shared_secret=shared_secret
    )


def test_jira_signed_delivery_is_accepted():
    assert _jira().verify({"X-Hub-Signature": jira_signature(JIRA_SECRET, JIRA_BODY)}, JIRA_BODY) == "signature"


def test_jira_signature_hex_case_does_not_matter():
    signature = "sha256=" + jira_signature(JIRA_SECRET, JIRA_BODY)[len("sha256="):].upper()
    assert _jira().verify({"X-Hub-Signature": signature}, JIRA_BODY) == "signature"


def test_jira_shared_secret_header_is_accepted_for_automation():
    assert _jira().verify({"X-Escalation-Token": "shared-token"}, JIRA_BODY) == "shared-secret"


@pytest.mark.parametrize(
    "verifier, headers, message",
    [
        (_jira(), {}, "missing X-Hub-Signature or X-Escalation-Token header"),
        (_jira(), {"X-Hub-Signature": jira_signature("wrong", JIRA_BODY)}, "invalid signature"),
        (_jira(), {"X-Hub-Signature": jira_signature(JIRA_SECRET, JIRA_BODY + b" ")}, "invalid signature"),
        (_jira(), {"X-Hub-Signature": "sha1=" + "0" * 40}, "invalid signature"),
        (_jira(), {"X-Escalation-Token": "shared-token-"}, "invalid X-Escalation-Token"),
        (_jira(shared_secret=None), {"X-Escalation-Token": "shared-token"},
         "X-Escalation-Token received but JIRA_SHARED_SECRET is not configured"),
        (_jira(webhook_secret=None), {"X-Hub-Signature": jira_signature(JIRA_SECRET, JIRA_BODY)},
         "X-Hub-Signature received but JIRA_WEBHOOK_SECRET is not configured"),
    ],
)
def test_jira_verifier_rejects(verifier, headers, message):
    with pytest.raises(SignatureError) as info:
        verifier.verify(headers, JIRA_BODY)
    assert info.value.message == message
