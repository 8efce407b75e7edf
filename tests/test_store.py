"""Storage: schema, durable intake with de-duplication, leases, timers, matrix versions and metrics,
on SQLite and on PostgreSQL (real servers; PostgreSQL skips visibly when absent)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, update

from integration import metrics
from integration.store import timers as timer_host
from integration.store.db import CsatRow, Database, DecisionRow, EventRow, MilestoneRow, TimerRow
from integration.store.leases import acquire_lease, release_lease
from integration.store.events import DatabaseEventSink
from integration.store.matrix_versions import load_current, load_version, store_version
from integration.store.migrations import current_revision
from integration.model import TimerSpec
from tests.support.fake_connector import neutral_event

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
TABLES = {"events", "ticket_state", "decisions", "timers", "watermarks", "matrix_versions", "milestones", "csat", "leases"}


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


class RecordingQueue:
    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __call__(self, vendor: str, ticket_id: str) -> None:
        self.calls.append((vendor, ticket_id))


def test_migration_creates_every_table_and_is_repeatable(db):
    db.migrate()  # a second run (another process starting) changes nothing
    assert TABLES <= set(inspect(db.engine).get_table_names())
    from alembic.script import ScriptDirectory

    from integration.store.migrations import alembic_config

    assert current_revision(db.engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert "parts" in {column["name"] for column in inspect(db.engine).get_columns("decisions")}


def test_sqlite_default_creates_its_directory_and_uses_wal(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/nested/var/escalation.db")
    database.migrate()
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "nested" / "var" / "escalation.db").exists()


def test_accepted_event_is_committed_before_accept_returns(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    result = sink.accept(neutral_event("42", "inv-1"), b'{"id": 42}', NOW)
    assert not result.duplicate
    # A separate connection (another process, in effect) sees the row already.
    other = Database(db.url)
    with other.session() as session:
        row = session.get(EventRow, result.event_id)
        assert (row.vendor, row.ticket_id, row.delivery_id, row.status, row.payload) == (
            "zendesk", "42", "inv-1", "pending", b'{"id": 42}')
        assert row.received_at == NOW
    other.dispose()
    assert queue.calls == [("zendesk", "42")]


def test_redelivery_with_same_delivery_id_is_a_duplicate_and_not_enqueued(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    first = sink.accept(neutral_event("42", "inv-1"), b'{"a": 1}', NOW)
    again = sink.accept(neutral_event("42", "inv-1"), b'{"a": 1, "retry": true}', NOW + timedelta(seconds=30))
    assert again.duplicate and again.event_id == first.event_id
    assert queue.calls == [("zendesk", "42")]


def test_identical_content_without_delivery_id_is_a_duplicate(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    first = sink.accept(neutral_event("7", None, vendor="jira"), b'{"issue": "SUP-7"}', NOW)
    again = sink.accept(neutral_event("7", None, vendor="jira"), b'{"issue": "SUP-7"}', NOW)
    different = sink.accept(neutral_event("7", None, vendor="jira"), b'{"issue": "SUP-7", "x": 1}', NOW)
    assert again.duplicate and again.event_id == first.event_id
    assert not different.duplicate
    # The second distinct event finds the first still pending: its task will take both.
    assert queue.calls == [("jira", "7")]


def test_events_for_a_ticket_with_a_queued_event_add_no_task(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    for i in range(5):
        sink.accept(neutral_event("42", f"inv-{i}"), f'{{"n": {i}}}'.encode(), NOW)
    sink.accept(neutral_event("43", "inv-other"), b'{"n": "other"}', NOW)
    assert queue.calls == [("zendesk", "42"), ("zendesk", "43")]


def test_an_event_arriving_after_the_earlier_ones_were_claimed_gets_its_own_task(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    sink.accept(neutral_event("42", "inv-1"), b'{"n": 1}', NOW)
    with db.session() as session:  # a pass claims it and is still running
        session.execute(update(EventRow).values(status="processing", lease_owner="w", lease_until=NOW))
    sink.accept(neutral_event("42", "inv-2"), b'{"n": 2}', NOW)
    assert queue.calls == [("zendesk", "42"), ("zendesk", "42")]


def test_an_event_behind_one_waiting_for_a_retry_is_not_held_back(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    sink.accept(neutral_event("42", "inv-1"), b'{"n": 1}', NOW)
    with db.session() as session:  # its pass failed; the retry task is scheduled an hour out
        session.execute(update(EventRow).values(next_attempt_at=NOW + timedelta(hours=1)))
    sink.accept(neutral_event("42", "inv-2"), b'{"n": 2}', NOW)
    assert queue.calls == [("zendesk", "42"), ("zendesk", "42")]


def test_same_delivery_id_from_another_vendor_is_not_a_duplicate(db):
    sink = DatabaseEventSink(db, RecordingQueue())
    sink.accept(neutral_event("1", "abc", vendor="zendesk"), b"{}", NOW)
    assert not sink.accept(neutral_event("1", "abc", vendor="jira"), b"{}", NOW).duplicate


def test_unhandled_event_is_recorded_as_ignored_and_not_enqueued(db):
    queue = RecordingQueue()
    sink = DatabaseEventSink(db, queue)
    result = sink.accept(neutral_event("9", "inv-9", handled=False, event_type="ticket.viewed"), b"{}", NOW)
    with db.session() as session:
        assert session.get(EventRow, result.event_id).status == "ignored"
    assert queue.calls == []


def test_concurrent_copies_of_one_delivery_store_one_event(db):
    sink = DatabaseEventSink(db, RecordingQueue())
    results = []

    def deliver():
        results.append(sink.accept(neutral_event("5", "inv-race"), b'{"race": 1}', NOW))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
    assert len({r.event_id for r in results}) == 1
    with db.session() as session:
        assert len(session.scalars(select(EventRow)).all()) == 1


def test_enqueue_failure_keeps_the_event_for_the_reconciler(db):
    def broken_queue(vendor, ticket_id):
        raise ConnectionError("queue down")

    result = DatabaseEventSink(db, broken_queue).accept(neutral_event("3", "inv-3"), b"{}", NOW)
    with db.session() as session:
        assert session.get(EventRow, result.event_id).status == "pending"


def test_health_reports_database(db):
    assert DatabaseEventSink(db, None, queue_health=lambda: "ok").health() == {"database": "ok", "queue": "ok"}
    down = Database("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    assert down.ping() == "unreachable: OperationalError"  # a reason, never the URL or a password


def test_lease_is_exclusive_until_it_expires(db):
    assert acquire_lease(db, "ticket:zendesk:1", "a", 30, NOW)
    assert not acquire_lease(db, "ticket:zendesk:1", "b", 30, NOW + timedelta(seconds=10))
    assert acquire_lease(db, "ticket:zendesk:1", "a", 30, NOW + timedelta(seconds=10))  # renewal by the holder
    assert acquire_lease(db, "ticket:zendesk:1", "b", 30, NOW + timedelta(seconds=41))  # expired: taken over
    release_lease(db, "ticket:zendesk:1", "a")  # not the holder any more: no effect
    assert not acquire_lease(db, "ticket:zendesk:1", "c", 30, NOW + timedelta(seconds=42))
    release_lease(db, "ticket:zendesk:1", "b")
    assert acquire_lease(db, "ticket:zendesk:1", "c", 30, NOW + timedelta(seconds=42))


def _spec(**kw):
    values = dict(vendor="zendesk", ticket_id="1", kind="breach", clock="acknowledge", due_at=NOW, level="L1",
                  matrix_version="v1", fraction=1.0)
    values.update(kw)
    return TimerSpec(**values)


def test_timer_is_stored_once_enqueued_after_commit_and_fires_once(db):
    enqueued = []
    timer_host.enqueue_after_commit(db, lambda timer_id, due: enqueued.append((timer_id, due)))
    with db.session() as session:
        first = timer_host.schedule(session, _spec())
        again = timer_host.schedule(session, _spec())
        assert first.id == again.id
        assert enqueued == []  # nothing before commit
    assert enqueued == [(first.id, NOW)]
    with db.session() as session:
        timer_host.schedule(session, _spec())  # planned again in a later pass: still one row
    assert len(enqueued) == 1

    with pytest.raises(RuntimeError):
        with db.session() as session:
            timer_host.schedule(session, _spec(kind="warning", fraction=0.5))
            raise RuntimeError("pass failed")
    assert len(enqueued) == 1  # rolled back: no task for a timer that does not exist

    with db.session() as session:
        assert timer_host.mark_fired(session, first.id, NOW)
    with db.session() as session:
        assert not timer_host.mark_fired(session, first.id, NOW)


def test_cancel_only_touches_pending_timers_of_other_levels(db):
    with db.session() as session:
        l1 = timer_host.schedule(session, _spec())
        l2 = timer_host.schedule(session, _spec(level="L2"))
        cadence = timer_host.schedule(session, _spec(kind="cadence", clock="update_cadence", level="L1"))
    with db.session() as session:
        assert timer_host.cancel(session, "zendesk", "1", except_level="L2") == 2
    with db.session() as session:
        statuses = {row.id: row.status for row in session.scalars(select(TimerRow).where(TimerRow.ticket_id == "1"))}
    assert statuses == {l1.id: "cancelled", l2.id: "pending", cadence.id: "cancelled"}


def test_overdue_lists_only_due_pending_timers(db):
    with db.session() as session:
        due = timer_host.schedule(session, _spec(due_at=NOW - timedelta(minutes=1)))
        timer_host.schedule(session, _spec(due_at=NOW + timedelta(minutes=5)))
    with db.session() as session:
        assert [t.id for t in timer_host.overdue(session, NOW)] == [due.id]


def test_pinned_matrix_version_reloads_after_the_file_changed(db, tmp_path, enterprise_matrix_path):
    path = tmp_path / "matrix.yaml"
    path.write_text(enterprise_matrix_path.read_text())
    original, source = load_current(path)
    with db.session() as session:
        store_version(session, original, source)
        store_version(session, original, source)  # idempotent
    path.write_text(enterprise_matrix_path.read_text().replace("acknowledge: 1h", "acknowledge: 2h", 1))
    changed, _ = load_current(path)
    assert changed.version != original.version
    from integration.store import matrix_versions

    matrix_versions._cache.clear()  # a fresh process knows only the database
    with db.session() as session:
        reloaded = load_version(session, original.version)
        assert reloaded.version == original.version
        assert reloaded.matrix.level("L1").sla.acknowledge == timedelta(hours=1)
        assert load_version(session, "0000deadbeef") is None


# ------------------------------------------------------------------------------------ metrics
def _decision(db, ticket, to_level, direction, issue_type, dry_run=False, status="applied"):
    with db.session() as session:
        session.add(DecisionRow(
            vendor="zendesk", ticket_id=ticket, decided_at=NOW, trigger="events", from_level=None,
            to_level=to_level, direction=direction, issue_type=issue_type, reason="", rule_id=None,
            matrix_version="v1", decision={}, status=status, writes=1, dry_run=dry_run,
        ))


def test_escalation_frequency_by_level_and_issue_type(db):
    _decision(db, "1", "L1", "placed", "outage")
    _decision(db, "1", "L2", "up", "outage")
    _decision(db, "1", "L3", "up", "outage")
    _decision(db, "2", "L2", "up", "outage")
    _decision(db, "3", "L2", "up", "billing", dry_run=True, status="dry_run")
    _decision(db, "4", "L2", "up", "bug", status="conflict")  # never happened
    result = metrics.escalation_frequency(db)
    # Every entry into a level counts, the placement at L1 too (issue 13); the dry-run entry is its own row.
    assert [(r.level, r.issue_type, r.escalations, r.tickets, r.dry_run) for r in result] == [
        ("L1", "outage", 1, 1, False), ("L2", "billing", 1, 1, True), ("L2", "outage", 2, 2, False),
        ("L3", "outage", 1, 1, False)]
    live = metrics.escalation_frequency(db, include_dry_run=False)
    assert [(r.level, r.issue_type) for r in live] == [("L1", "outage"), ("L2", "outage"), ("L3", "outage")]


def test_time_to_acknowledge_and_diagnose_per_level(db):
    with db.session() as session:
        for ticket, level, clock, seconds in [("1", "L1", "acknowledge", 600), ("2", "L1", "acknowledge", 1800),
                                              ("3", "L2", "acknowledge", 300), ("1", "L1", "diagnose", 7200)]:
            session.add(MilestoneRow(vendor="zendesk", ticket_id=ticket, level=level, issue_type="bug", clock=clock,
                                     entered_level_at=NOW, met_at=NOW + timedelta(seconds=seconds),
                                     elapsed_seconds=seconds))
    ack = metrics.time_to_acknowledge(db)
    assert [(s.level, s.count, s.avg_seconds, s.max_seconds) for s in ack] == [("L1", 2, 1200.0, 1800.0),
                                                                              ("L2", 1, 300.0, 300.0)]
    assert [(s.level, s.avg_seconds) for s in metrics.time_to_diagnose(db)] == [("L1", 7200.0)]
    assert metrics.time_to_acknowledge(db, since=NOW + timedelta(days=1)) == []


def test_csat_before_and_after_escalation(db):
    with db.session() as session:
        for ticket, score, escalated in [("1", 1.0, False), ("2", 0.0, False), ("3", 1.0, False), ("4", 0.0, True)]:
            session.add(CsatRow(vendor="zendesk", ticket_id=ticket, score_raw="x", score=score, rated_at=NOW,
                                level="L1", issue_type="bug", escalated=escalated))
    split = metrics.csat_before_after_escalation(db)
    assert [(s.escalated, s.ratings, round(s.avg_score, 3)) for s in split] == [(False, 3, 0.667), (True, 1, 0.0)]
