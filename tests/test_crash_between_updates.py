"""A worker killed between two vendor requests of one decision (Zendesk: fields + reply, then the note;
JSM: field edit, reply, note) is recovered part by part: the note arrives exactly once, the reply exactly
once, and `escalation history` lists only what reached the vendor. Through the pipeline with the real
connectors against the vendor test doubles; every request validated against the vendor specs."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from integration.store.db import DecisionRow, EventRow, TicketStateRow
from integration.pipeline import process_ticket
from tests.support.jira_helpers import SITE, recorded, validate_all
from tests.test_jira_e2e import BOT_ACCOUNT, NOW, WEBHOOKS, issue_as, world  # noqa: F401 - a fixture
from tests.test_jira_e2e import deliver as deliver_jira
from tests.test_zendesk_e2e import deliver, rig  # noqa: F401 - a fixture


class WorkerKilled(BaseException):
    """A kill -9 as the pass sees it: nothing of the pass's own error handling runs."""


def later(deps, seconds: float = 120):
    """The next pass, once the killed worker's event leases have run out."""
    start = deps.now()
    return replace(deps, now=lambda: start + timedelta(seconds=seconds))


def history(monkeypatch, database_url: str, vendor: str, ticket_id: str) -> tuple[str, dict]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    text = CliRunner().invoke(cli, ["history", vendor, ticket_id])
    data = CliRunner().invoke(cli, ["history", vendor, ticket_id, "--format", "json"])
    assert text.exit_code == 0 and data.exit_code == 0, text.output + data.output
    return text.output, json.loads(data.output)


# ------------------------------------------------------------------ Zendesk: two ticket updates
@pytest.mark.parametrize("kill_at", ["first update stored, answer lost", "before the note update"])
def test_zendesk_worker_killed_between_the_two_updates_sends_the_note_once(rig, monkeypatch, kill_at):  # noqa: F811
    runtime, client, fake = rig
    ticket = fake.tickets["5158"]
    # Recent changes filled in: enterprise-outage escalates to L3 at once, with a reply and a note.
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
    existing = len(fake.comments["5158"])
    killed = []

    def kill_once(*_args):
        if not killed:
            killed.append(kill_at)
            raise WorkerKilled()

    if kill_at == "first update stored, answer lost":
        fake.after_ticket_update = kill_once  # Zendesk stored the update; the worker never hears back
    else:
        fake.before_next("PUT", r"/api/v2/tickets/5158$", kill_once, skip=1)  # the note update never leaves
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202)

    with pytest.raises(WorkerKilled):
        process_ticket("zendesk", "5158", deps=runtime.deps())
    fake.after_ticket_update = None
    ours = [c for c in fake.comments["5158"][existing:]]
    assert [c["public"] for c in ours] == [True], "the scenario: reply and fields stored, note not sent"

    assert process_ticket("zendesk", "5158", deps=later(runtime.deps())).status == "done"

    ours = fake.comments["5158"][existing:]
    replies = [c for c in ours if c["public"]]
    notes = [c for c in ours if not c["public"]]
    assert len(replies) == 1, "the customer reply was sent again"
    assert len(notes) == 1, "the internal note was lost (or sent twice)"
    assert "L3" in notes[0]["body"] and "enterprise-outage" in notes[0]["body"]
    assert {c["author_id"] for c in ours} == {int(fake.me["id"])}
    with runtime.db.session() as session:
        (decision,) = session.scalars(select(DecisionRow)).all()
        state = session.get(TicketStateRow, ("zendesk", "5158"))
        events = [e.status for e in session.scalars(select(EventRow))]
    assert (decision.status, state.level, events) == ("recovered", "L3", ["done"])
    # Nothing left to do: a later delivery writes nothing.
    writes = len(fake.writes)
    assert deliver(client, "ticket_created.json", "inv-again") in (200, 202)
    process_ticket("zendesk", "5158", deps=later(runtime.deps(), 240))
    assert len(fake.writes) == writes

    text, data = history(monkeypatch, runtime.settings.database_url, "zendesk", "5158")
    (row,) = data["decisions"]
    assert row["parts"]["note"] == "resent"
    assert row["parts"]["reply"] == ("visible" if kill_at == "first update stored, answer lost" else "written")
    assert row["not_written"] == []
    assert "internal note (sent again after a crash)" in text
    assert any(change.startswith("public reply") for change in row["written"])


