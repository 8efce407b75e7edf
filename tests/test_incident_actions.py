"""Corrective actions (issue 11 part 4): `escalation incident actions VENDOR TICKET --add SUMMARY --owner EMAIL
--due DATE` creates a Jira issue in the matrix's `incident.actions.project` assigned to the owner with the due
date, linked to the ticket (a Zendesk ticket by a remote link to its agent URL, a JSM request by an issue link),
and `escalation incident actions VENDOR TICKET` lists them with owner and due date. Every request is validated
against the vendor specs (Zendesk reads against the Zendesk subset, Jira writes against the Jira platform subset)."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import responses
from click.testing import CliRunner

from cli.main import cli
from tests.support.jira_helpers import ENV as JIRA_ENV
from tests.support.jira_helpers import SITE, recorded, validate_all
from tests.support.openapi_check import validate_zendesk_calls
from tests.support.zendesk_fake import EMAIL, TOKEN, FakeZendesk
from tests.test_jira_e2e import issue_as, register_reads

OWNER = {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Olga Ops", "emailAddress": "olga@acme.example",
         "active": True, "accountType": "atlassian"}


@pytest.fixture
def env(monkeypatch, tmp_path, enterprise_matrix_path):
    for name, value in {**JIRA_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "QUEUE_URL": "memory://",
                        "MATRIX_PATH": str(enterprise_matrix_path), "DRY_RUN": "false", "ZENDESK_SUBDOMAIN": "acme",
                        "ZENDESK_EMAIL": EMAIL, "ZENDESK_API_TOKEN": TOKEN}.items():
        monkeypatch.setenv(name, value)


def jira_writes(http, key: str) -> None:
    http.get(f"{SITE}/rest/api/3/user/search", json=[OWNER])
    http.post(f"{SITE}/rest/api/3/issue", status=201,
              json={"id": "10500", "key": key, "self": f"{SITE}/rest/api/3/issue/10500"})
    http.post(f"{SITE}/rest/api/3/issue/{key}/remotelink", status=201,
              json={"id": 10000, "self": f"{SITE}/rest/api/3/issue/{key}/remotelink/10000"})
    http.post(f"{SITE}/rest/api/3/issueLink", status=201)


def bodies(http, path: str) -> list[dict]:
    return [json.loads(c.request.body) for c in http.calls
            if urlsplit(c.request.url).path == path and c.request.method == "POST"]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["incident", "actions", *args])


def test_zendesk_ticket_action_is_a_jira_issue_with_owner_due_date_and_a_link_back(env):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        FakeZendesk(http)
        jira_writes(http, "OPS-12")
        added = invoke("zendesk", "5158", "--add", "Add a failover runbook for the EU checkout", "--owner",
                       "olga@acme.example", "--due", "2026-12-15")
        assert added.exit_code == 0, added.output
        assert added.output == ("created OPS-12: Add a failover runbook for the EU checkout "
                                "(owner 5b10ac8d82e05b22cc7d4ef5, due 2026-12-15)\n")
        zendesk_calls = [c for c in http.calls if "zendesk.com" in c.request.url]
        jira_calls = [c for c in http.calls if SITE in c.request.url]
        assert validate_zendesk_calls(zendesk_calls) == len(zendesk_calls) > 0
        assert validate_all(jira_calls) == len(jira_calls) == 3
        [created] = bodies(http, "/rest/api/3/issue")
        fields = created["fields"]
        assert (fields["project"], fields["issuetype"], fields["assignee"], fields["duedate"]) == (
            {"key": "OPS"}, {"name": "Task"}, {"accountId": OWNER["accountId"]}, "2026-12-15")
        [link] = bodies(http, "/rest/api/3/issue/OPS-12/remotelink")
        assert link["object"]["url"] == "https://acme.zendesk.com/agent/tickets/5158"
        assert bodies(http, "/rest/api/3/issueLink") == []

    listed = invoke("zendesk", "5158")
    assert listed.exit_code == 0, listed.output
    assert listed.output == "OPS-12\tOlga Ops\t2026-12-15\tAdd a failover runbook for the EU checkout\n"
    as_json = json.loads(invoke("zendesk", "5158", "--format", "json").output)
    assert as_json == [{"key": "OPS-12", "summary": "Add a failover runbook for the EU checkout", "owner": "Olga Ops",
                        "due": "2026-12-15", "url": f"{SITE}/browse/OPS-12"}]


def test_jsm_request_action_is_linked_by_an_issue_link(env):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        register_reads(http, "SUP-7", issue_as("SUP-7"))
        jira_writes(http, "OPS-13")
        added = invoke("jira", "SUP-7", "--add", "Alert on checkout 5xx rate", "--owner", OWNER["accountId"],
                       "--due", "2026-12-20")
        assert added.exit_code == 0, added.output
        assert validate_all(http.calls) == len(http.calls)
        assert bodies(http, "/rest/api/3/issueLink") == [
            {"type": {"name": "Relates"}, "inwardIssue": {"key": "OPS-13"}, "outwardIssue": {"key": "SUP-7"}}]
        assert [c for c in http.calls if "/rest/api/3/user/search" in c.request.url] == []  # an accountId as given
    assert invoke("jira", "SUP-7").output == "OPS-13\t5b10ac8d82e05b22cc7d4ef5\t2026-12-20\tAlert on checkout 5xx rate\n"


def test_an_action_needs_an_owner_and_a_due_date(env):
    result = invoke("zendesk", "5158", "--add", "Something", "--owner", "olga@acme.example")
    assert result.exit_code == 2
    assert "--add needs --owner and --due: a corrective action has an owner and a due date" in result.output
