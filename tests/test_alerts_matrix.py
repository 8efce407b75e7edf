"""The `notify:` section gets the matrix treatment: `escalation validate` on bad matrices (each file under
tests/matrix/bad_notify/ holds one mistake and reports exactly these lines), cross-references, lint."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from matrix_config.lint import lint
from matrix_config.loader import load_matrix_text

REPO = Path(__file__).resolve().parent.parent
BAD = "tests/matrix/bad_notify"

EXPECTED = {
    "unknown_channel.yaml": ["66:26: notify.routes[0].to[1]: unknown channel 'leads_mial' (did you mean 'leads_mail'?)"],
    "unknown_level.yaml": ["65:41: notify.routes[0].when.level[1]: unknown level 'L3': levels are L1, L2"],
    "unknown_template.yaml": ["67:17: notify.routes[0].template: unknown template 'l2_alert': templates are received, "
                              "escalated"],
    "unknown_event.yaml": ["65:31: notify.routes[0].when.event[1]: invalid value 'breached': expected one of "
                           "'enter_level', 'warning', 'breach', 'cadence', 'role_missing' or 'exit_unmet'"],
    "secret_in_yaml.yaml": ["56:32: notify.channels.oncall_slack.slack.webhook_url_env: expected the NAME of an "
                            "environment variable (upper case, digits, '_'), e.g. SLACK_INCIDENT_WEBHOOK_URL; never put "
                            "the URL or secret itself in the matrix"],
    "url_key.yaml": ["56:7: notify.channels.oncall_slack.slack.webhook_url_env: required key 'webhook_url_env' is missing",
                     "56:15: notify.channels.oncall_slack.slack.webhook_url: unknown key 'webhook_url' (did you mean "
                     "'webhook_url_env'?)"],
    "two_channel_kinds.yaml": ["56:7: notify.channels.oncall.slack: give exactly one of `slack`, `teams`, `webhook` "
                               "or `email`"],
    "password_without_username.yaml": ["58:9: notify.channels.leads_mail.email.password_env: `password_env` needs a "
                                       "`username` to log in with"],
    "signed_webhook_without_secret.yaml": ["56:7: notify.channels.pager.webhook.secret_env: required key 'secret_env' "
                                           "is missing"],
}


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_every_bad_notify_matrix_has_its_expected_lines():
    assert sorted(p.name for p in (REPO / BAD).glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_notify_matrix_reports_its_error(in_repo, name):
    result = CliRunner().invoke(cli, ["validate", f"{BAD}/{name}"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[:-1] == [f"{BAD}/{name}:{line}" for line in EXPECTED[name]]
    assert lines[-1] == f"{BAD}/{name}: invalid, {len(EXPECTED[name])} problem(s)"


MINIMAL = (REPO / "matrix_config" / "examples" / "minimal.yaml").read_text()
# L2 acknowledges within 15 minutes in these variants.
FAST_L2 = MINIMAL.replace("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 15m, resolve: 1d}")
CHANNELS = """
notify:
  channels:
    oncall_slack:
      slack: {webhook_url_env: SLACK_ONCALL_WEBHOOK_URL}
    spare_teams:
      teams: {webhook_url_env: TEAMS_WEBHOOK_URL}
"""


def _findings(text: str) -> list[str]:
    return [f.line() for f in lint(load_matrix_text(text, "m.yaml"))]


def test_lint_warns_about_a_short_clock_whose_warnings_and_breaches_reach_nobody():
    assert FAST_L2 != MINIMAL
    assert _findings(FAST_L2) == [
        "m.yaml:37:24: levels[1].sla.acknowledge: warning: L2's acknowledge clock is 15m: its warnings and breaches "
        "only reach an internal note; route them to a channel under notify.routes (event: [warning, breach], "
        "level: [L2])"]
    breach_only = FAST_L2 + CHANNELS + """  routes:
    - when: {event: breach, level: L2}
      to: [oncall_slack, spare_teams]
"""
    assert _findings(breach_only) == [
        "m.yaml:37:24: levels[1].sla.acknowledge: warning: L2's acknowledge clock is 15m: its warnings only reach an "
        "internal note; route them to a channel under notify.routes (event: [warning], level: [L2])"]
    routed = FAST_L2 + CHANNELS + """  routes:
    - when: {event: [warning, breach], level: [L1, L2], clock: [acknowledge]}
      to: [oncall_slack]
"""
    assert _findings(routed) == [
        "m.yaml:56:5: notify.channels.spare_teams: warning: channel 'spare_teams' is not used by any route"]
    # A 1-hour clock is read in time from the ticket: no warning without routes.
    assert _findings(MINIMAL) == []


def test_routes_accept_every_event_and_single_values():
    text = MINIMAL + CHANNELS + """  routes:
    - when: {event: role_missing, level: L2}
      to: oncall_slack
    - when: {event: [exit_unmet, cadence, enter_level]}
      to: [spare_teams]
"""
    notify = load_matrix_text(text, "m.yaml").matrix.notify
    assert [(r.when.event, r.when.level, r.to) for r in notify.routes] == [
        (["role_missing"], ["L2"], ["oncall_slack"]),
        (["exit_unmet", "cadence", "enter_level"], None, ["spare_teams"])]
    assert notify.channels["oncall_slack"].kind == "slack"


def test_an_alert_template_that_fails_to_render_is_a_lint_error():
    text = MINIMAL.replace("templates:\n", "templates:\n  page: |\n    {{ alert.summary }} {{ ticket.fields.x.y.z }}\n") \
        + CHANNELS + """  routes:
    - when: {event: breach}
      to: [oncall_slack, spare_teams]
      template: page
"""
    findings = [f for f in lint(load_matrix_text(text, "m.yaml")) if f.severity == "error"]
    assert [f.path for f in findings] == ["templates.page"]
    assert "fails to render at L1 for an alert of notify.routes[0]" in findings[0].message