def test_history_of_a_decision_waiting_for_recovery_claims_nothing_written(rig, monkeypatch):  # noqa: F811
    """Killed before the note update: until a pass recovers it, the history says the decision is in
    flight instead of listing the internal note under what was written."""
    runtime, client, fake = rig
    ticket = fake.tickets["5158"]
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"

    def killed(*_args):
        raise WorkerKilled()

    fake.before_next("PUT", r"/api/v2/tickets/5158$", killed, skip=1)
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202)
    with pytest.raises(WorkerKilled):
        process_ticket("zendesk", "5158", deps=runtime.deps())
    # While the intent waits for recovery, nothing is claimed as written.
    text, data = history(monkeypatch, runtime.settings.database_url, "zendesk", "5158")
    (row,) = data["decisions"]
    assert row["status"] == "applying" and row["written"] == []
    assert "wrote:" not in text


# ------------------------------------------------------------------ JSM: field edit, reply, note
class JsmRequest:
    """One JSM request behind `responses`: the issue takes the field edit, the request keeps comments."""

    def __init__(self, http, key: str, before: dict, after: dict, *, kill_on_public: bool = False):
        self.key, self.issue, self.after = key, before, after
        self.comments: list[dict] = []
        self.kill_on_public, self.killed = kill_on_public, False
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        http.add_callback("GET", f"{SITE}/rest/api/3/issue/{key}", callback=self._issue)
        http.add_callback("PUT", f"{SITE}/rest/api/3/issue/{key}", callback=self._edit)
        http.add_callback("GET", f"{SITE}/rest/servicedeskapi/request/{key}/comment", callback=self._list)
        http.add_callback("POST", f"{SITE}/rest/servicedeskapi/request/{key}/comment", callback=self._post)

    def _issue(self, request):
        return 200, {}, json.dumps(self.issue)

    def _edit(self, request):
        self.issue = self.after
        return 204, {}, ""

    def _list(self, request):
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.url).query).items()}
        values = [c for c in self.comments if query.get("internal", "true") == "true" or c["public"]]
        return 200, {}, json.dumps({"size": len(values), "start": 0, "limit": 100, "isLastPage": True,
                                    "values": values})

    def _post(self, request):
        body = json.loads(request.body)
        if body["public"] == self.kill_on_public and not self.killed:
            self.killed = True
            raise WorkerKilled()  # the worker dies as this comment leaves; Jira never gets it
        millis = 1795770000000 + 1000 * len(self.comments)  # 2026-11-27T10:20Z on: after the snapshot
        comment = {"id": str(30000 + len(self.comments)), "body": body["body"], "public": body["public"],
                   "author": {"accountId": BOT_ACCOUNT, "displayName": "Escalation bot", "active": True},
                   "created": {"epochMillis": millis, "iso8601": "2026-11-27T10:20:00+0000"}}
        self.comments.append(comment)
        return 201, {}, json.dumps(comment)


