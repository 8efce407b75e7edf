"""Metrics count minutes to incident commander assigned (issue 11 item 1): the pipeline records when a level's
role was first seen filled at each level entry (the field's vendor change time when the helpdesk's history
gives it, else the ticket's last change), and `integration.metrics.time_to_role`, `escalation metrics` and
`escalation report` show count, p50, p90 and max (nearest rank), with dry run apart. Fake helpdesk, SQLite."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from integration.metrics import time_to_role
from integration.pipeline import process_ticket
from integration.store.db import MilestoneRow
from integration.store.events import add_hint
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings

OUTAGE = {"issue_type": "outage", "customer_tier": "enterprise", "environment": "production",
          "account_id": "GLX-1", "recent_changes": "deploy 4.2", "affected_users": 40}
IC = "incident_commander"


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, tzinfo=timezone.utc)


@pytest.fixture
def history(tmp_path, monkeypatch):
    """Outages placed straight at L3 (live unless said):
    100 created 09:00, commander set 09:12 (seen by a pass then)                          -> 12 min
    200 created 10:00, commander set at 10:05 per the vendor's history, pass at 10:20     -> 5 min
    300 created 11:00, commander set 11:40; a later edit at 11:50 records nothing new    -> 40 min
    400 created 13:00, no commander                                                      -> not counted
    900 DRY RUN: created 12:00, commander set 12:30                                       -> 30 min, dry run only
    Live nearest-rank over [5, 12, 40] min: p50 = 12 min, p90 = 40 min, max = 40 min."""
    database_url = f"sqlite:///{tmp_path}/escalation.db"
    fake = FakeConnector("zendesk")
    clock = ManualClock(utc(9))
    live = make_runtime(make_settings(database_url), fake, clock=clock)
    dry = make_runtime(make_settings(database_url, DRY_RUN=True), fake, clock=clock)

    def run(runtime, ticket_id: str, at: datetime) -> None:
        clock.value = at
        add_hint(runtime.db, "zendesk", ticket_id, "test", key=f"{ticket_id}@{at.isoformat()}", now=at)
        assert process_ticket("zendesk", ticket_id, deps=runtime.deps()).status == "done"

    def create(ticket_id: str, at: datetime, runtime=live) -> None:
        fake.put(ticket_id, created_at=at.isoformat(), updated_at=at.isoformat(), fields=dict(OUTAGE))
        run(runtime, ticket_id, at)

    def edit(ticket_id: str, at: datetime, runtime=live, changed_at: dict | None = None, **fields) -> None:
        def change(record: dict) -> None:
            record["fields"].update(fields)
            record["updated_at"] = at.isoformat()
            if changed_at:
                record["field_changed_at"] = {k: v.isoformat() for k, v in changed_at.items()}
        fake.edit(ticket_id, change)
        run(runtime, ticket_id, at)

    create("100", utc(9))
    edit("100", utc(9, 12), incident_commander="ada")
    create("200", utc(10))
    edit("200", utc(10, 20), changed_at={IC: utc(10, 5)}, incident_commander="grace")
    create("300", utc(11))
    edit("300", utc(11, 40), incident_commander="ada")
    edit("300", utc(11, 50), customer_contact="linus")
    create("900", utc(12), dry)
    edit("900", utc(12, 30), dry, incident_commander="ada")
    create("400", utc(13))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MATRIX_PATH", live.settings.matrix_path)
    yield live
    live.db.dispose()
    dry.db.dispose()


def test_minutes_to_commander_per_level_entry_nearest_rank_live_and_dry_run_apart(history):
    [live] = time_to_role(history.db, IC, dry_run=False)
    assert (live.level, live.count) == ("L3", 3)
    assert (live.p50_seconds, live.p90_seconds, live.max_seconds) == (12 * 60, 40 * 60, 40 * 60)
    [dry] = time_to_role(history.db, IC, dry_run=True)
    assert (dry.level, dry.count, dry.max_seconds, dry.dry_run) == ("L3", 1, 30 * 60, True)
    with history.db.session() as session:  # once per level entry: 300's later pass added no second row
        rows = session.scalars(select(MilestoneRow.ticket_id).where(MilestoneRow.clock == f"role:{IC}")).all()
    assert sorted(rows) == ["100", "200", "300", "900"]


def test_escalation_metrics_shows_time_to_commander_with_dry_run_apart(history):
    data = json.loads(CliRunner().invoke(cli, ["metrics", "--format", "json"]).output)
    assert data["time_to_incident_commander"] == [
        {"level": "L3", "role": IC, "count": 3, "p50_seconds": 720.0, "p90_seconds": 2400.0, "max_seconds": 2400.0}]
    assert data["dry_run"]["time_to_incident_commander"][0]["count"] == 1
    text = CliRunner().invoke(cli, ["metrics"]).output
    live_part, dry_part = text.split("Dry run (what the service would have done")
    assert "Time to incident commander assigned" in live_part
    assert "L3     n=3     12m / 40m / 40m" in live_part
    assert "L3     n=1     30m / 30m / 30m" in dry_part


def test_escalation_report_has_the_time_to_commander_table(history):
    result = CliRunner().invoke(cli, ["report", "--since", "2026-11-23", "--until", "2026-11-29", "--now",
                                      "2026-11-30T09:00:00"])
    assert result.exit_code == 0, result.output
    section = result.output.split("## Time to incident commander assigned")[1].split("##")[0]
    assert "| L3 | 3 | 12m | 40m | 40m |" in section
    dry = CliRunner().invoke(cli, ["report", "--since", "2026-11-23", "--until", "2026-11-29", "--dry-run",
                                   "--format", "json"])
    assert json.loads(dry.output)["time_to_incident_commander"] == [
        {"level": "L3", "role": IC, "count": 1, "p50_seconds": 1800.0, "p90_seconds": 1800.0, "max_seconds": 1800.0}]
