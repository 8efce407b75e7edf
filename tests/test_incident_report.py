"""The L4 incident report (issue 11 part 4), through the pipeline against the validated fake Zendesk account:
resolving a ticket that reached L4 posts the report (internal note) and stores it once, even when the
resolution webhook is delivered three times or the worker is killed mid-pass; `escalation incident report`
shows it as Markdown and JSON."""
from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from integration.store.events import add_hint
from integration.alerts import list_alerts
from integration.incident_report import REPORT_REASON, IncidentReportRow, record_action
from integration.pipeline import fire_timer, process_ticket
from integration.store.db import DecisionRow
from tests.test_incident_roles import internal_notes, public_comments, rig, role_timers, run_pass  # noqa: F401

L4_ON_MISSING = {"incident_commander": {"within": "15m", "on_missing": "L4"}, "customer_contact": {"within": "15m"}}


class WorkerKilled(BaseException):
    """The worker process dies: nothing after this point runs."""


def reach_l4_and_solve(runtime, fake, clock) -> None:
    run_pass(runtime, "created")  # placed at L3
    [deadline] = role_timers(runtime, "incident_commander")
    clock.now = deadline.due_at + timedelta(minutes=2)
    assert fire_timer(deadline.id, deps=runtime.deps()) == "fired"  # no commander: on to L4
    assert "esc_l4" in fake.tickets["5158"]["tags"]
    ticket = fake.tickets["5158"]
    ticket["status"] = "solved"
    ticket["updated_at"] = "2026-11-27T09:45:00Z"
    clock.now = clock.now.replace(hour=9, minute=46)


def reports(fake) -> list[str]:
    return [n for n in internal_notes(fake) if n.startswith("## Incident report") or "\n## Incident report" in n]


def stored_rows(runtime) -> int:
    with runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(IncidentReportRow))


@pytest.mark.parametrize("rig", [L4_ON_MISSING], indirect=True)
def test_resolution_delivered_three_times_posts_and_stores_the_report_once(rig, monkeypatch, tmp_path):
    runtime, fake, clock = rig
    reach_l4_and_solve(runtime, fake, clock)
    public = len(public_comments(fake))
    for delivery in ("solved-1", "solved-2", "solved-3"):
        run_pass(runtime, delivery)
    [report] = reports(fake)
    assert stored_rows(runtime) == 1
    # The report is internal; the customer gets the matrix's incident summary once, with it.
    [summary] = public_comments(fake)[public:]
    assert summary.splitlines()[0] == ("Incident summary for 5158: the incident began 2026-11-27 09:00 CET and was "
                                       "resolved 2026-11-27 10:45 CET, after reaching L4.")
    assert summary.splitlines()[-1] == "A formal incident report with corrective actions and their owners follows."
    lines = report.splitlines()
    assert lines[0] == "## Incident report: ticket 5158 — " + fake.tickets["5158"]["subject"]
    assert "highest level L4." in report
    assert "- 2026-11-27 09:15 CET: L3 → L4 (L3 -> L4: incident_commander unfilled at the role's deadline)" in lines
    assert "- Incident commander: not assigned" in lines
    assert "- Resolved: 1h45m" in lines  # from entering L3 (08:00 UTC) to the solve (09:45)

    monkeypatch.setenv("DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("MATRIX_PATH", runtime.settings.matrix_path)
    md = CliRunner().invoke(cli, ["incident", "report", "zendesk", "5158"])
    assert md.exit_code == 0, md.output
    assert md.output.strip() == report.strip()
    as_json = CliRunner().invoke(cli, ["incident", "report", "zendesk", "5158", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert (data["top_level"], data["time_to"]["resolve"]) == ("L4", "1h45m")
    assert [(t["from"], t["to"]) for t in data["timeline"]] == [(None, "L3"), ("L3", "L4")]
    assert [r["label"] for r in data["roles"]] == ["Incident commander", "Customer contact"]


@pytest.mark.parametrize("rig", [L4_ON_MISSING], indirect=True)
@pytest.mark.parametrize("killed_after", ["Incident summary", "## Incident report"])
def test_worker_killed_mid_pass_posts_the_report_and_the_summary_once(rig, killed_after):
    runtime, fake, clock = rig
    reach_l4_and_solve(runtime, fake, clock)
    public = len(public_comments(fake))

    def kill_after(body):
        if killed_after in ((body.get("ticket") or {}).get("comment") or {}).get("body", ""):
            fake.after_ticket_update = None
            raise WorkerKilled()

    fake.after_ticket_update = kill_after  # Zendesk stored this update; the worker never hears back
    add_hint(runtime.db, "zendesk", "5158", "test", key="solved")
    with pytest.raises(WorkerKilled):
        process_ticket("zendesk", "5158", deps=runtime.deps())
    clock.now += timedelta(minutes=5)  # the dead worker's lease ran out
    run_pass(runtime, "solved-again")
    run_pass(runtime, "solved-third")
    assert len(reports(fake)) == 1
    assert len([c for c in public_comments(fake)[public:] if c.startswith("Incident summary")]) == 1
    assert stored_rows(runtime) == 1
    with runtime.db.session() as session:
        statuses = session.scalars(select(DecisionRow.status).where(DecisionRow.reason.contains(REPORT_REASON))).all()
    assert statuses == ["recovered"]


@pytest.mark.parametrize("rig", [L4_ON_MISSING], indirect=True)
def test_solved_at_l4_without_owned_actions_is_flagged_once_with_an_alert(rig):
    runtime, fake, clock = rig
    reach_l4_and_solve(runtime, fake, clock)
    run_pass(runtime, "solved")
    run_pass(runtime, "solved-again")
    [report] = reports(fake)
    assert "### Exit criteria of L4 not met (the ticket stays solved)\n- no corrective action is recorded" in report
    assert fake.tickets["5158"]["status"] == "solved"  # flagged, never reopened
    assert [(a.event, a.level, a.channel) for a in list_alerts(runtime.db) if a.event == "exit_unmet"] == [
        ("exit_unmet", "L4", "support_leads_mail")]


@pytest.mark.parametrize("rig", [L4_ON_MISSING], indirect=True)
def test_solved_at_l4_with_owned_actions_meets_the_exit_criteria(rig):
    runtime, fake, clock = rig
    reach_l4_and_solve(runtime, fake, clock)
    record_action(runtime.db, vendor="zendesk", ticket_id="5158", issue_key="OPS-12", summary="Failover runbook",
                  owner="5b10ac8d82e05b22cc7d4ef5", owner_name="Olga Ops", due=date(2026, 12, 15), url=None,
                  now=clock.now)
    run_pass(runtime, "solved")
    [report] = reports(fake)
    assert "Exit criteria" not in report
    assert "- OPS-12: Failover runbook — owner Olga Ops, due 2026-12-15" in report.splitlines()
    assert public_comments(fake)[-1].endswith("Corrective actions we committed to:\n"
                                              "- Failover runbook (owner Olga Ops, due 2026-12-15)")
    assert [a for a in list_alerts(runtime.db) if a.event == "exit_unmet"] == []
