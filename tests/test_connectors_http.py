"""The shared HTTP edge (connectors.http): one status table and one transport table for both vendors,
with the `sent` rule of each row, and the one secret redactor over every form a credential takes."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from connectors.base import Conflict, NotFound, Permanent, RateLimited, Transient, Unauthorized, redact_urls_in_text
from connectors.http import Redactor, error_for_status, error_for_transport, safe_to_repeat


@pytest.mark.parametrize("status, retry_after, expected, sent", [
    (429, "7", RateLimited, False),
    (503, "7", RateLimited, None),  # a proxy may answer it after the vendor acted
    (503, None, Transient, None),
    (500, None, Transient, None),
    (502, None, Transient, None),
    (401, None, Unauthorized, False),
    (403, None, Unauthorized, False),
    (404, None, NotFound, False),
    (409, None, Conflict, None),  # also the answer to a guarded retry whose first attempt was stored
    (400, None, Permanent, False),
    (422, None, Permanent, False),
    (302, None, Permanent, None),
])
def test_one_status_table_with_its_sent_rule(status, retry_after, expected, sent):
    error = error_for_status(status, retry_after, messages={}, default="vendor said no")
    assert type(error) is expected and error.sent is sent and str(error) == "vendor said no"
    if expected is RateLimited:
        assert error.retry_after == 7.0


def test_2xx_is_no_error_and_a_vendor_words_each_row():
    assert error_for_status(204, None, messages={}, default="x") is None
    error = error_for_status(404, None, messages={"not_found": "ticket 5 is gone"}, default="x")
    assert str(error) == "ticket 5 is gone"


def _refused() -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, "/", reason=NewConnectionError(None, "refused")))


MESSAGES = {kind: kind for kind in ("unreadable", "not_connected", "timed_out", "connection_failed", "request_failed")}


@pytest.mark.parametrize("error, kind, sent", [
    (requests.ConnectTimeout("connect timed out"), "not_connected", False),
    (_refused(), "not_connected", False),
    (requests.ReadTimeout("read timed out"), "timed_out", None),
    (requests.ConnectionError("Connection aborted"), "connection_failed", None),
    (requests.exceptions.SSLError("bad certificate"), "connection_failed", None),
    (requests.exceptions.InvalidURL("nope"), "request_failed", None),
    (json.JSONDecodeError("Expecting value", "<html>", 0), "unreadable", None),
])
def test_one_transport_table_with_its_sent_rule(error, kind, sent):
    mapped = error_for_transport(error, messages=MESSAGES)
    assert isinstance(mapped, Transient) and str(mapped) == kind and mapped.sent is sent


def test_an_exception_that_is_not_the_transports_is_left_to_the_caller():
    assert error_for_transport(KeyError("ours"), messages=MESSAGES) is None


def test_a_post_is_repeated_only_when_it_certainly_did_not_reach_the_vendor():
    assert safe_to_repeat("GET", Transient("x")) and safe_to_repeat("PUT", Transient("x"))
    assert not safe_to_repeat("POST", Transient("x"))
    refused = error_for_transport(_refused(), messages=MESSAGES)
    assert safe_to_repeat("POST", refused)


EMAIL = "agent@example.com"
TOKEN = "zT0ken/with+odd=chars&42"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _forms() -> dict[str, str]:
    zendesk_basic = _b64(f"{EMAIL}/token:{TOKEN}")
    jira_basic = _b64(f"{EMAIL}:{TOKEN}")
    return {
        "literal": TOKEN,
        "percent-encoded": quote(TOKEN, safe=""),
        "json-escaped": json.dumps(TOKEN)[1:-1].replace("/", "\\/"),
        "html-escaped": TOKEN.replace("&", "&amp;"),
        "zendesk basic": f"Authorization: Basic {zendesk_basic}",
        "zendesk basic unpadded": zendesk_basic.rstrip("="),
        "zendesk basic url-safe": base64.urlsafe_b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode(),
        "jira basic": f"Authorization: Basic {jira_basic}",
        "bearer": f"Authorization: Bearer {TOKEN}",
        "pair": f"{EMAIL}/token:{TOKEN}",
        "url password": f"https://{EMAIL}:{quote(TOKEN, safe='')}@proxy.example.com/api",
    }


@pytest.mark.parametrize("name", list(_forms()))
def test_the_redactor_masks_every_form_of_the_credential(name):
    redact = Redactor([TOKEN], basic_credentials=[(f"{EMAIL}/token", TOKEN), (EMAIL, TOKEN)])
    text = f"<html><pre>echo: {_forms()[name]}</pre></html>"
    masked = redact(text)
    assert "***" in masked
    for secret in (TOKEN, quote(TOKEN, safe=""), _b64(f"{EMAIL}/token:{TOKEN}")[:-4], _b64(f"{EMAIL}:{TOKEN}")[:-4]):
        assert secret not in masked


def test_unknown_credentials_in_an_echoed_header_are_masked_too():
    redact = Redactor()
    assert redact(f"Authorization: Basic {_b64('someone:else')}") == "Authorization: Basic ***"
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload1") == "Authorization: Bearer ***"


def test_ordinary_words_and_links_are_left_alone():
    redact = Redactor([TOKEN])
    for text in ("Basic authentication failed", "Bearer token required",
                 "see https://developer.zendesk.com/api-reference/?page[size]=100."):
        assert redact(text) == text


def test_urls_keep_their_host_and_lose_their_password():
    assert redact_urls_in_text("cannot reach postgresql://svc:hunter22@db/esc.") == "cannot reach postgresql://svc:***@db/esc."
    assert "hunter22" not in redact_urls_in_text("GET https://x.example/api?api_key=hunter22 failed")


# --------------------------------------------------------------------- both vendors, one table
@pytest.mark.parametrize("status, headers, expected, sent", [
    (429, {"Retry-After": "30"}, RateLimited, False),
    (503, {"Retry-After": "30"}, RateLimited, None),
    (500, {}, Transient, None),
    (401, {}, Unauthorized, False),
    (403, {}, Unauthorized, False),
    (404, {}, NotFound, False),
    (409, {}, Conflict, None),
    (400, {}, Permanent, False),
])
def test_both_vendors_answer_a_status_with_the_same_error(status, headers, expected, sent):
    from connectors.jira.connector import JiraConnector
    from connectors.ratelimit import TokenBucket
    from connectors.retry import RetryPolicy
    from connectors.zendesk.connector import ZendeskConnector
    from tests.support.jira_helpers import SITE, enterprise_matrix, make_settings, validated_jira_http
    from tests.support.zendesk_fake import validated_fake_zendesk, zendesk_settings

    once = RetryPolicy(attempts=1, sleep=lambda seconds: None)
    with validated_fake_zendesk() as fake:
        fake.fail_next("GET", r"/api/v2/tickets/5158$", status, headers=headers, body={"error": "No"})
        zendesk = ZendeskConnector(zendesk_settings(), enterprise_matrix(), rate_limiter=TokenBucket(10_000),
                                   retry_policy=once)
        with pytest.raises(expected) as from_zendesk:
            zendesk.fetch_ticket("5158")
    with validated_jira_http() as http:
        http.get(f"{SITE}/rest/api/3/issue/SUP-7", status=status, headers=headers, json={"errorMessages": ["No"]})
        jira = JiraConnector(make_settings(), enterprise_matrix(), retry_policy=once)
        with pytest.raises(expected) as from_jira:
            jira.fetch_ticket("SUP-7")
    assert type(from_zendesk.value) is type(from_jira.value) is expected
    assert from_zendesk.value.sent is from_jira.value.sent is sent
    if expected is RateLimited:
        assert from_zendesk.value.retry_after == from_jira.value.retry_after == 30.0
