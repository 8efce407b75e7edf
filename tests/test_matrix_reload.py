"""Live matrix reload with last-good (issue 14): a changed MATRIX_PATH (seen on use, or after SIGHUP) is
validated first; a broken file is refused with its FILE:LINE:COL lines in the log and /readyz while the
last good matrix keeps deciding; a valid one takes effect for new tickets without a restart, and
MATRIX_REPIN=all moves open tickets to it with a decision-log row for each move."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from integration.pipeline import process_ticket
from integration.store.db import DecisionRow, EventRow, TicketStateRow
from integration.store.events import DatabaseEventSink, add_hint
from matrix_config.loader import load_matrix
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings
from webhooks.app import create_app

BASE = Path(__file__).resolve().parent / "matrix" / "replay" / "base.yaml"
TIGHTER = ("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 30m, resolve: 1d}")
BROKEN = ("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 1h, resolv: 1d}")


class Service:
    def __init__(self, tmp_path: Path, **settings):
        self.matrix_path = tmp_path / "matrix.yaml"
        self.matrix_path.write_text(BASE.read_text())
        self.fake = FakeConnector("zendesk")
        self.clock = ManualClock(datetime(2026, 11, 16, 9, tzinfo=timezone.utc))
        self.settings = make_settings(f"sqlite:///{tmp_path / 'service.db'}", MATRIX_PATH=str(self.matrix_path),
                                      ZENDESK_WEBHOOK_SECRET="s", **settings)
        self.runtime = make_runtime(self.settings, self.fake, clock=self.clock)

    def write_matrix(self, old: str, new: str) -> None:
        self.matrix_path.write_text(BASE.read_text().replace(old, new))

    def ticket(self, ticket_id: str, **record) -> str:
        """A pass on a new or changed ticket; returns the matrix version its state is pinned to."""
        self.clock.advance(60)
        if self.fake.store.load(ticket_id) is None:
            self.fake.put(ticket_id, created_at=self.clock.value.isoformat(), fields={"issue_type": "question"}, **record)
        elif record:
            self.fake.edit(ticket_id, lambda stored: stored.update(record))
        add_hint(self.runtime.db, "zendesk", ticket_id, "test", key=f"{ticket_id}@{self.clock.value}", now=self.clock.value)
        process_ticket("zendesk", ticket_id, deps=self.runtime.deps())
        with self.runtime.db.session() as session:
            return session.get(TicketStateRow, ("zendesk", ticket_id)).matrix_version

    def readyz(self):
        sink = DatabaseEventSink(self.runtime.db, enqueue=None, matrix_health=self.runtime.matrix_health)
        return create_app(self.settings, sink=sink).test_client().get("/readyz")


def test_a_broken_file_is_refused_the_last_good_matrix_keeps_running_and_a_fix_takes_effect(tmp_path, caplog):
    service = Service(tmp_path, MATRIX_WATCH_SECONDS=0)
    v1 = load_matrix(BASE).version
    assert service.ticket("A") == v1

    service.write_matrix(*BROKEN)
    with caplog.at_level(logging.ERROR, logger="escalation.matrix"):
        assert service.ticket("B") == v1  # processed, with the last good matrix
    assert f"{service.matrix_path}:37:" in caplog.text and "refused" in caplog.text and "resolv" in caplog.text
    response = service.readyz()
    assert response.status_code == 200  # still serving webhooks with the last good matrix
    assert response.json["checks"]["matrix"].startswith(f"ok, reload refused: {service.matrix_path}:37:")

    service.write_matrix(*TIGHTER)
    v2 = load_matrix(service.matrix_path).version
    assert service.ticket("C") == v2  # new tickets take the new version, no restart
    assert service.readyz().json["checks"]["matrix"] == "ok"
    assert service.ticket("A", subject="changed") == v1  # MATRIX_REPIN=none: a ticket in flight keeps its version
    service.runtime.db.dispose()


def test_sighup_reloads_and_matrix_repin_all_moves_open_tickets_with_a_decision_log_row(tmp_path, caplog):
    service = Service(tmp_path, MATRIX_WATCH_SECONDS=3600, MATRIX_REPIN="all")
    v1 = load_matrix(BASE).version
    assert service.ticket("A") == v1
    assert service.ticket("B") == v1
    service.ticket("B", status="solved")
    service.write_matrix(*TIGHTER)
    v2 = load_matrix(service.matrix_path).version
    assert service.ticket("C") == v1  # the file is looked at every hour only: not seen yet

    service.runtime.request_matrix_reload()  # what SIGHUP does in the web and worker processes
    with caplog.at_level(logging.INFO, logger="escalation.matrix"):
        assert service.ticket("D") == v2
    assert f"version {v1} -> {v2}" in caplog.text and "2 open ticket(s) re-pinned" in caplog.text
    with service.runtime.db.session() as session:
        moves = session.execute(select(DecisionRow.ticket_id, DecisionRow.reason, DecisionRow.matrix_version)
                                .where(DecisionRow.status == "repinned").order_by(DecisionRow.ticket_id)).all()
        pins = dict(session.execute(select(TicketStateRow.ticket_id, TicketStateRow.matrix_version)).all())
        hinted = set(session.scalars(select(EventRow.ticket_id).where(EventRow.event_type.like("%repin%"))))
    assert [m.ticket_id for m in moves] == ["A", "C"]  # open ones; B is solved
    assert all(m.reason == f"matrix reload: re-pinned from matrix {v1} to {v2}" and m.matrix_version == v2 for m in moves)
    assert pins == {"A": v2, "B": v1, "C": v2, "D": v2}
    assert hinted == {"A", "C"}  # each moved ticket gets a pass that re-decides it

    service.write_matrix(*BROKEN)
    service.runtime.request_matrix_reload()
    assert service.ticket("E") == v2 and service.runtime.matrix().version == v2
    assert service.readyz().json["checks"]["matrix"].startswith("ok, reload refused:")
    service.runtime.db.dispose()
