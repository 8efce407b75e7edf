"""Snapshots and replay (issue 14): a seeded day of mixed tickets recorded by running real passes through
the pipeline with the fake helpdesk (so the snapshots come from the product's own write path), the SLA
timers fired at their due times as a worker would, then replayed through `escalation replay`.

The matrix is tests/matrix/replay/base.yaml (the minimal example: L1 acknowledge 4h, on breach -> L2;
L2 acknowledge 1h; rule: incidents go straight to L2; clocks run around the clock). Monday 2026-11-16, UTC:

  T6  08:00 question at L1, acknowledged 08:05; an agent sets L2 at 09:00; solved 09:20
  T4  09:00 question at L1, acknowledged 09:10, solved 09:30
  T1  10:00 incident at L2, acknowledged 10:45            (45 min: met at 1h, breached at 30m)
  T2  11:00 incident at L2, acknowledged 11:20            (20 min: met either way)
  T3  12:00 incident at L2, acknowledged 13:30            (breached either way; the breach fired at 13:00)
  T5  14:00 question at L1, unacknowledged: L1 breach 18:00 -> L2; acknowledged 18:40 (40 min after entry)
  T7  16:00 incident at L2, solved 16:40 unacknowledged   (40 min: met at 1h, breached at 30m)
  T2  solved 19:00 (the last recorded pass: the history ends here)

By hand, a draft with L2 acknowledge 30m makes exactly T1, T5 and T7 breach at L2, and changes nothing else.
"""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from integration.store.events import add_hint
from integration.model import Ticket
from integration.pipeline import fire_timer, process_ticket
from integration.replay import run_ticket
from integration.snapshots import decode, load_history, ticket_to_json
from integration.store.db import DecisionRow, SnapshotRow, TimerRow
from matrix_config.loader import load_matrix
from service.periodic import PeriodicJobs, prune_snapshots
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings

BASE = Path(__file__).resolve().parent / "matrix" / "replay" / "base.yaml"


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 16, hour, minute, tzinfo=timezone.utc)


class Recorder:
    """Runs the pipeline over the fake helpdesk with an injected clock; fires due timers like a worker."""

    def __init__(self, database_url: str, **settings: Any):
        self.fake = FakeConnector("zendesk")
        self.clock = ManualClock(at(7))
        self.runtime = make_runtime(make_settings(database_url, MATRIX_PATH=str(BASE), **settings), self.fake,
                                    clock=self.clock)
        self.db = self.runtime.db

    def advance(self, to: datetime) -> None:
        while True:
            with self.db.session() as session:
                due = session.execute(select(TimerRow.id, TimerRow.due_at).where(
                    TimerRow.status == "pending", TimerRow.due_at <= to).order_by(TimerRow.due_at, TimerRow.id)).first()
            if due is None:
                break
            self.clock.value = due.due_at
            fire_timer(due.id, deps=self.runtime.deps())
        self.clock.value = to

    def run(self, ticket_id: str, when: datetime) -> None:
        self.advance(when)
        add_hint(self.db, "zendesk", ticket_id, "test", key=f"{ticket_id}@{when.isoformat()}", now=when)
        process_ticket("zendesk", ticket_id, deps=self.runtime.deps())

    def create(self, ticket_id: str, when: datetime, issue_type: str) -> None:
        self.advance(when)  # the timers due before the change see the ticket as it was
        self.fake.put(ticket_id, created_at=when.isoformat(), updated_at=when.isoformat(),
                      fields={"issue_type": issue_type})
        self.run(ticket_id, when)

    def edit(self, ticket_id: str, when: datetime, fields: dict | None = None, **changes: Any) -> None:
        def change(record: dict) -> None:
            record.update(changes, updated_at=when.isoformat())
            if fields:
                record["fields"] = {**record["fields"], **fields}
        self.advance(when)
        self.fake.edit(ticket_id, change)
        self.run(ticket_id, when)

    def acknowledge(self, ticket_id: str, when: datetime) -> None:
        self.edit(ticket_id, when, first_public_agent_reply_at=when.isoformat(),
                  last_public_agent_reply_at=when.isoformat())