def test_jsm_worker_killed_between_the_reply_and_the_note_sends_the_note_once(world, monkeypatch):  # noqa: F811
    payload = json.loads((WEBHOOKS / "issue_updated_priority.json").read_text())
    key = payload["issue"]["key"]
    assert deliver_jira(world["client"], payload, "wh-kill-1").status_code in (200, 202)
    settled = issue_as(key, priority={"name": "Highest", "id": "1"}, customfield_10001={"name": "eng-senior"},
                       customfield_10108={"value": "L3", "id": "10303"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        jsm = JsmRequest(http, key, issue_as(key), settled)

        with pytest.raises(WorkerKilled):
            process_ticket("jira", key, deps=world["deps"])
        assert [c["public"] for c in jsm.comments] == [True], "the scenario: fields and reply written, no note"

        assert process_ticket("jira", key, deps=later(world["deps"])).status == "done"

        writes = [(c.request.method, json.loads(c.request.body).get("public") if c.request.method == "POST" else None)
                  for c in http.calls if c.request.method != "GET"]
        validate_all(http.calls)
    assert writes == [("PUT", None), ("POST", True), ("POST", False), ("POST", False)]  # the killed note, then once
    assert [c["public"] for c in jsm.comments] == [True, False]
    with world["db"].session() as session:
        (decision,) = session.scalars(select(DecisionRow)).all()
        state = session.get(TicketStateRow, ("jira", key))
    assert (decision.status, state.level) == ("recovered", "L3")
    assert decision.parts["outcome"] == {"fields": "written", "reply": "written", "note": "resent"}

    text, data = history(monkeypatch, str(world["db"].url), "jira", key)
    assert "internal note (sent again after a crash)" in text
    assert data["decisions"][0]["not_written"] == []


def test_jsm_reply_that_may_have_gone_out_is_not_sent_twice_and_not_claimed(world, monkeypatch):  # noqa: F811
    """Killed as the reply POST left (after the field edit): the reply is not on the request, but it may
    still have reached Jira, so it is not sent again (at most once) and the history does not list it as
    written; the note, which nothing sent, goes out once."""
    payload = json.loads((WEBHOOKS / "issue_updated_priority.json").read_text())
    key = payload["issue"]["key"]
    assert deliver_jira(world["client"], payload, "wh-kill-2").status_code in (200, 202)
    settled = issue_as(key, priority={"name": "Highest", "id": "1"}, customfield_10001={"name": "eng-senior"},
                       customfield_10108={"value": "L3", "id": "10303"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        jsm = JsmRequest(http, key, issue_as(key), settled, kill_on_public=True)
        with pytest.raises(WorkerKilled):
            process_ticket("jira", key, deps=world["deps"])
        assert process_ticket("jira", key, deps=later(world["deps"])).status == "done"
        validate_all(http.calls)
    assert [c["public"] for c in jsm.comments] == [False]
    with world["db"].session() as session:
        (decision,) = session.scalars(select(DecisionRow)).all()
    assert decision.status == "recovered"
    assert decision.parts["outcome"] == {"fields": "written", "reply": "unconfirmed", "note": "resent"}

    text, data = history(monkeypatch, str(world["db"].url), "jira", key)
    (row,) = data["decisions"]
    assert not any(change.startswith("public reply") for change in row["written"])
    assert any(change.startswith("public reply") and "(not confirmed" in change for change in row["not_written"]), row
    assert "did not write: public reply" in text and "not confirmed: may have reached the customer" in text


def test_zendesk_connector_reports_progress_between_its_two_updates(rig):  # noqa: F811
    """The connector tells the pipeline, before the note update, what Zendesk has confirmed."""
    from integration.model import Decision

    runtime, _client, fake = rig
    connector = runtime.connector("zendesk")
    ticket = connector.fetch_ticket("5158")
    decision = Decision(vendor="zendesk", ticket_id="5158", matrix_version="v", decided_at=NOW, priority="urgent",
                        public_reply="We are on it.", internal_note="Escalated: outage.")
    heard = []

    result = connector.apply(ticket, decision, progress=lambda written, sending: heard.append((written, sending)))

    assert heard == [(["fields", "reply"], ["note"])]
    assert result.parts == ["fields", "reply", "note"]
    posted = connector.own_comments("5158", ticket.updated_at)
    assert [(c.body, c.public) for c in posted] == [("Escalated: outage.", False), ("We are on it.", True)]
    assert connector.own_comments("5158", posted[0].created_at) == []  # strictly newer than `since`
