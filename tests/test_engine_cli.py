"""`escalation explain` and `escalation simulate [--diff]` as an admin runs them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

REPO = Path(__file__).resolve().parent.parent
MATRIX = str(REPO / "matrix_config" / "examples" / "enterprise.yaml")
TICKETS = REPO / "tests" / "fixtures" / "tickets"
NOW = "2026-11-27T10:00:00Z"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_explain_shows_each_condition_and_the_decision():
    result = invoke("explain", MATRIX, str(TICKETS / "enterprise_outage.json"), "--now", NOW)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "1. password-reset  no match  (bypass)" in out
    assert "✗ issue_type = question" in out and "ticket has outage" in out
    assert "3. enterprise-outage  MATCH  (-> L3)" in out
    assert "✓ customer_tier = enterprise" in out
    assert "3 later rule(s) not tried" in out
    assert "Decision: (new) -> L3  (new ticket enters L3: rule enterprise-outage)" in out
    assert "priority: high -> urgent" in out
    assert "owner group: (unset) -> senior_engineering" in out
    assert "public reply (l3_incident):" in out


def test_explain_json_for_a_ticket_held_for_data():
    result = invoke("explain", MATRIX, str(TICKETS / "missing_data_outage.json"), "--now", NOW, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matched_rule"] == "wide-outage"
    wide = next(rule for rule in data["rules"] if rule["id"] == "wide-outage")
    assert {"attribute": "affected_users", "wants": ">= 100", "actual": 300, "holds": True} in wide["conditions"]
    first = data["rules"][0]
    assert first["matched"] is False and first["conditions"][0]["actual"] == "outage"
    decision = data["decision"]
    assert (decision["to_level"], decision["held_level"]) == ("L1", "L2")
    assert decision["missing_data"] == ["environment", "recent_changes"]
    assert decision["matrix_version"] == data["matrix"]["version"]
    assert decision["decided_at"] == "2026-11-27T10:00:00+00:00"


def test_explain_all_rules_and_existing_state():
    result = invoke("explain", MATRIX, str(TICKETS / "l1_ack_breach.json"), "--now", NOW, "--all-rules")
    assert result.exit_code == 0, result.output
    assert "State: at L1 since 2026-11-27T08:00:00+00:00, pending breaches: acknowledge" in result.stdout
    assert "6. security-report  no match" in result.stdout
    assert "Decision: L1 -> L2  (L1 -> L2: breach of acknowledge)" in result.stdout


def test_explain_rejects_a_misspelled_ticket_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "1", "prority": "high"}))
    result = invoke("explain", MATRIX, str(bad))
    assert result.exit_code == 1
    assert f"{bad}: prority: unknown key 'prority' (did you mean 'priority'?)" in result.stderr


def test_explain_refuses_an_invalid_matrix(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(MATRIX).read_text().replace("name: Frontline", "name: Frontline\n    colour: red", 1))
    result = invoke("explain", str(broken), str(TICKETS / "enterprise_outage.json"))
    assert result.exit_code == 1
    assert "colour" in result.stderr and "the matrix is invalid" in result.stderr


def test_simulate_summarises_json_and_jsonl_files():
    files = sorted(str(p) for p in TICKETS.iterdir())
    result = invoke("simulate", MATRIX, *files, "--now", NOW)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("1004 "))
    assert row.split()[:7] == ["1004", "L1", "(held:", "L2)", "frontline", "normal", "data_request"]
    assert next(line for line in lines if line.startswith("2002 ")).split()[1:5] == [
        "L3", "senior_engineering", "urgent", "l3_incident"]
    # Bypassed (password reset): no priority set, the rule's help-centre answer instead of the L1 welcome.
    assert next(line for line in lines if line.startswith("1002 ")).split()[1:5] == [
        "L1", "frontline", "-", "password_reset_answer"]
    assert "9 ticket(s): L1 4, L2 2, L3 3; 1 held for missing data" in result.stdout


def test_simulate_json():
    result = invoke("simulate", MATRIX, str(TICKETS / "batch.jsonl"), str(TICKETS / "billing_question.json"),
                    "--format", "json", "--now", NOW)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["ticket"] for t in data["tickets"]] == ["2001", "2002", "2003", "1003"]
    assert data["tickets"][1]["source"].endswith("batch.jsonl:3")
    assert data["tickets"][3]["owner"] == "billing_desk"
    assert data["summary"] == {"tickets": 4, "by_level": {"L1": 2, "L2": 1, "L3": 1}, "held_for_data": 0}


@pytest.fixture()
def stricter_matrix(tmp_path) -> Path:
    """The example with the wide-outage threshold raised from 100 to 1000 affected users."""
    text = Path(MATRIX).read_text()
    assert "affected_users: {gte: 100}}" in text
    other = tmp_path / "stricter.yaml"
    other.write_text(text.replace("affected_users: {gte: 100}}", "affected_users: {gte: 1000}}"))
    return other


def test_simulate_diff_shows_only_tickets_whose_outcome_changes(stricter_matrix):
    files = sorted(str(p) for p in TICKETS.iterdir())
    result = invoke("simulate", MATRIX, *files, "--diff", str(stricter_matrix), "--now", NOW)
    assert result.exit_code == 0, result.output
    changed_rows = [line for line in result.stdout.splitlines() if line[:4].isdigit()]
    assert {row.split()[0] for row in changed_rows} == {"1004"}
    assert any(row.split()[1:4] == ["rule_id", "wide-outage", "default"] for row in changed_rows)
    assert "1 of 9 ticket(s) change outcome" in result.stdout

    as_json = invoke("simulate", MATRIX, *files, "--diff", str(stricter_matrix), "--format", "json", "--now", NOW)
    data = json.loads(as_json.stdout)
    assert data["base"]["version"] != data["other"]["version"]
    [change] = data["changed"]
    assert change["ticket"] == "1004"
    assert change["changes"]["held_level"] == {"base": "L2", "other": None}
    assert change["changes"]["reply_template"] == {"base": "data_request", "other": "l1_received"}


def test_simulate_reports_the_bad_line_of_a_jsonl_file(tmp_path):
    bad = tmp_path / "tickets.jsonl"
    bad.write_text('{"id": "1"}\n{"id": "2", "status": "waiting"}\n')
    result = invoke("simulate", MATRIX, str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2: status: 'waiting' is not one of new, open, pending, on_hold, solved, closed" in result.stderr


def test_simulation_is_identical_across_processes_with_different_hash_seeds():
    """Sets and dicts must not leak iteration order into decisions: two interpreters with different
    string-hash seeds give byte-identical output."""
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from datetime import datetime\n"
        "from integration.engine import decide\n"
        "from integration.ticket_json import load_ticket_files\n"
        "from matrix_config.loader import load_matrix\n"
        "loaded = load_matrix(sys.argv[1])\n"
        "now = datetime.fromisoformat(sys.argv[2])\n"
        "for r in load_ticket_files(sys.argv[3:]):\n"
        "    d = decide(r.ticket, r.state, loaded.matrix, now, version=loaded.version)\n"
        "    print(json.dumps(d.to_dict(), sort_keys=False))\n"
    )
    files = sorted(str(p) for p in TICKETS.iterdir())
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", script, MATRIX, NOW, *files],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    decisions = [json.loads(line) for line in outputs[0].splitlines()]
    assert len(decisions) == 9 and all(d["internal_note"] for d in decisions)
