"""JSM SLA goals: the plan an admin configures by hand, and the drift check against live requests."""
from __future__ import annotations

import json

import pytest
import responses

from connectors.jira.sla import drift, expected_goals, jsm_duration
from integration.model import Ticket
from matrix_config.schema import Matrix
from tests.support.jira_helpers import ENV, SITE, enterprise_matrix, query_of, recorded, validate_all
from datetime import timedelta


def _sla_cli(*args: str) -> int:
    """`escalation sla ...` run as a user would; its stdout and stderr are passed on (capsys reads them)."""
    import sys

    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["sla", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code


def matrix_with(**edits) -> Matrix:
    data = enterprise_matrix().model_dump(mode="json")
    for dotted, value in edits.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return Matrix.model_validate(data)


def at_level(level: str | None, priority: str = "high", key: str = "SUP-7") -> Ticket:
    return Ticket(vendor="jira", id=key, priority=priority, fields={"level": level} if level else {})


# ------------------------------------------------------------------------------------ plan
@pytest.mark.parametrize("value, expected", [
    (timedelta(minutes=30), "30m"), (timedelta(hours=4), "4h"), (timedelta(hours=1, minutes=30), "1h 30m"),
    (timedelta(days=5), "120h"),
])
def test_jsm_goal_times_are_hours_and_minutes(value, expected):
    assert jsm_duration(value) == expected


def test_plan_from_the_example_matrix_has_a_goal_per_level_and_priority():
    goals = expected_goals(enterprise_matrix())
    first_response = [g for g in goals if g.metric == "Time to first response"]
    assert [(g.jql, g.target) for g in first_response] == [
        ('"Escalation level" = "L1" AND priority = "Medium"', "1h"),
        ('"Escalation level" = "L1"', "1h"),
        ('"Escalation level" = "L2" AND priority = "High"', "30m"),
        ('"Escalation level" = "L2"', "30m"),
        ('"Escalation level" = "L3" AND priority = "Highest"', "15m"),
        ('"Escalation level" = "L3"', "15m"),
        ('"Escalation level" = "L4" AND priority = "Highest"', "15m"),
        ('"Escalation level" = "L4"', "15m"),
    ]
    assert {g.calendar for g in goals} == {"business"}
    resolve_l1 = next(g for g in goals if g.clock == "resolve" and g.level == "L1")
    assert resolve_l1.metric == "Time to resolution" and resolve_l1.target == "120h"
    assert resolve_l1.jql_by_field_id == 'cf[10108] = "L1" AND priority = "Medium"'
    assert {g.metric for g in goals} == {"Time to first response", "Time to diagnosis", "Time to interim fix",
                                         "Time to resolution"}


def test_a_rule_that_sets_another_priority_adds_a_goal_row():
    matrix = matrix_with(**{"rules.5.priority": "urgent"})  # security-report: L2 at urgent
    rows = [g.jql for g in expected_goals(matrix) if g.clock == "acknowledge" and g.level == "L2"]
    assert rows == ['"Escalation level" = "L2" AND priority = "High"',
                    '"Escalation level" = "L2" AND priority = "Highest"', '"Escalation level" = "L2"']


def test_a_level_kept_in_labels_is_selected_by_label():
    matrix = matrix_with(**{"fields.level.jira": {"label_prefix": "esc-"}})
    goal = expected_goals(matrix)[0]
    assert goal.jql == 'labels = "esc-L1" AND priority = "Medium"'


def test_mapped_level_values_and_metric_names_are_used():
    matrix = matrix_with(**{"fields.level.jira": {"field": "customfield_10108", "values": {"L1": "Level 1"}}})
    goal = expected_goals(matrix, {"acknowledge": "First reply"})[0]
    assert goal.metric == "First reply" and goal.jql.startswith('"Escalation level" = "Level 1"')


def test_without_a_level_field_the_plan_explains_why_it_cannot_filter():
    data = enterprise_matrix().model_dump(mode="json")
    data["fields"]["level"].pop("jira")
    with pytest.raises(ValueError, match="fields.level.jira"):
        expected_goals(Matrix.model_validate(data))


def test_cli_plan_json_lists_metrics_goals_and_calendars(capsys, enterprise_matrix_path, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    assert _sla_cli("plan", "--vendor", "jira", "--format", "json", str(enterprise_matrix_path)) == 0
    doc = json.loads(capsys.readouterr().out)
    metrics = {m["metric"]: m for m in doc["metrics"]}
    assert metrics["Time to first response"]["optional"] is False
    assert metrics["Time to diagnosis"]["optional"] is True
    assert metrics["Time to resolution"]["pause"] == ["Status: Waiting for customer", "Status: Pending"]
    assert len(metrics["Time to resolution"]["goals"]) == 8
    assert doc["calendars"]["business"]["timezone"] == "Europe/Berlin"


def test_cli_plan_text_says_the_goals_are_configured_by_hand(capsys, enterprise_matrix_path):
    assert _sla_cli("plan", "--vendor", "jira", str(enterprise_matrix_path)) == 0
    out = capsys.readouterr().out
    assert "no API to write SLA goals" in out
    assert '"Escalation level" = "L2" AND priority = "High"' in out


# ------------------------------------------------------------------------------------ drift (pure)
def test_drift_reports_a_goal_that_differs_from_the_matrix():
    found = drift(enterprise_matrix(), at_level("L2"), recorded("sla_SUP-7_drift.json"))
    assert [(d.metric, d.kind, d.actual, d.expected) for d in found] == [
        ("Time to first response", "goal_differs", "4h", "30m")]
    assert found[0].describe() == "SUP-7 (L2, high): Time to first response: JSM goal 4h, matrix target 30m"


def test_no_drift_when_jsm_applies_the_matrix_targets():
    assert drift(enterprise_matrix(), at_level("L2"), recorded("sla_SUP-7_agrees.json")) == []


def test_a_running_cycle_without_a_goal_is_drift_and_completed_cycles_are_not_compared():
    found = drift(enterprise_matrix(), at_level("L3", key="SUP-9"), recorded("sla_no_goal.json"))
    assert [(d.metric, d.kind) for d in found] == [("Time to first response", "no_goal")]


def test_a_missing_required_metric_is_reported():
    response = recorded("sla_SUP-7_agrees.json")
    response["values"] = [v for v in response["values"] if v["name"] != "Time to resolution"]
    found = drift(enterprise_matrix(), at_level("L2"), response)
    assert [(d.metric, d.kind) for d in found] == [("Time to resolution", "metric_missing")]


def test_a_ticket_the_matrix_has_not_placed_has_no_target():
    assert drift(enterprise_matrix(), at_level(None), recorded("sla_SUP-7_drift.json")) == []
    assert drift(enterprise_matrix(), at_level("L9"), recorded("sla_SUP-7_drift.json")) == []


# ------------------------------------------------------------------------------------ check (I/O)
@pytest.fixture
def jira_env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _search_page() -> dict:
    placed = recorded("issue_SUP-7.json")
    placed["fields"]["customfield_10108"] = {"self": f"{SITE}/rest/api/3/customFieldOption/10302",
                                             "value": "L2", "id": "10302"}
    placed["fields"]["priority"]["name"] = "High"
    unplaced = recorded("issue_SUP-8_unplaced.json")
    for issue in (placed, unplaced):
        issue.pop("schema")
    return {"isLast": True, "issues": [placed, unplaced]}


@pytest.mark.parametrize("sla_fixture, exit_code", [("sla_SUP-7_drift.json", 1), ("sla_SUP-7_agrees.json", 0)])
def test_cli_check_reads_open_requests_and_exits_1_on_drift(jira_env, enterprise_matrix_path, capsys,
                                                             sla_fixture, exit_code):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.get(f"{SITE}/rest/api/3/search/jql", json=_search_page())
        http.get(f"{SITE}/rest/servicedeskapi/request/SUP-7/sla", json=recorded(sla_fixture))
        assert _sla_cli("check", "--vendor", "jira", str(enterprise_matrix_path)) == exit_code
        validate_all(http.calls)
        # The unplaced SUP-8 has no matrix target: its SLAs are not read.
        assert [c.request.url.split("?")[0].rsplit("/", 2)[-2] for c in http.calls[1:]] == ["SUP-7"]
        assert query_of(http.calls[0])["jql"] == [
            'project in ("SUP", "OPS") AND statusCategory != Done ORDER BY updated DESC']
    out = capsys.readouterr().out
    assert out.strip().endswith(f"2 open request(s) checked, {exit_code} SLA goal(s) differ from the matrix.")
    if exit_code:
        assert "SUP-7 (L2, high): Time to first response: JSM goal 4h, matrix target 30m" in out


def test_cli_check_json(jira_env, enterprise_matrix_path, capsys):
    with responses.RequestsMock() as http:
        http.get(f"{SITE}/rest/api/3/search/jql", json=_search_page())
        http.get(f"{SITE}/rest/servicedeskapi/request/SUP-7/sla", json=recorded("sla_SUP-7_drift.json"))
        assert _sla_cli("check", "--vendor", "jira", "--format", "json", str(enterprise_matrix_path)) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["checked"] == 2
    assert doc["drift"] == [{"ticket_id": "SUP-7", "level": "L2", "priority": "high", "clock": "acknowledge",
                             "metric": "Time to first response", "kind": "goal_differs", "expected": "30m",
                             "actual": "4h"}]


def test_cli_check_without_credentials_exits_2(enterprise_matrix_path, monkeypatch, capsys, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert _sla_cli("check", "--vendor", "jira", str(enterprise_matrix_path)) == 2
    assert "JIRA_URL" in capsys.readouterr().err


def test_cli_check_with_partial_credentials_names_what_is_missing(enterprise_matrix_path, monkeypatch, capsys, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JIRA_URL", "https://acme.atlassian.net")
    assert _sla_cli("check", "--vendor", "jira", str(enterprise_matrix_path)) == 2
    assert "missing JIRA_EMAIL, JIRA_API_TOKEN" in capsys.readouterr().err