def record_day(database_url: str) -> Recorder:
    r = Recorder(database_url)
    r.create("T6", at(8), "question")
    r.acknowledge("T6", at(8, 5))
    r.create("T4", at(9), "question")
    r.edit("T6", at(9), fields={"level": "L2"})  # set by hand
    r.acknowledge("T4", at(9, 10))
    r.edit("T6", at(9, 20), status="solved")
    r.edit("T4", at(9, 30), status="solved")
    r.create("T1", at(10), "incident")
    r.acknowledge("T1", at(10, 45))
    r.create("T2", at(11), "incident")
    r.acknowledge("T2", at(11, 20))
    r.create("T3", at(12), "incident")
    r.acknowledge("T3", at(13, 30))
    r.create("T5", at(14), "question")
    r.create("T7", at(16), "incident")
    r.edit("T7", at(16, 40), status="solved")
    r.acknowledge("T5", at(18, 40))
    r.edit("T2", at(19), status="solved")
    return r


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    path = tmp_path_factory.mktemp("replay") / "history.db"
    recorder = record_day(f"sqlite:///{path}")
    yield recorder
    recorder.db.dispose()


def draft(tmp_path: Path, old: str, new: str, name: str = "draft.yaml") -> Path:
    text = BASE.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def replay_json(day: Recorder, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["replay", *args, "--format", "json"], env={"DATABASE_URL": day.runtime.settings.database_url})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_pass_stores_the_ticket_it_decided_on(day: Recorder) -> None:
    with day.db.session() as session:
        snapshots = session.scalars(select(SnapshotRow).order_by(SnapshotRow.id)).all()
        decisions = session.scalar(select(func.count()).select_from(DecisionRow))
    events_passes = [s for s in snapshots if s.trigger == "events"]
    assert len(events_passes) == 18  # one per recorded create/edit above
    assert {s.ticket_id for s in snapshots} == {"T1", "T2", "T3", "T4", "T5", "T6", "T7"}
    assert sum(1 for s in snapshots if s.decision_id is not None) <= decisions
    t5_timers = [s.taken_at for s in snapshots if s.ticket_id == "T5" and s.trigger.startswith("timer")]
    assert at(18) in t5_timers  # the L1 acknowledge breach, fired at its due time
    stored = decode(snapshots[0].ticket)
    assert stored["id"] == "T6" and stored["fields"] == {"issue_type": "question"}
    assert stored["version_token"] is None  # the fake's concurrency token is not kept
    assert len(snapshots[0].ticket) < len(json.dumps(stored))  # compressed


def test_snapshots_carry_no_credentials() -> None:
    ticket = Ticket(vendor="jira", id="SUP-1", url="https://bot:hunter2@jira.example.com/browse/SUP-1?token=abc123",
                    version_token="stamp-9")
    stored = json.dumps(ticket_to_json(ticket))
    assert "hunter2" not in stored and "abc123" not in stored and "stamp-9" not in stored
    assert "jira.example.com/browse/SUP-1" in stored


def test_replaying_the_recorded_matrix_reproduces_what_happened(day: Recorder) -> None:
    history = load_history(day.db)
    recorded = load_matrix(BASE)
    end = max(p.taken_at for p in history.passes)
    for (_vendor, ticket_id), passes in history.by_ticket().items():
        course = run_ticket(passes, lambda _version: recorded, end)
        levels = [p.decision.to_level for p in passes if p.decision is not None and p.decision.to_level]
        breaches = [p for p in passes if p.is_timer and p.decision is not None
                    and (p.decision.internal_note or "").startswith("SLA breach")]
        assert course.levels == levels, ticket_id
        assert len(course.breaches) == len(breaches), ticket_id

    report = replay_json(day, "--matrix", str(BASE))
    assert report["tickets"] == []
    summary = report["summary"]
    assert summary["tickets"] == 7 and summary["tickets_differing"] == 0 and summary["breach_delta"] == 0
    # what happened: T3's L2 acknowledge breach and T5's L1 acknowledge breach that moved it to L2
    assert summary["breaches_baseline"] == 2
    assert summary["per_level"]["L2"]["entries_baseline"] == 6  # T1, T2, T3, T7 by rule; T6 by hand; T5 by breach
    assert report["summary"]["per_level"]["L1"]["breaches_baseline"] == 1


