"""How a Runtime is wired to its own database and queue: two runtimes in one process (a test process, a
CLI command next to a worker's) each get the timer tasks their own database's commits schedule; the
runtime built last does not take over every session in the process."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from integration.store import timers as timer_host
from tests.support.fake_connector import FakeConnector, make_runtime, make_settings


def _timer(ticket_id: str):
    return timer_host.TimerSpec(vendor="zendesk", ticket_id=ticket_id, kind="breach", clock="acknowledge", level="L1",
                                due_at=datetime.now(timezone.utc) - timedelta(seconds=1), matrix_version="v1", fraction=1.0)


def _queued_timer_ids(runtime) -> list[int]:
    return [task.args[0] for task in runtime.huey.pending() if task.name == "fire_timer"]


def test_each_runtime_queues_the_timers_its_own_database_commits(tmp_path):
    first = make_runtime(make_settings(f"sqlite:///{tmp_path}/first.db"), FakeConnector("zendesk"))
    second = make_runtime(make_settings(f"sqlite:///{tmp_path}/second.db"), FakeConnector("zendesk"))
    try:
        with first.db.session() as session:
            first_timer = timer_host.schedule(session, _timer("101")).id
        with second.db.session() as session:
            second_timer = timer_host.schedule(session, _timer("202")).id
        assert _queued_timer_ids(first) == [first_timer]
        assert _queued_timer_ids(second) == [second_timer]
    finally:
        first.db.dispose()
        second.db.dispose()


def test_a_rolled_back_session_queues_no_timer(tmp_path):
    runtime = make_runtime(make_settings(f"sqlite:///{tmp_path}/db.sqlite"), FakeConnector("zendesk"))
    try:
        try:
            with runtime.db.session() as session:
                timer_host.schedule(session, _timer("101"))
                raise RuntimeError("the pass failed")
        except RuntimeError:
            pass
        assert _queued_timer_ids(runtime) == []
    finally:
        runtime.db.dispose()
