"""A real worker process (`escalation worker` built with a test double, tests/support/worker_entry.py) killed with SIGKILL between the two updates Zendesk needs for one decision
(fields + customer reply, then the internal note), restarted: every ticket ends with the reply once and
the note once, and `escalation history` lists only what reached the helpdesk. The helpdesk is the
two-update test double (tests/support/two_update_helpdesk.py) in a directory shared by the processes."""
from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.support.fake_connector import neutral_event
from tests.support.two_update_helpdesk import TwoUpdateHelpdesk
from tests.test_e2e_processes import TICKETS, _query, _wait, environment, worker_entry  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


def test_worker_killed_between_reply_and_note_update_sends_each_once(environment, monkeypatch):  # noqa: F811
    tmp_path, fake, start = environment
    helpdesk = TwoUpdateHelpdesk("zendesk", store=fake.store)
    db_path = tmp_path / "var" / "escalation.db"
    from integration.store.db import Database
    from integration.store.events import DatabaseEventSink

    database = Database(f"sqlite:///{db_path}")
    sink = DatabaseEventSink(database, None)  # no queue: the worker's reconciler finds the rows
    for ticket_id in TICKETS:
        sink.accept(neutral_event(ticket_id, f"created-{ticket_id}"), json.dumps({"n": ticket_id}).encode(),
                    datetime.now(timezone.utc))
    database.dispose()
    concurrency = {"WORKER_CONCURRENCY": str(len(TICKETS))}

    # Every pass stops between its two updates; kill the worker once every ticket is in that window.
    worker = start(worker_entry(fake, "--helpdesk", "two-update", "--between-updates", "60"), "worker-1.log",
                   **concurrency)

    def first_updates_only() -> set[str]:
        updates = [(w["ticket_id"], w["update"]) for w in helpdesk.writes()]
        return {t for t, n in updates if n == 1} - {t for t, n in updates if n == 2}

    _wait(lambda: first_updates_only() == set(TICKETS), 30, "every ticket between its two updates", interval=0.1)
    # ... and its intent recording, durably, that the reply went out and the note goes next.
    _wait(lambda: _query(db_path, "SELECT COUNT(*) FROM decisions WHERE status = 'applying' "
                                  "AND parts LIKE '%\"sending\": [\"note\"]%'") == [(len(TICKETS),)],
          30, "the progress of every ticket's intent", interval=0.1)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert all(note is None for note in (w["internal_note"] for w in helpdesk.writes())), "no note went out yet"
    assert _query(db_path, "SELECT COUNT(*) FROM decisions WHERE status = 'applying'") == [(len(TICKETS),)]

    start(worker_entry(fake, "--helpdesk", "two-update"), "worker-2.log", **concurrency)
    _wait(lambda: _query(db_path, "SELECT COUNT(*) FROM events WHERE status = 'done'")[0][0] == len(TICKETS),
          45, "every event to be processed after the restart", interval=0.2)

    for ticket_id in TICKETS:
        comments = helpdesk.comments(ticket_id)
        assert [c["public"] for c in comments].count(True) == 1, (ticket_id, comments)
        assert [c["public"] for c in comments].count(False) == 1, (ticket_id, comments)
    assert _query(db_path, "SELECT DISTINCT status FROM decisions") == [("recovered",)]

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_path}")
    for ticket_id in TICKETS:
        result = CliRunner().invoke(cli, ["history", "zendesk", ticket_id, "--format", "json"])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.output)["decisions"]
        assert row["parts"] == {"fields": "written", "reply": "written", "note": "resent"}, row
        assert row["not_written"] == [] and "internal note (sent again after a crash)" in row["written"]