def test_a_tighter_l2_target_reports_exactly_the_tickets_that_would_have_breached(day: Recorder, tmp_path: Path) -> None:
    tighter = draft(tmp_path, "sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 30m, resolve: 1d}")
    report = replay_json(day, "--matrix", str(tighter))
    by_ticket = {t["ticket_id"]: t for t in report["tickets"]}
    assert sorted(by_ticket) == ["T1", "T5", "T7"]
    for ticket in by_ticket.values():
        assert ticket["breaches_added"] == [{"level": "L2", "clock": "acknowledge"}]
        assert ticket["breaches_removed"] == [] and ticket["levels"] is None
        assert ticket["messages_added"] == [] and ticket["messages_removed"] == []
    assert report["summary"]["breach_delta"] == 3
    assert report["summary"]["per_level"]["L2"]["breaches_draft"] - report["summary"]["per_level"]["L2"]["breaches_baseline"] == 3

    table = CliRunner().invoke(cli, ["replay", "--matrix", str(tighter)], env={"DATABASE_URL": day.runtime.settings.database_url})
    assert table.exit_code == 0
    assert "tickets that differ: 3" in table.output and "+L2 acknowledge" in table.output
    md = CliRunner().invoke(cli, ["replay", "--matrix", str(tighter), "--format", "md"],
                            env={"DATABASE_URL": day.runtime.settings.database_url})
    assert "| zendesk:T5 |" in md.output and "| breaches | 2 => 5 (+3) |" in md.output


def test_a_draft_that_routes_incidents_to_l1_changes_level_paths_and_messages(day: Recorder, tmp_path: Path) -> None:
    # Incidents no longer go straight to L2: they start at L1 (with its welcome reply) and, unacknowledged for
    # 4h, nothing breaches before they are acknowledged, so T1, T2, T3 and T7 stay at L1.
    relaxed = draft(tmp_path, "when: {issue_type: incident}", "when: {issue_type: incident, tags: {any: [p1]}}")
    report = replay_json(day, "--matrix", str(relaxed))
    by_ticket = {t["ticket_id"]: t for t in report["tickets"]}
    assert sorted(by_ticket) == ["T1", "T2", "T3", "T7"]
    assert by_ticket["T1"]["levels"] == {"baseline": ["L2"], "draft": ["L1"]}
    assert len(by_ticket["T1"]["messages_added"]) == 1 and "received" in by_ticket["T1"]["messages_added"][0]
    assert by_ticket["T3"]["breaches_removed"] == [{"level": "L2", "clock": "acknowledge"}]
    assert report["summary"]["level_path_changes"] == 4


def test_export_then_replay_from_file_gives_the_same_report(day: Recorder, tmp_path: Path) -> None:
    env = {"DATABASE_URL": day.runtime.settings.database_url}
    exported = tmp_path / "history.jsonl.gz"
    result = CliRunner().invoke(cli, ["snapshots", "export", "-o", str(exported)], env=env)
    assert result.exit_code == 0, result.output
    lines = gzip.decompress(exported.read_bytes()).decode().splitlines()
    assert json.loads(lines[0])["kind"] == "header" and json.loads(lines[-1])["kind"] == "matrix"
    assert {json.loads(line)["kind"] for line in lines[1:-1]} == {"pass"}
    tighter = draft(tmp_path, "sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 30m, resolve: 1d}")
    from_db = replay_json(day, "--matrix", str(tighter))
    from_file = CliRunner().invoke(cli, ["replay", "--matrix", str(tighter), "--from-file", str(exported),
                                         "--format", "json"], env={"DATABASE_URL": "sqlite:///" + str(tmp_path / "none.db")})
    assert from_file.exit_code == 0, from_file.output
    assert {**json.loads(from_file.stdout), "history": None} == {**from_db, "history": None}
    # stdout export (what `> history.jsonl.gz` gets) is the same data
    piped = CliRunner().invoke(cli, ["snapshots", "export", "--vendor", "zendesk"], env=env)
    assert gzip.decompress(piped.stdout_bytes).decode().splitlines()[1:] == lines[1:]


