"""`escalation validate` on bad matrices: each file under tests/matrix/bad/ holds exactly one mistake, and the
validator must report exactly that one line, `FILE:LINE:COL: path.to.key: message`, and exit 1."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import REPO_ROOT

BAD = "tests/matrix/bad"

# file -> the single expected line (FILE:LINE:COL: path: message), FILE relative to the repository root.
EXPECTED = {
    "unknown_key.yaml": "3:1: descripton: unknown key 'descripton' (did you mean 'description'?)",
    "duplicate_key.yaml": "21:3: groups.support: duplicate key 'support' (first defined on line 19)",
    "bad_duration.yaml": "36:24: levels[1].sla.acknowledge: invalid duration '3x': use d/h/m units, "
    "e.g. '30m', '4h', '2d', '1h30m'",
    "unknown_rule_level.yaml": "43:12: rules[0].level: unknown level 'L3': levels are L1, L2",
    "unknown_breach_level.yaml": "30:30: levels[0].on_breach.acknowledge: unknown level 'L9': levels are L1, L2",
    "unknown_group.yaml": "35:22: levels[1].owner.default: unknown group 'enginering' (did you mean 'engineering'?)",
    "unknown_template.yaml": "37:22: levels[1].on_enter.note: unknown template 'escalation' "
    "(did you mean 'escalated'?)",
    "unknown_placeholder.yaml": "47:14: templates.received: unknown placeholder 'ticket.requester.phone': "
    "ticket.requester has email, name",
    "power_operator.yaml": "49:124: templates.escalated: the operator '**' is not allowed in templates",
    "multiply_operator.yaml": "47:88: templates.received: the operator '*' is not allowed in templates",
    "template_syntax.yaml": "47:5: templates.received: template syntax error: unexpected '}'",
    "shadowed_rule.yaml": "45:5: rules[1]: rule 'vip-incidents' can never match: the earlier rule 'incidents' "
    "(rules[0]) matches every ticket this rule matches; move the narrower rule first or remove it",
    "unknown_rule_attribute.yaml": "42:34: rules[0].when.impact: unknown attribute 'impact': attributes are "
    "channel, group, issue_type, level, organization, priority, requester_email, status, subject, tags; "
    "declare it under `fields:`",
    "bad_calendar_span.yaml": "53:13: calendars.office.hours.tue[0]: span '17:00-09:00' ends before it starts",
    "level_from_organization_field.yaml": "15:35: fields.level.zendesk.organization_field: the level is written "
    "on the ticket, and `organization_field` is read only: map `level` to a ticket `custom_field` or a `tag_prefix`",
    "zendesk_field_two_sources.yaml": "10:15: fields.issue_type.zendesk.custom_field: give exactly one of "
    "`custom_field`, `tag_prefix`, `organization_field` or `user_field`",
    "jira_field_two_sources.yaml": "16:12: fields.level.jira.label_prefix: give exactly one of `field`, "
    "`label_prefix` or `organization_property`",
    "bad_timezone.yaml": "50:15: calendars.office.timezone: unknown timezone 'Europe/Berln': use an IANA name "
    "such as Europe/Berlin or UTC",
    "unknown_calendar.yaml": "46:13: clocks.calendar: unknown calendar 'office': no calendars are declared",
    "level_and_bypass.yaml": "43:5: rules[0].level: a bypass rule must not name a `level`",
    "required_data_without_request.yaml": "36:5: levels[1].required_data: a level with required_data needs a "
    "`data_request` template to ask the customer for it",
    "unknown_issue_type_rule.yaml": "42:24: rules[0].when.issue_type: unknown issue type 'outage': issue types "
    "are incident, question",
    "unknown_issue_type_owner.yaml": "35:51: levels[1].owner.by_issue_type.billing: unknown issue type 'billing': "
    "issue types are incident, question",
    "duplicate_rule_id.yaml": "45:9: rules[1].id: duplicate rule id 'incidents' (also rules[0])",
    "reserved_rule_id.yaml": "45:9: rules[1].id: rule id 'manual' is reserved: escalation notes and history use "
    "'manual' for a level an agent set by hand; choose another id",
    "duplicate_level_id.yaml": "39:9: levels[2].id: duplicate level id 'L2' (also levels[1])",
    "bad_priority.yaml": "34:15: levels[1].priority: invalid value 'critical': expected one of 'low', 'normal', "
    "'high' or 'urgent'",
    "missing_key.yaml": "32:5: levels[1].name: required key 'name' is missing",
    "unknown_milestone_field.yaml": "46:21: milestones.diagnose.field: unknown attribute 'root_cause': attributes "
    "are channel, group, issue_type, level, organization, priority, requester_email, status, subject, tags; "
    "declare it under `fields:`",
    "template_render_failure.yaml": "46:3: templates.received: template 'received' fails to render at L1 for a new "
    "ticket no rule matched (previous_level, rule, clock empty): undefined placeholder: 'dict object' has no "
    "attribute 'diagnose'",
    "bypass_priority.yaml": "44:5: rules[0].priority: a bypass rule changes no priority: remove `priority`",
    "bypass_unknown_reply.yaml": "44:12: rules[0].reply: unknown template 'escalate' (did you mean 'escalated'?)",
    "reply_without_bypass.yaml": "44:5: rules[0].reply: `reply` is for bypass rules: a ticket placed at a level "
    "gets the level's on_enter.reply",
    "kb_article_without_bypass.yaml": "44:5: rules[0].kb_article: `kb_article` is for bypass rules (the known "
    "answer to a benign fault)",
    "kb_article_not_a_link.yaml": "44:17: rules[0].kb_article: invalid link 'KB-1234': give the article's http(s) "
    "address, e.g. https://help.example.com/hc/articles/123",
    "unknown_gate_mode.yaml": "46:11: gate.manual: invalid value 'strict': expected one of 'flag' or 'hold'",
}


@pytest.fixture()
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("MATRIX_PATH", raising=False)


def _validate(*args: str):
    return CliRunner().invoke(cli, ["validate", *args])


def test_every_bad_matrix_has_an_expected_line() -> None:
    on_disk = {p.name for p in (REPO_ROOT / BAD).glob("*.yaml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 14


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_matrix_reports_its_one_error(in_repo: None, name: str) -> None:
    path = f"{BAD}/{name}"
    result = _validate(path)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"{path}:{EXPECTED[name]}"]


@pytest.mark.parametrize("example", ["enterprise.yaml", "minimal.yaml"])
def test_examples_are_valid_without_warnings(in_repo: None, example: str) -> None:
    result = _validate(f"matrix_config/examples/{example}")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"matrix_config/examples/{example}: valid, version ")
    assert "warning" not in result.stdout


def test_json_output_for_a_valid_matrix(in_repo: None) -> None:
    result = _validate("matrix_config/examples/enterprise.yaml", "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["errors"] == [] and report["warnings"] == []
    assert len(report["version"]) == 12


def test_json_output_for_an_invalid_matrix(in_repo: None) -> None:
    result = _validate(f"{BAD}/bad_duration.yaml", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report == {
        "valid": False,
        "version": None,
        "errors": [f"{BAD}/bad_duration.yaml:{EXPECTED['bad_duration.yaml']}"],
        "warnings": [],
    }


WARNING_MATRIX = (REPO_ROOT / "matrix_config/examples/minimal.yaml").read_text().replace(
    "sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 8h, resolve: 1d}"
)


def test_warnings_pass_unless_strict(in_repo: None, tmp_path: Path) -> None:
    path = tmp_path / "loose.yaml"
    path.write_text(WARNING_MATRIX)
    relaxed = _validate(str(path))
    assert relaxed.exit_code == 0
    warning = (f"{path}:37:24: levels[1].sla.acknowledge: warning: acknowledge target 8h at L2 is looser than "
               "4h at L1: a higher level should not be slower")
    assert warning in relaxed.stdout.splitlines()
    strict = _validate(str(path), "--strict")
    assert strict.exit_code == 1
    report = json.loads(_validate(str(path), "--strict", "--format", "json").stdout)
    assert report["valid"] is False and report["errors"] == [] and report["warnings"] == [warning]


def test_matrix_defaults_to_matrix_path(in_repo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_PATH", f"{BAD}/unknown_group.yaml")
    result = _validate()
    assert result.exit_code == 1
    assert "unknown group 'enginering'" in result.stdout


def test_no_matrix_at_all_is_a_usage_error(in_repo: None) -> None:
    result = _validate()
    assert result.exit_code == 2
    assert "MATRIX_PATH" in result.output


def test_missing_file_is_invalid(in_repo: None) -> None:
    result = _validate("no/such/matrix.yaml")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["no/such/matrix.yaml:1:1: (file): no such file"]


# ---------------------------------------------------------------------------------- --remote
def _fake_connector(monkeypatch: pytest.MonkeyPatch, vendor: str, check) -> None:
    """The vendor's plugin with `check` as its remote check (no account is contacted)."""
    from dataclasses import replace

    from connectors.vendors import PLUGINS

    monkeypatch.setitem(PLUGINS, vendor, replace(PLUGINS[vendor], check_remote=check))


