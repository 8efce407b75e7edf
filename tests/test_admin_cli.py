"""`escalation history` and `escalation metrics` read what real passes recorded (fake helpdesk, SQLite)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from cli.main import cli
from integration.store.events import DatabaseEventSink
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings, neutral_event

START = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
OUTAGE_FIELDS = {"issue_type": "outage", "customer_tier": "enterprise", "environment": "production",
                 "account_id": "GLX-1", "recent_changes": "deploy 4.2", "affected_users": 40}


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """Ticket 7 enters L1, then becomes an enterprise production outage and goes to L3."""
    settings = make_settings(f"sqlite:///{tmp_path}/escalation.db")
    fake = FakeConnector("zendesk")
    fake.put("7")
    clock = ManualClock(START)
    runtime = make_runtime(settings, fake, clock=clock)
    sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)

    def deliver(delivery: str) -> None:
        sink.accept(neutral_event("7", delivery), delivery.encode(), clock())
        while (task := runtime.huey.dequeue()) is not None:
            runtime.huey.execute(task)

    deliver("d1")
    fake.edit("7", lambda record: record["fields"].update(OUTAGE_FIELDS))
    deliver("d2")
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    yield runtime
    runtime.db.dispose()


def test_history_shows_each_decision_with_its_matrix_version_and_what_it_wrote(recorded):
    result = CliRunner().invoke(cli, ["history", "zendesk", "7"])
    assert result.exit_code == 0, result.output
    version = recorded.matrix().version
    lines = result.output.splitlines()
    assert lines[0].startswith(f"zendesk 7: level L3 since ") and f"matrix version {version}" in lines[0]
    moves = [line for line in lines if "[matrix " in line]
    assert [line.split()[1:4] for line in moves] == [["new", "->", "L1"], ["L1", "->", "L3"]]
    assert all(f"[matrix {version}; applied" in line for line in moves)
    assert "wrote: priority urgent; group senior_engineering; level L3; public reply" in result.output


def test_history_json_and_unknown_ticket(recorded):
    data = json.loads(CliRunner().invoke(cli, ["history", "zendesk", "7", "--format", "json"]).output)
    assert [d["to_level"] for d in data["decisions"]] == ["L1", "L3"]
    assert data["decisions"][1]["rule_id"] == "enterprise-outage"
    missing = CliRunner().invoke(cli, ["history", "zendesk", "404"])
    assert missing.exit_code == 1
    assert "no record of zendesk ticket 404" in missing.output


def test_metrics_count_the_escalation_into_l3_by_issue_type(recorded):
    result = CliRunner().invoke(cli, ["metrics", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # Every entry into a level counts (issue 13): ticket 7 was placed at L1 (no issue type yet), then moved up.
    assert [(c["level"], c["issue_type"], c["escalations"], c["placed"], c["moved_up"])
            for c in report["escalation_frequency"]] == [("L1", None, 1, 1, 0), ("L3", "outage", 1, 0, 1)]
    text = CliRunner().invoke(cli, ["metrics"]).output
    assert "L3     outage         1 escalation(s), 1 ticket(s): 0 placed, 1 moved up, 0 set by hand" in text


def test_send_test_webhook_signs_the_body_as_zendesk_does(monkeypatch, tmp_path):
    import responses

    from webhooks.signatures import ZendeskSignatureVerifier

    monkeypatch.setenv("ZENDESK_WEBHOOK_SECRET", "wiring-check-secret")
    payload = tmp_path / "ticket_created.json"
    payload.write_bytes(b'{"type": "zen:event-type:ticket.created"}')
    with responses.RequestsMock() as mock:
        mock.post("http://127.0.0.1:9999/webhooks/zendesk", status=202, json={"status": "accepted"})
        result = CliRunner().invoke(cli, ["send-test-webhook", "zendesk", str(payload),
                                          "--url", "http://127.0.0.1:9999/webhooks/zendesk"])
        sent = mock.calls[0].request
    assert result.exit_code == 0, result.output
    assert result.output.startswith("202 ")
    ZendeskSignatureVerifier("wiring-check-secret").verify(sent.headers, sent.body)
    with pytest.raises(Exception):
        ZendeskSignatureVerifier("another-secret").verify(sent.headers, sent.body)


def test_send_test_webhook_uses_the_automation_header_when_jira_has_only_a_shared_secret(monkeypatch, tmp_path):
    import responses

    monkeypatch.delenv("JIRA_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("JIRA_SHARED_SECRET", "automation-token")
    payload = tmp_path / "automation.json"
    payload.write_bytes(b'{"issueKey": "SUP-1", "event": "issue_updated"}')
    with responses.RequestsMock() as mock:
        mock.post("http://127.0.0.1:9999/webhooks/jira", status=202, json={"status": "accepted"})
        result = CliRunner().invoke(cli, ["send-test-webhook", "jira", str(payload),
                                          "--url", "http://127.0.0.1:9999/webhooks/jira"])
        sent = mock.calls[0].request
    assert result.exit_code == 0, result.output
    assert sent.headers["X-Escalation-Token"] == "automation-token"
    assert "X-Hub-Signature" not in sent.headers