def test_since_selects_tickets_with_recent_passes_whole(day: Recorder, tmp_path: Path) -> None:
    tighter = draft(tmp_path, "sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 30m, resolve: 1d}")
    report = replay_json(day, "--matrix", str(tighter), "--since", "2026-11-16T16:30:00")
    # T7 (solved 16:40), T5 (acknowledged 18:40) and T2 (solved 19:00) have passes since 16:30
    assert report["summary"]["tickets"] == 3
    assert sorted(t["ticket_id"] for t in report["tickets"]) == ["T5", "T7"]


def test_a_draft_with_errors_exits_1_with_its_file_line_col_lines(day: Recorder, tmp_path: Path) -> None:
    broken = draft(tmp_path, "sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 1h, resolv: 1d}")
    result = CliRunner().invoke(cli, ["replay", "--matrix", str(broken)], env={"DATABASE_URL": day.runtime.settings.database_url})
    assert result.exit_code == 1
    assert f"{broken}:37:" in result.stderr and "resolv" in result.stderr
    assert "nothing replayed" in result.stderr and result.stdout == ""


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE)], env=env)
    assert result.exit_code == 0
    assert "Nothing to replay: the database holds no recorded passes." in result.output
    exported = tmp_path / "empty.jsonl.gz"
    assert CliRunner().invoke(cli, ["snapshots", "export", "-o", str(exported)], env=env).exit_code == 0
    result = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE), "--from-file", str(exported), "--vendor", "jira"],
                                env=env)
    assert f"Nothing to replay: {exported} holds no recorded passes for jira." in result.output
    as_json = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE), "--format", "json"], env=env)
    assert json.loads(as_json.stdout)["empty"] is True


def test_tickets_decided_with_a_version_the_file_does_not_hold_are_listed_not_replayed(day: Recorder, tmp_path: Path) -> None:
    env = {"DATABASE_URL": day.runtime.settings.database_url}
    exported = tmp_path / "history.jsonl.gz"
    assert CliRunner().invoke(cli, ["snapshots", "export", "-o", str(exported)], env=env).exit_code == 0
    lines = [line for line in gzip.decompress(exported.read_bytes()).decode().splitlines()
             if json.loads(line)["kind"] != "matrix"]
    stripped = tmp_path / "no-matrix.jsonl"
    stripped.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE), "--from-file", str(stripped), "--format", "json"])
    report = json.loads(result.stdout)
    assert report["summary"]["tickets"] == 0 and report["summary"]["skipped_tickets"] == 7
    table = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE), "--from-file", str(stripped)])
    assert "7 ticket(s) decided with matrix version" in table.output and "not replayed" in table.output


def test_a_file_that_is_no_export_is_refused_with_its_line(tmp_path: Path) -> None:
    bogus = tmp_path / "history.jsonl"
    bogus.write_text('{"kind": "header", "format": "escalation-snapshots/1"}\n{"kind": "pass", "vendor": "zendesk"}\n')
    result = CliRunner().invoke(cli, ["replay", "--matrix", str(BASE), "--from-file", str(bogus)])
    assert result.exit_code == 1
    assert f"{bogus}:2: not a snapshot record" in result.stderr


def test_snapshots_older_than_the_retention_are_pruned_by_the_periodic_jobs(tmp_path: Path) -> None:
    r = Recorder(f"sqlite:///{tmp_path / 'prune.db'}", SNAPSHOT_RETENTION_DAYS=30)
    r.create("OLD", at(8), "question")
    r.create("NEW", datetime(2026, 12, 10, 8, tzinfo=timezone.utc), "question")
    assert "periodic:snapshots" in [name for name, _, _ in PeriodicJobs(r.runtime).jobs()]
    with r.db.session() as session:
        old = session.scalar(select(func.count()).where(SnapshotRow.ticket_id == "OLD"))
    r.clock.value = datetime(2026, 12, 20, tzinfo=timezone.utc)  # OLD's passes (and timer firings) are > 30 days old
    assert old >= 1 and prune_snapshots(r.runtime) == old
    with r.db.session() as session:
        assert session.scalars(select(SnapshotRow.ticket_id)).all() == ["NEW"]
    r.db.dispose()
