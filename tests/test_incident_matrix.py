"""The incident keys of the matrix language get the full treatment: each file under tests/matrix/bad_incident/
holds one mistake and `escalation validate` reports exactly this line (FILE:LINE:COL: path: message) and exits 1;
a warning-only file exits 0 with its warning."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

REPO = Path(__file__).resolve().parent.parent
BAD = "tests/matrix/bad_incident"

ERRORS = {
    "role_unknown_attribute.yaml": "44:7: levels[1].roles.incident_comander: unknown attribute 'incident_comander' "
    "(did you mean 'incident_commander'?)",
    "role_on_missing_unknown_level.yaml": "35:53: levels[0].roles.incident_commander.on_missing: unknown level 'L3': "
    "levels are L1, L2",
    "role_on_missing_not_above.yaml": "44:53: levels[1].roles.incident_commander.on_missing: on_missing escalates: "
    "name a level above L2, not 'L1'",
    "role_on_missing_without_within.yaml": "35:28: levels[0].roles.incident_commander.on_missing: `on_missing` needs "
    "`within`: the deadline after which the role counts as missing",
    "exit_actions_without_project.yaml": "39:27: levels[1].exit.actions_owned: `actions_owned` needs "
    "`incident.actions` (the Jira project where corrective actions are created)",
    "exit_unknown_criterion.yaml": "39:33: levels[1].exit.postmortem: unknown key 'postmortem'; allowed keys: "
    "actions_owned",
    "incident_unknown_blocker.yaml": "42:14: incident.blockers[0]: unknown attribute 'blocked_by': attributes are "
    "channel, group, issue_type, level, organization, priority, requester_email, status, subject, tags; declare it "
    "under `fields:`",
    "role_bad_within.yaml": "44:36: levels[1].roles.incident_commander.within: invalid duration 'soon': use d/h/m "
    "units, e.g. '30m', '4h', '2d', '1h30m'",
}
WARNINGS = {
    "role_without_deadline.yaml": "43:13: levels[1].roles[0]: warning: role 'incident_commander' has no deadline "
    "although L2 must be acknowledged within 1h: give it `within:` (e.g. {within: 1h}) so an unfilled role is "
    "reminded and alerted",
}


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("MATRIX_PATH", raising=False)


def test_every_bad_incident_matrix_has_its_expected_line():
    assert sorted(p.name for p in (REPO / BAD).glob("*.yaml")) == sorted({**ERRORS, **WARNINGS})


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_incident_matrix_reports_its_one_error(in_repo, name):
    result = CliRunner().invoke(cli, ["validate", f"{BAD}/{name}"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"{BAD}/{name}:{ERRORS[name]}", f"{BAD}/{name}: invalid, 1 problem(s)"]


@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_incident_lint_warning(in_repo, name):
    result = CliRunner().invoke(cli, ["validate", f"{BAD}/{name}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{BAD}/{name}:{WARNINGS[name]}"
    assert lines[1].endswith(", 1 warning(s)")
