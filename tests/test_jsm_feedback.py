"""JSM request feedback as CSAT (issue 13): a resolved request's rating (1..5) reaches the csat table and the
CSAT metrics; an unresolved request asks for no feedback; a request not rated yet (404) has no rating and no
error; a rated request is not asked again on the next pass. Every request is validated against the JSM /
Jira platform spec subsets."""
from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses
from sqlalchemy import select

import integration.pipeline as pipeline
from integration.metrics import csat_before_after_escalation
from integration.store.db import CsatRow, Database
from tests.support.jira_pipeline import jira_pipeline
from tests.support.jira_helpers import SITE, recorded, validate_all
from webhooks.signatures import jira_signature

MATRIX = Path(__file__).resolve().parent.parent / "matrix_config" / "examples" / "enterprise.yaml"
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
WEBHOOK = Path(__file__).resolve().parent / "fixtures" / "jira" / "issue_updated_priority.json"
SECRET = "jira-webhook-secret-for-tests"
KEY = "TES-41"  # the webhook fixture's issue
DONE = {"name": "Resolved", "id": "10019", "statusCategory": {"id": 3, "key": "done", "name": "Done"}}


@pytest.fixture
def world(tmp_path):
    return {**jira_pipeline(tmp_path / "feedback.db", NOW, matrix=MATRIX, secret=SECRET),
            "deliveries": itertools.count(1)}


def run_pass(world) -> pipeline.PassResult:
    """A signed webhook for the issue (each a new delivery), then the worker's pass on it."""
    number = next(world["deliveries"])
    payload = json.loads(WEBHOOK.read_text())
    payload["timestamp"] += number
    # each delivery reports a new change of the issue, as Jira's do (a body re-sent unchanged is not read)
    payload["issue"]["fields"]["updated"] = f"2026-11-27T10:{15 + number:02d}:30.000+0100"
    body = json.dumps(payload).encode()
    response = world["client"].post("/webhooks/jira", data=body, headers={
        "Content-Type": "application/json; charset=UTF-8", "X-Hub-Signature": jira_signature(SECRET, body),
        "X-Atlassian-Webhook-Identifier": f"wh-feedback-{number}"})
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    return pipeline.process_ticket("jira", KEY, deps=world["deps"])


def issue(**field_changes) -> dict:
    raw = recorded("issue_SUP-7.json")
    raw["key"] = KEY
    raw["fields"].update(field_changes)
    return raw


def register(http, raw: dict) -> None:
    """The pass's reads, and whatever writes its decision makes (not asserted here)."""
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
    http.get(f"{SITE}/rest/api/3/issue/{KEY}", json=raw)
    comments = recorded("comments_SUP-7_page2.json")
    comments.update(start=0, isLastPage=True)
    http.get(f"{SITE}/rest/servicedeskapi/request/{KEY}/comment", json=comments)
    http.put(f"{SITE}/rest/api/3/issue/{KEY}", status=204)
    http.post(f"{SITE}/rest/servicedeskapi/request/{KEY}/comment", status=201, json={"id": "30001"})


def feedback_calls(http) -> list:
    return [c for c in http.calls if c.request.url.split("?")[0].endswith(f"/request/{KEY}/feedback")]


def csat_rows(db: Database) -> list[CsatRow]:
    with db.session() as session:
        return list(session.scalars(select(CsatRow)))


def test_a_resolved_request_rated_4_is_counted_in_csat_and_not_asked_again(world):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register(http, issue(status=DONE))
        http.get(f"{SITE}/rest/servicedeskapi/request/{KEY}/feedback",
                 json={"type": "csat", "rating": 4, "comment": {"body": "Sorted quickly, thanks"}})
        result = run_pass(world)
        assert result.status == "done", result.error
        assert len(feedback_calls(http)) == 1
        validate_all(http.calls)

    rows = csat_rows(world["db"])
    assert [(r.vendor, r.ticket_id, r.score_raw, r.score) for r in rows] == [("jira", KEY, "4", 0.75)]
    splits = [s for s in csat_before_after_escalation(world["db"]) if not s.dry_run]
    assert sum(s.ratings for s in splits) == 1 and splits[0].avg_score == pytest.approx(0.75)

    # The next pass on the same resolved request: the rating is known, no second feedback read, no new row.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register(http, issue(status=DONE))
        result = run_pass(world)
        assert result.status == "done", result.error
        assert feedback_calls(http) == []
        validate_all(http.calls)
    assert len(csat_rows(world["db"])) == 1


def test_an_unresolved_request_asks_for_no_feedback(world):
    # recorded issue: "In Progress" (status category indeterminate), no resolution
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register(http, issue())
        result = run_pass(world)
        assert result.status == "done", result.error
        assert feedback_calls(http) == []
        validate_all(http.calls)
    assert csat_rows(world["db"]) == []


def test_a_resolved_request_without_feedback_yet_has_no_rating_and_no_error(world):
    for attempt in range(2):  # not rated yet is not remembered: the next pass asks again
        with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
            register(http, issue(status=DONE, resolution={"id": "10000", "name": "Done"}))
            http.get(f"{SITE}/rest/servicedeskapi/request/{KEY}/feedback", status=404,
                     json={"errorMessage": "No feedback for this request", "i18nErrorMessage": None})
            result = run_pass(world)
            assert result.status == "done", result.error
            assert len(feedback_calls(http)) == 1
            validate_all(http.calls)
    assert csat_rows(world["db"]) == []
