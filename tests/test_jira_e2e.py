"""End to end, in process: a signed Jira webhook -> the Flask edge -> the event store -> one worker pass
-> exactly the expected Jira/JSM requests (each validated against the vendor specs). Then the same
delivery again, our own echo, and a change that needs nothing: zero writes."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses

from tests.support.jira_pipeline import jira_pipeline
from tests.support.jira_helpers import SITE, body_of, recorded, validate_all
import integration.pipeline as pipeline
from webhooks.signatures import jira_signature

WEBHOOKS = Path(__file__).resolve().parent / "fixtures" / "jira"
MATRIX = Path(__file__).resolve().parent.parent / "matrix_config" / "examples" / "enterprise.yaml"
SECRET = "jira-webhook-secret-for-tests"
BOT_ACCOUNT = "712020:0e3c1b7a-2d4f-4a5b-9c8d-7e6f5a4b3c2d"  # myself.json
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def world(tmp_path):
    return jira_pipeline(tmp_path / "events.db", NOW, matrix=MATRIX, secret=SECRET)


def deliver(client, payload: dict, identifier: str):
    body = json.dumps(payload).encode()
    return client.post("/webhooks/jira", data=body, headers={
        "Content-Type": "application/json; charset=UTF-8",
        "X-Hub-Signature": jira_signature(SECRET, body),
        "X-Atlassian-Webhook-Identifier": identifier,
    })


def issue_as(key: str, **field_changes) -> dict:
    issue = recorded("issue_SUP-7.json")
    issue["key"] = key
    issue["fields"].update(field_changes)
    return issue


def register_reads(http, key: str, issue: dict) -> None:
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
    http.get(f"{SITE}/rest/api/3/issue/{key}", json=issue)
    comments = recorded("comments_SUP-7_page2.json")
    comments.update(start=0, isLastPage=True)
    http.get(f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=comments)


def test_signed_webhook_to_exactly_the_expected_requests(world):
    payload = json.loads((WEBHOOKS / "issue_updated_priority.json").read_text())
    key = payload["issue"]["key"]
    response = deliver(world["client"], payload, "wh-e2e-1")
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    assert world["queued"] == [("jira", key)]

    # The snapshot the API returns: an enterprise production outage at L1 -> rule enterprise-outage -> L3.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        register_reads(http, key, issue_as(key))
        http.put(f"{SITE}/rest/api/3/issue/{key}", status=204)
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30001"})
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30002"})

        result = pipeline.process_ticket("jira", key, deps=world["deps"])

        assert result.status == "done", result.error
        assert [(c.request.method, c.request.url.split("?")[0].removeprefix(SITE)) for c in http.calls] == [
            ("GET", "/rest/api/3/myself"),
            ("GET", f"/rest/api/3/issue/{key}"),
            ("GET", f"/rest/servicedeskapi/request/{key}/comment"),
            ("PUT", f"/rest/api/3/issue/{key}"),
            ("POST", f"/rest/servicedeskapi/request/{key}/comment"),
            ("POST", f"/rest/servicedeskapi/request/{key}/comment"),
        ]
        assert body_of(http.calls[3]) == {"fields": {
            "priority": {"name": "Highest"},
            "customfield_10001": {"name": "eng-senior"},
            "customfield_10108": {"value": "L3"},
        }}
        reply, note = body_of(http.calls[4]), body_of(http.calls[5])
        assert reply["public"] is True and "critical incident" in reply["body"]
        assert note["public"] is False and "L3" in note["body"] and "enterprise-outage" in note["body"]
        assert validate_all(http.calls) == 6
    assert result.writes == 3

    # The same delivery again: recorded as a duplicate, nothing queued, no request.
    again = deliver(world["client"], payload, "wh-e2e-1")
    assert again.status_code in (200, 202)
    assert world["queued"] == [("jira", key)]

    # Our own write comes back as a webhook: an echo, dropped without reading the issue.
    echo = json.loads(json.dumps(payload))
    echo["user"]["accountId"] = BOT_ACCOUNT
    echo["timestamp"] += 1
    deliver(world["client"], echo, "wh-e2e-2")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        assert pipeline.process_ticket("jira", key, deps=world["deps"]).status == "echo"
        assert all(c.request.method == "GET" for c in http.calls)

    # An agent's unrelated edit (the issue's `updated` moved past the version decided on): the issue
    # already shows L3, Highest, eng-senior -> reads only, zero writes.
    other = json.loads(json.dumps(payload))
    other["timestamp"] += 2
    other["issue"]["fields"]["updated"] = "2026-11-27T10:20:00.000+0100"
    deliver(world["client"], other, "wh-e2e-3")
    settled = issue_as(key, priority={"name": "Highest", "id": "1"},
                       customfield_10001={"name": "eng-senior"},
                       customfield_10108={"value": "L3", "id": "10303"},
                       updated="2026-11-27T10:20:00.000+0100")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register_reads(http, key, settled)
        result = pipeline.process_ticket("jira", key, deps=world["deps"])
        assert result.status == "done", result.error
        assert [c.request.method for c in http.calls if c.request.method != "GET"] == []
        validate_all(http.calls)
    assert result.writes == 0
