"""Bypass means hands off (issue 9, item 3): a ticket a bypass rule matches (a known benign fault) keeps its
priority, gets no entry-level welcome asking for account id / environment, gets the rule's own `reply`
(the help-centre answer) instead, its internal note shows the rule's `kb_article`, and `escalation
metrics` counts the hits per rule. Through the pipeline with both vendors' test doubles (every request
validated against the committed OpenAPI specs) and the engine where that is clearer."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from cli.main import cli
from integration import pipeline
from integration.engine import apply_to_ticket, decide, next_state
from integration.store.events import DatabaseEventSink
from integration.model import Person, Ticket
from matrix_config.loader import load_matrix
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings, neutral_event
from tests.support.jira_helpers import SITE, body_of, validate_all
from tests.test_jira_e2e import deliver as deliver_jira
from tests.test_jira_e2e import issue_as, register_reads, world  # noqa: F401  (pytest fixture)
from tests.test_zendesk_e2e import deliver as deliver_zendesk
from tests.test_zendesk_e2e import rig  # noqa: F401  (pytest fixture)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "matrix_config" / "examples" / "enterprise.yaml"
KB_ARTICLE = "https://help.acme.example/hc/articles/360001234567-Reset-your-password"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
WELCOME = "please make sure we have your account id"  # the L1 welcome (l1_received)
ANSWER = 'choose "Forgot password"'  # the password-reset rule's reply (password_reset_answer)


@pytest.fixture(scope="module")
def loaded():
    return load_matrix(EXAMPLE)


# ------------------------------------------------------------------------------------------- Zendesk
def test_zendesk_bypassed_ticket_keeps_its_low_priority_and_gets_the_help_centre_answer(rig):
    runtime, client, fake = rig
    ticket = fake.tickets["5158"]
    ticket.update(priority="low", subject="Cannot log in", tags=["password_reset", "tier_enterprise"])
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100001)["value"] = "question"
    comments_before = len(fake.comments["5158"])

    assert deliver_zendesk(client, "ticket_created.json", "inv-bypass") in (200, 202, 204)
    result = pipeline.process_ticket("zendesk", "5158", deps=runtime.deps())
    assert result.status == "done", result.error

    for body in fake.put_bodies():
        assert "priority" not in body["ticket"] and "group_id" not in body["ticket"]
    assert ticket["priority"] == "low"
    posted = fake.comments["5158"][comments_before:]
    public = [c["body"] for c in posted if c["public"]]
    notes = [c["body"] for c in posted if not c["public"]]
    assert len(public) == 1 and ANSWER in public[0] and WELCOME not in public[0]
    assert len(notes) == 1 and f"Known answer: {KB_ARTICLE}" in notes[0]
    assert "Bypass rule password-reset matches" in notes[0]


# ---------------------------------------------------------------------------------------------- Jira
def test_jira_bypassed_issue_keeps_its_low_priority_and_gets_the_help_centre_answer(world):
    key = "SUP-7"
    issue = issue_as(key, customfield_10100={"value": "question", "id": "10406"},
                     labels=["password_reset", "tier-enterprise"], customfield_10108=None,
                     priority={"name": "Low", "id": "4"})
    payload = json.loads((REPO / "tests" / "fixtures" / "jira" / "issue_updated_priority.json").read_text())
    payload["issue"]["key"] = key
    assert deliver_jira(world["client"], payload, "wh-bypass-1").status_code in (200, 202)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register_reads(http, key, issue)
        http.put(f"{SITE}/rest/api/3/issue/{key}", status=204)
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30001"})
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30002"})
        result = pipeline.process_ticket("jira", key, deps=world["deps"])
        assert result.status == "done", result.error
        validate_all(http.calls)
        puts = [body_of(c) for c in http.calls if c.request.method == "PUT"]
        comments = [body_of(c) for c in http.calls if c.request.method == "POST"]

    assert puts == [{"fields": {"customfield_10108": {"value": "L1"}}}]  # the level shown; no priority, no group
    public = [c["body"] for c in comments if c["public"]]
    notes = [c["body"] for c in comments if not c["public"]]
    assert len(public) == 1 and ANSWER in public[0] and WELCOME not in public[0]
    assert len(notes) == 1 and f"Known answer: {KB_ARTICLE}" in notes[0]


# -------------------------------------------------------------------------------------------- engine
def _ticket(**changes) -> Ticket:
    base = Ticket(vendor="neutral", id="T-5", subject="Cannot log in", priority="low",
                  requester=Person(name="Ada", email="ada@example.com"), fields={"issue_type": "question"})
    return base.with_(**changes)


def test_a_ticket_that_becomes_bypassed_later_gets_the_answer_once_and_keeps_its_priority(loaded):
    ticket = _ticket(group="frontline")
    first = decide(ticket, None, loaded.matrix, NOW, version=loaded.version)
    ticket, state = apply_to_ticket(ticket, first), next_state(None, ticket, first)
    assert first.priority == "normal" and first.bypass_rule is None  # not bypassed: the level's priority

    ticket = ticket.with_(priority="low", tags=frozenset({"password_reset"}))  # an agent triages it
    bypassed = decide(ticket, state, loaded.matrix, NOW, version=loaded.version)
    assert bypassed.bypassed is True and bypassed.bypass_rule == "password-reset"
    assert bypassed.priority is None and bypassed.owner_group is None
    assert ANSWER in bypassed.public_reply and bypassed.reply_template == "password_reset_answer"
    assert f"Known answer: {KB_ARTICLE}" in bypassed.internal_note
    ticket, state = apply_to_ticket(ticket, bypassed), next_state(state, ticket, bypassed)
    again = decide(ticket, state, loaded.matrix, NOW, version=loaded.version)
    assert again.is_empty and again.public_reply is None and again.bypass_rule is None


def test_a_bypassed_ticket_without_a_group_gets_the_entry_owner_and_nothing_else(loaded):
    decision = decide(_ticket(tags=frozenset({"password_reset"})), None, loaded.matrix, NOW, version=loaded.version)
    assert (decision.to_level, decision.priority, decision.owner_group) == ("L1", None, "frontline")
    assert decision.reply_template == "password_reset_answer" and WELCOME not in decision.public_reply


# ------------------------------------------------------------------------------------------- metrics
def test_metrics_count_bypass_hits_per_rule(tmp_path, monkeypatch):
    settings = make_settings(f"sqlite:///{tmp_path}/escalation.db")
    fake = FakeConnector("zendesk")
    created = NOW.isoformat()
    for ticket_id in ("51", "52"):
        fake.put(ticket_id, created_at=created, updated_at=created, priority="low", tags=["password_reset"],
                 fields={"issue_type": "question"})
    fake.put("53", created_at=created, updated_at=created, fields={"issue_type": "bug"})
    clock = ManualClock(NOW)
    runtime = make_runtime(settings, fake, clock=clock)
    sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)
    for ticket_id in ("51", "52", "53"):
        sink.accept(neutral_event(ticket_id, f"d-{ticket_id}"), ticket_id.encode(), clock())
    while (task := runtime.huey.dequeue()) is not None:
        runtime.huey.execute(task)
    assert [w for w in fake.writes("51")] and all(w.get("priority") in (None, "low") for w in fake.writes("51"))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    try:
        report = json.loads(CliRunner().invoke(cli, ["metrics", "--format", "json"]).output)
        assert report["bypass_hits"] == [{"rule": "password-reset", "hits": 2, "tickets": 2}]
        text = CliRunner().invoke(cli, ["metrics"]).output
        assert "Bypass hits per rule:\n  password-reset       2 hit(s), 2 ticket(s)" in text
    finally:
        runtime.db.dispose()
