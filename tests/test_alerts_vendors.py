"""Alerts through the real connectors: a signed helpdesk webhook -> edge -> pass (Zendesk against the
validated fake account, Jira against recorded responses) -> the enterprise example's `notify:` routes ->
a local Slack receiver. The link in the alert is the one the connector's settings give (Zendesk agent URL,
Jira /browse/KEY), and a redelivered webhook does not alert again."""
from __future__ import annotations

import json

import pytest
import responses

from connectors.alert_channels import send_with_retry
from integration import pipeline
from integration.alerts import deliver_due, list_alerts
from integration.store.matrix_versions import load_current
from integration.pipeline import process_ticket
from tests.support.alert_receivers import HttpReceiver
from tests.support.jira_helpers import SITE, validate_all
from tests.test_jira_e2e import MATRIX, NOW, WEBHOOKS, issue_as, register_reads, world  # noqa: F401 - a fixture
from tests.test_jira_e2e import deliver as deliver_jira
from tests.test_zendesk_e2e import deliver, rig  # noqa: F401 - a fixture


@pytest.fixture
def slack(monkeypatch):
    receiver = HttpReceiver()
    monkeypatch.setenv("SLACK_INCIDENT_WEBHOOK_URL", receiver.url("/services/T0/B0/zd-jira-e2e-token"))
    yield receiver
    receiver.close()


def headers(receiver: HttpReceiver) -> list[str]:
    return [r.json()["blocks"][0]["text"]["text"] for r in receiver.accepted()]


def test_zendesk_alert_links_the_agent_view_once_per_event(rig, slack):  # noqa: F811
    runtime, client, fake = rig
    ticket = fake.tickets["5158"]
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202)
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    runtime.send_alerts()
    assert headers(slack) == ["[L3] Ticket 5158: entered L3", "[L3] Ticket 5158: entered L3 with incident roles unfilled"]
    assert "https://acme.zendesk.com/agent/tickets/5158" in slack.accepted()[0].json()["text"]

    # Zendesk delivers the same change again (a retried invocation): no second alert.
    assert deliver(client, "ticket_created.json", "inv-created-retry") in (200, 202)
    process_ticket("zendesk", "5158", deps=runtime.deps())
    runtime.send_alerts()
    assert len(slack.requests) == 2
    assert {(a.event, a.status) for a in list_alerts(runtime.db)} == {("enter_level", "sent"), ("role_missing", "sent")}


def test_jira_alert_links_the_browse_url(world, slack):  # noqa: F811
    payload = json.loads((WEBHOOKS / "issue_updated_priority.json").read_text())
    key = payload["issue"]["key"]
    assert deliver_jira(world["client"], payload, "wh-alert-1").status_code in (200, 202)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register_reads(http, key, issue_as(key))
        http.put(f"{SITE}/rest/api/3/issue/{key}", status=204)
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30001"})
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30002"})
        assert pipeline.process_ticket("jira", key, deps=world["deps"]).status == "done"
        assert validate_all(http.calls) == len(http.calls)  # every Jira request against the vendor spec
    loaded, _ = load_current(MATRIX)
    report = deliver_due(world["db"], send=send_with_retry, now=lambda: NOW, current=lambda: loaded)
    assert report.sent >= 1 and report.dead == 0
    entered = next(r.json() for r in slack.accepted() if r.json()["blocks"][0]["text"]["text"] == f"[L3] Ticket {key}: entered L3")
    assert f"{SITE}/browse/{key}" in entered["text"]