def test_remote_problems_make_the_matrix_invalid(in_repo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def check_remote(matrix):
        seen.append(matrix.name)
        return ["matrix_config/examples/minimal.yaml:21:3: groups.engineering.jira: no Jira group 'engineering'"]

    _fake_connector(monkeypatch, "jira", check_remote)
    result = _validate("matrix_config/examples/minimal.yaml", "--remote", "jira")
    assert result.exit_code == 1
    assert "groups.engineering.jira: no Jira group 'engineering'" in result.stdout
    assert len(seen) == 1


def test_remote_check_that_passes(in_repo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_connector(monkeypatch, "zendesk", lambda matrix: [])
    result = _validate("matrix_config/examples/minimal.yaml", "--remote", "zendesk")
    assert result.exit_code == 0, result.output


def test_remote_check_crash_is_not_valid(in_repo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def check_remote(matrix):
        raise ConnectionError("vendor unreachable")

    _fake_connector(monkeypatch, "jira", check_remote)
    result = _validate("matrix_config/examples/minimal.yaml", "--remote", "jira")
    assert result.exit_code == 1
    assert "the remote check failed: ConnectionError: vendor unreachable" in result.stdout


def test_console_script_validates_the_enterprise_example() -> None:
    """The README's command, as a real process."""
    script = Path(sys.executable).with_name("escalation")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from cli.main import main; main()"]
    done = subprocess.run([*command, "validate", "matrix_config/examples/enterprise.yaml"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid, version" in done.stdout
    bad = subprocess.run([*command, "validate", f"{BAD}/unknown_key.yaml"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stdout.strip() == f"{BAD}/unknown_key.yaml:{EXPECTED['unknown_key.yaml']}"
