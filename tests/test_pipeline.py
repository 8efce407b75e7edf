"""The processing pass against a fake helpdesk: coalescing, loop prevention, dry run, conflicts,
retries and dead letters, crash recovery without double writes, lease expiry, matrix pinning,
timers firing exactly once, and the metrics the passes leave behind. SQLite, real engine + matrix."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connectors.base import NotFound, RateLimited, Transient
from integration.simulate import OfflineConnector
from integration import metrics
from integration.store.db import DecisionRow, EventRow, TicketStateRow, TimerRow
from integration.store.leases import acquire_lease
from integration.store.events import DatabaseEventSink
from integration.model import Decision
from integration.pipeline import fire_timer, open_tickets_by_version, process_ticket, reconcile_once
from integration.pipeline.claims import claim
from integration.model import TimerOutcome, TimerSpec
from service.connectors import build_connector
from service.periodic import catch_up_scan
from tests.support.fake_connector import (
    BOT_USER_ID,
    FakeConnector,
    ManualClock,
    make_runtime,
    make_settings,
    neutral_event,
    postgres_schema_url,
)

START = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no except-Exception handler sees it."""


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def fake():
    connector = FakeConnector("zendesk")
    connector.put("101")
    return connector


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, tmp_path):
    if request.param == "sqlite":
        yield make_settings(f"sqlite:///{tmp_path}/var/escalation.db")
        return
    url, drop = postgres_schema_url(request.getfixturevalue("postgres_url"))
    yield make_settings(url)
    drop()


@pytest.fixture
def runtime(settings, fake, clock):
    runtime = make_runtime(settings, fake, clock=clock)
    yield runtime
    runtime.db.dispose()


def accept(runtime, ticket_id="101", delivery="d1", *, actor=None, body=None, vendor="zendesk"):
    sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)
    payload = body if body is not None else f'{{"delivery": "{delivery}"}}'.encode()
    return sink.accept(neutral_event(ticket_id, delivery, actor_id=actor, vendor=vendor), payload, START)


def drain(huey, limit=50):
    """Run every task that is queued now (what a worker would do), without waiting for scheduled ones."""
    ran = 0
    while ran < limit:
        task = huey.dequeue()
        if task is None:
            return ran
        huey.execute(task)
        ran += 1
    raise AssertionError("queue did not drain")


def rows(runtime, model, *where):
    with runtime.db.session() as session:
        return list(session.scalars(select(model).where(*where).order_by(model.id if hasattr(model, "id") else model.ticket_id)))


def statuses(runtime):
    return [e.status for e in rows(runtime, EventRow)]


def decision_statuses(runtime):
    return [d.status for d in rows(runtime, DecisionRow)]


# ------------------------------------------------------------------------------------ coalescing
def test_burst_of_five_events_is_one_fetch_one_decision_one_write(runtime, fake):
    for i in range(5):
        accept(runtime, delivery=f"d{i}")
    assert runtime.huey.pending_count() == 1  # coalesced at the source: the first event's task takes all
    drain(runtime.huey)
    assert fake.fetch_count == 1
    assert len(fake.writes()) == 1
    assert fake.replies("101")[0].startswith("Hello Casey Customer")
    assert decision_statuses(runtime) == ["applied"]
    assert statuses(runtime) == ["done"] * 5
    state = rows(runtime, TicketStateRow)[0]
    assert (state.level, state.matrix_version) == ("L1", runtime.matrix().version)


def test_an_event_committed_just_after_the_last_claim_of_a_pass_is_not_stranded(runtime, fake, monkeypatch):
    """The race coalescing at the source must survive: a delivery that found an earlier event still
    pending (so enqueued no task) commits only after the pass that took that earlier event made its
    last claim. The pass looks again after releasing the ticket and queues the ticket."""
    from integration.pipeline import claims

    real_claim = claims.claim
    calls = []

    def claim_then_late_commit(deps, vendor, ticket_id, owner):
        claimed = real_claim(deps, vendor, ticket_id, owner)
        calls.append(len(claimed))
        if len(calls) == 2:  # the pass's re-check found nothing; the late delivery commits right now
            with runtime.db.session() as session:
                session.add(EventRow(vendor="zendesk", ticket_id="101", event_type="ticket.updated",
                                     delivery_id="late", content_hash="late", received_at=START,
                                     payload=b"{}", status="pending", attempts=0))
        return claimed

    monkeypatch.setattr(claims, "claim", claim_then_late_commit)
    accept(runtime, delivery="d1")
    task = runtime.huey.dequeue()
    runtime.huey.execute(task)
    assert calls == [1, 0]
    assert statuses(runtime) == ["done", "pending"]
    queued = [(t.name, t.args) for t in runtime.huey.pending() if t.name == "process_ticket"]
    assert queued == [("process_ticket", ("zendesk", "101"))]  # by the pass, not left for the reconciler
    drain(runtime.huey)
    assert statuses(runtime) == ["done", "done"]


def test_a_later_event_that_changes_nothing_writes_nothing(runtime, fake):
    accept(runtime, delivery="d1")
    drain(runtime.huey)
    accept(runtime, delivery="d2")
    drain(runtime.huey)
    assert fake.fetch_count == 2
    assert len(fake.writes()) == 1
    assert decision_statuses(runtime) == ["applied"]
    assert statuses(runtime) == ["done", "done"]


def test_own_echo_is_recorded_and_marked_done_without_a_pass(runtime, fake):
    accept(runtime, delivery="echo", actor=BOT_USER_ID)
    drain(runtime.huey)
    assert fake.fetch_count == 0
    assert statuses(runtime) == ["done"]
    assert rows(runtime, DecisionRow) == []


def test_dry_run_records_the_decision_and_writes_nothing(tmp_path, fake, clock):
    runtime = make_runtime(make_settings(f"sqlite:///{tmp_path}/db.sqlite", DRY_RUN=True), fake, clock=clock)
    accept(runtime)
    drain(runtime.huey)
    assert fake.writes() == []
    (decision,) = rows(runtime, DecisionRow)
    assert (decision.status, decision.dry_run, decision.to_level, decision.writes) == ("dry_run", True, "L1", 0)
    assert decision.decision["public_reply"].startswith("Hello")
    assert rows(runtime, TicketStateRow)[0].level == "L1"


def test_without_credentials_the_offline_connector_decides_from_the_stored_webhook(tmp_path, monkeypatch, vendor_dir):
    runtime = _offline_runtime(tmp_path, monkeypatch)
    connector = build_connector("zendesk", runtime.settings, runtime.matrix().matrix, db=runtime.db)
    assert isinstance(connector, OfflineConnector)
    body = _fresh_sample(vendor_dir / "samples" / "zendesk-event__captured__ticket.created.json")
    import json

    ticket_id = str(json.loads(body)["detail"]["id"])
    accept(runtime, ticket_id, "inv-offline", body=body)
    drain(runtime.huey)
    (decision,) = rows(runtime, DecisionRow)
    assert (decision.ticket_id, decision.status, decision.dry_run, decision.to_level) == (ticket_id, "dry_run", True, "L1")
    assert statuses(runtime) == ["done"]


def _fresh_sample(path) -> bytes:
    """A captured event as if it happened now: a level's clocks start at the payload's vendor times, and a
    sample from long ago would have run every clock out before the pass (extra breach decisions)."""
    import json

    payload = json.loads(path.read_bytes())
    moment = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload["detail"].update(created_at=moment, updated_at=moment)
    payload["time"] = moment
    return json.dumps(payload).encode()


def _offline_runtime(tmp_path, monkeypatch):
    for name in ("ZENDESK_SUBDOMAIN", "ZENDESK_BASE_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = make_settings(f"sqlite:///{tmp_path}/db.sqlite", DRY_RUN=None)
    from integration.store.db import Database
    from service.runtime import Runtime

    db = Database(settings.database_url)
    db.migrate()
    return Runtime(settings, db=db, huey=None)


def test_offline_dry_run_does_not_propose_the_same_write_on_every_later_webhook(tmp_path, monkeypatch, vendor_dir):
    """The vendor never gets a dry run's writes, so the second webhook's payload still lacks the level
    tag the first pass would have written; the offline snapshot carries the first decision out, and the
    second pass finds nothing to do instead of recording "would write: level L1" again."""
    import json

    runtime = _offline_runtime(tmp_path, monkeypatch)
    created = json.loads(_fresh_sample(vendor_dir / "samples" / "zendesk-event__captured__ticket.created.json"))
    ticket_id = str(created["detail"]["id"])
    accept(runtime, ticket_id, "inv-1", body=json.dumps(created).encode())
    drain(runtime.huey)
    (first,) = rows(runtime, DecisionRow)
    assert (first.status, first.to_level) == ("dry_run", "L1")
    assert first.decision["add_tags"] or first.decision["field_updates"]  # the level it would have written

    updated = {**created, "id": "second-delivery", "type": "zen:event-type:ticket.priority_changed",
               "detail": {**created["detail"], "updated_at": "2025-01-08T10:20:00Z"}}
    accept(runtime, ticket_id, "inv-2", body=json.dumps(updated).encode())
    drain(runtime.huey)
    assert [d.id for d in rows(runtime, DecisionRow)] == [first.id]  # the second pass decided nothing
    assert statuses(runtime) == ["done", "done"]
    assert rows(runtime, TicketStateRow)[0].level == "L1"


# ------------------------------------------------------------------------------------ conflicts
def test_conflict_refetches_and_redecides_then_writes_once(runtime, fake):
    fake.concurrent_edits.append(lambda record: record["tags"].append("vip"))
    accept(runtime)
    drain(runtime.huey)
    assert fake.fetch_count == 2
    assert len(fake.writes()) == 1
    assert decision_statuses(runtime) == ["conflict", "applied"]
    assert statuses(runtime) == ["done"]


def test_conflicts_that_persist_become_a_retry_with_backoff(runtime, fake, clock):
    fake.concurrent_edits.extend([lambda r: r["tags"].append(f"edit{i}") for i in range(3)])
    runtime._deps_overrides["backoff_base"] = 5.0  # the retry task must still be waiting when drain() looks
    accept(runtime)
    drain(runtime.huey)
    assert fake.writes() == []
    (event,) = rows(runtime, EventRow)
    assert event.status == "pending" and "3 conflicts in a row" in event.last_error
    assert event.next_attempt_at > clock()
    assert runtime.huey.scheduled_count() == 1
    clock.advance(60)
    process_ticket("zendesk", "101", deps=runtime.deps())
    assert len(fake.writes()) == 1
    assert statuses(runtime) == ["done"]


# ------------------------------------------------------------------------------------ retries / dead letters
def test_rate_limit_waits_exactly_retry_after(runtime, fake, clock):
    fake.fetch_failures.append(RateLimited("429 from vendor", retry_after=42))
    accept(runtime)
    drain(runtime.huey)
    (event,) = rows(runtime, EventRow)
    assert event.status == "pending"
    assert event.next_attempt_at == clock() + timedelta(seconds=42)
    process_ticket("zendesk", "101", deps=runtime.deps())  # too early: not claimed
    assert fake.fetch_count == 1
    clock.advance(42)
    process_ticket("zendesk", "101", deps=runtime.deps())
    assert statuses(runtime) == ["done"] and len(fake.writes()) == 1


def test_transient_failures_end_as_dead_letter_and_the_cli_retries_them(runtime, fake, clock, settings, monkeypatch):
    fake.fetch_failures.extend([Transient("vendor 503")] * 3)
    accept(runtime)
    for _ in range(3):
        process_ticket("zendesk", "101", deps=runtime.deps())
        clock.advance(3600)
    (event,) = rows(runtime, EventRow)
    assert (event.status, event.attempts) == ("dead", 3)
    assert event.last_error == "gave up after 3 attempts: Transient: vendor 503"

    from cli.main import cli

    env = {"DATABASE_URL": settings.database_url, "QUEUE_URL": "memory://", "MATRIX_PATH": settings.matrix_path}
    listed = CliRunner().invoke(cli, ["events", "list", "--status", "dead"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "dead" in listed.output and "gave up after 3 attempts: Transient: vendor 503" in listed.output
    retried = CliRunner().invoke(cli, ["events", "retry", "--all-dead"], env=env)
    assert retried.exit_code == 0 and "re-queued 1 ticket(s)" in retried.output
    assert statuses(runtime) == ["pending"]
    process_ticket("zendesk", "101", deps=runtime.deps())
    assert statuses(runtime) == ["done"] and len(fake.writes()) == 1
    nothing = CliRunner().invoke(cli, ["events", "retry", "--all-dead"], env=env)
    assert nothing.exit_code == 1


def test_permanent_error_is_a_dead_letter_at_once(runtime, fake):
    accept(runtime, "404", "d-missing")
    drain(runtime.huey)
    (event,) = rows(runtime, EventRow)
    assert (event.status, event.attempts, event.last_error) == ("dead", 1, "NotFound: ticket 404 not found")


@pytest.mark.parametrize("deletion", ["ticket.soft_deleted", "ticket.permanently_deleted", "ticket.merged"])
def test_a_ticket_deleted_at_the_vendor_is_closed_not_dead_lettered(runtime, fake, clock, deletion):
    accept(runtime, delivery="d1")
    drain(runtime.huey)
    assert rows(runtime, TimerRow, TimerRow.status == "pending")  # the level's clocks are running
    clock.advance(60)
    fake.fetch_failures.append(NotFound("ticket 101 not found"))
    sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)
    sink.accept(neutral_event("101", "d-gone", event_type=deletion), b'{"delivery": "d-gone"}', START)
    drain(runtime.huey)
    assert statuses(runtime) == ["done", "done"]
    assert rows(runtime, TimerRow, TimerRow.status == "pending") == []
    state = rows(runtime, TicketStateRow)[0]
    assert (state.status, state.level) == ("deleted", "L1")
    assert open_tickets_by_version(runtime.db) == {}  # no longer counted as open


def test_not_found_without_a_deletion_event_stays_a_dead_letter(runtime, fake, clock):
    accept(runtime, delivery="d1")
    drain(runtime.huey)
    clock.advance(60)
    fake.fetch_failures.append(NotFound("ticket 101 not found"))
    accept(runtime, delivery="d2")
    drain(runtime.huey)
    assert statuses(runtime) == ["done", "dead"]
    assert rows(runtime, TimerRow, TimerRow.status == "pending")
    assert rows(runtime, TicketStateRow)[0].status != "deleted"


def test_unexpected_errors_are_retried_then_dead_lettered(runtime, fake, clock):
    fake.fetch_failures.extend([KeyError("bug")] * 3)
    accept(runtime)
    for _ in range(3):
        process_ticket("zendesk", "101", deps=runtime.deps())
        clock.advance(3600)
    assert rows(runtime, EventRow)[0].status == "dead"


# ------------------------------------------------------------------------------------ crashes
def test_crash_between_apply_and_commit_is_completed_without_writing_again(runtime, fake, clock):
    def crash(entry):
        raise Crash()

    fake.after_write = crash
    accept(runtime)
    with pytest.raises(Crash):
        drain(runtime.huey)
    assert len(fake.writes()) == 1
    assert decision_statuses(runtime) == ["applying"]
    assert statuses(runtime) == ["processing"]
    fake.after_write = None

    report = reconcile_once(runtime.deps())
    assert report.expired == 0  # the lease has not run out yet
    clock.advance(runtime.settings.lease_seconds + 1)
    report = reconcile_once(runtime.deps())
    assert report.expired == 1
    drain(runtime.huey)
    assert len(fake.writes()) == 1  # the reply went out exactly once
    assert decision_statuses(runtime) == ["recovered"]
    assert statuses(runtime) == ["done"]
    assert rows(runtime, TicketStateRow)[0].level == "L1"


def test_write_that_never_reached_the_vendor_is_redone(runtime, fake, clock):
    fake.apply_failures.append(Transient("read timeout"))  # outcome unknown to the pass
    accept(runtime)
    drain(runtime.huey)
    assert decision_statuses(runtime) == ["applying"] and fake.writes() == []
    clock.advance(60)
    process_ticket("zendesk", "101", deps=runtime.deps())
    assert decision_statuses(runtime) == ["abandoned", "applied"]
    assert len(fake.writes()) == 1


def test_events_of_a_worker_that_died_are_requeued_when_the_lease_expires(runtime, fake, clock):
    accept(runtime, delivery="d1")
    accept(runtime, delivery="d2")
    runtime.huey.flush()  # the queue lost its tasks with the worker
    claimed = claim(runtime.deps(), "zendesk", "101", "dead-worker")
    assert len(claimed) == 2
    assert reconcile_once(runtime.deps()).expired == 0
    clock.advance(runtime.settings.lease_seconds + 1)
    assert reconcile_once(runtime.deps()).expired == 1
    drain(runtime.huey)
    assert statuses(runtime) == ["done", "done"] and len(fake.writes()) == 1


def test_events_the_queue_forgot_are_enqueued_by_the_reconciler(runtime, fake, clock):
    accept(runtime)
    runtime.huey.flush()
    clock.advance(3600)
    report = reconcile_once(runtime.deps())
    assert report.forgotten == 1
    drain(runtime.huey)
    assert statuses(runtime) == ["done"]


def test_a_task_for_a_ticket_another_worker_holds_comes_back_later(runtime, fake, clock):
    assert acquire_lease(runtime.db, "ticket:zendesk:101", "other-worker", 30, clock())
    accept(runtime)
    drain(runtime.huey)
    assert fake.fetch_count == 0 and statuses(runtime) == ["pending"]
    assert runtime.huey.scheduled_count() == 1


# ------------------------------------------------------------------------------------ matrix pinning
def test_ticket_in_flight_keeps_its_matrix_version(tmp_path, fake, clock, enterprise_matrix_path):
    matrix_file = tmp_path / "matrix.yaml"
    matrix_file.write_text(enterprise_matrix_path.read_text())
    db_url = f"sqlite:///{tmp_path}/db.sqlite"
    first = make_runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file)), fake, clock=clock)
    accept(first)
    drain(first.huey)
    v1 = first.matrix().version

    matrix_file.write_text(enterprise_matrix_path.read_text().replace("acknowledge: 1h", "acknowledge: 2h", 1))
    second = make_runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file)), fake, clock=clock)
    v2 = second.matrix().version
    assert v1 != v2
    fake.put("202")
    fake.edit("101", lambda r: r.update(first_public_agent_reply_at=(START + timedelta(minutes=5)).isoformat()))
    accept(second, "101", "d2")
    accept(second, "202", "d3")
    drain(second.huey)
    states = {s.ticket_id: s.matrix_version for s in rows(second, TicketStateRow)}
    assert states == {"101": v1, "202": v2}
    versions = {(d.ticket_id, d.matrix_version) for d in rows(second, DecisionRow)}
    assert ("101", v1) in versions and ("202", v2) in versions and ("101", v2) not in versions


# ------------------------------------------------------------------------------------ timers
class StubClocks:
    """Plans one breach timer a minute after a ticket is placed; firing it adds one internal note."""

    def __init__(self):
        self.fired = 0

    def track(self, state, ticket, matrix, now):
        return state

    def plan_timers(self, before, after, decision, ticket, matrix, now):
        if decision is not None and decision.to_level:
            return [TimerSpec(after.vendor, after.ticket_id, "breach", "acknowledge", now + timedelta(minutes=1),
                              after.level, after.matrix_version, 1.0)]
        return []

    def on_timer(self, timer, ticket, state, matrix, now):
        self.fired += 1
        decision = Decision(vendor=state.vendor, ticket_id=state.ticket_id, matrix_version=state.matrix_version,
                            decided_at=now, from_level=state.level, reason="breach acknowledge",
                            internal_note=f"acknowledge breached at {state.level}")
        return TimerOutcome(decision=decision, state=state)


@pytest.fixture
def timed(settings, fake, clock):
    stub = StubClocks()
    runtime = make_runtime(settings, fake, clock=clock, clocks=stub)
    yield runtime, stub
    runtime.db.dispose()


def test_timer_planned_by_a_pass_fires_once_even_when_its_task_runs_twice(timed, fake, clock):
    runtime, stub = timed
    accept(runtime)
    drain(runtime.huey)
    (timer,) = rows(runtime, TimerRow)
    assert runtime.huey.scheduled_count() == 1  # the huey task waits for due_at
    clock.advance(61)
    assert fire_timer(timer.id, deps=runtime.deps()) == "fired"
    assert fire_timer(timer.id, deps=runtime.deps()) == "skipped"
    notes = [w["internal_note"] for w in fake.writes() if w["internal_note"] and "breached" in w["internal_note"]]
    assert notes == ["acknowledge breached at L1"]
    assert stub.fired == 1
    assert rows(runtime, TimerRow)[0].status == "fired"


def test_concurrent_firings_of_one_timer_write_once(timed, fake, clock):
    runtime, stub = timed
    accept(runtime)
    drain(runtime.huey)
    (timer,) = rows(runtime, TimerRow)
    clock.advance(61)
    results = []
    threads = [threading.Thread(target=lambda: results.append(fire_timer(timer.id, deps=runtime.deps())))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("fired") == 1
    assert len([w for w in fake.writes() if "breached" in (w["internal_note"] or "")]) == 1


def test_overdue_timer_whose_task_was_lost_is_fired_by_the_reconciler(timed, fake, clock):
    runtime, stub = timed
    accept(runtime)
    drain(runtime.huey)
    runtime.huey.flush()  # the scheduled task died with its worker
    clock.advance(120)
    assert reconcile_once(runtime.deps()).timers == 1
    drain(runtime.huey)
    assert stub.fired == 1 and rows(runtime, TimerRow)[0].status == "fired"
    assert reconcile_once(runtime.deps()).timers == 0


def test_timer_not_yet_due_is_put_back_on_the_schedule(timed, fake, clock):
    runtime, stub = timed
    accept(runtime)
    drain(runtime.huey)
    (timer,) = rows(runtime, TimerRow)
    assert fire_timer(timer.id, deps=runtime.deps()) == "early"
    assert stub.fired == 0 and rows(runtime, TimerRow)[0].status == "pending"


def test_leaving_the_level_cancels_its_pending_timers(timed, fake, clock):
    runtime, stub = timed
    accept(runtime)
    drain(runtime.huey)
    fake.edit("101", lambda r: r.update(status="solved"))
    accept(runtime, delivery="d-solved")
    drain(runtime.huey)
    assert [t.status for t in rows(runtime, TimerRow)] == ["cancelled"]


# ------------------------------------------------------------------------------------ metrics from passes
def test_passes_leave_the_rows_the_metrics_need(runtime, fake, clock):
    fake.put("101", fields={"issue_type": "outage"})
    accept(runtime, delivery="d1")
    drain(runtime.huey)  # placed at L1
    clock.advance(600)
    escalate = {"issue_type": "outage", "affected_users": 250, "account_id": "A-1", "environment": "production",
                "recent_changes": "none"}
    fake.edit("101", lambda r: r.update(fields={**r["fields"], **escalate}))
    accept(runtime, delivery="d2")
    drain(runtime.huey)  # wide-outage rule -> L2
    state = rows(runtime, TicketStateRow)[0]
    assert state.level == "L2" and state.escalated
    entered = state.entered_level_at
    clock.advance(900)
    fake.edit("101", lambda r: r.update(first_public_agent_reply_at=(entered + timedelta(minutes=12)).isoformat(),
                                        last_public_agent_reply_at=(entered + timedelta(minutes=12)).isoformat()))
    accept(runtime, delivery="d3")
    drain(runtime.huey)
    fake.edit("101", lambda r: r.update(satisfaction="good", status="solved"))
    accept(runtime, delivery="d4")
    drain(runtime.huey)

    # Every entry into a level counts (issue 13): placed at L1, then moved up to L2.
    assert [(r.level, r.issue_type, r.escalations, r.placed, r.moved_up)
            for r in metrics.escalation_frequency(runtime.db)] == [("L1", "outage", 1, 1, 0), ("L2", "outage", 1, 0, 1)]
    (ack,) = metrics.time_to_acknowledge(runtime.db)
    assert (ack.level, ack.count, ack.avg_seconds) == ("L2", 1, 720.0)
    (split,) = metrics.csat_before_after_escalation(runtime.db)
    assert (split.escalated, split.ratings, split.avg_score) == (True, 1, 1.0)


# ------------------------------------------------------------------------------------ catch-up scan
def test_catch_up_scan_hints_changed_tickets_and_moves_the_watermark(runtime, fake):
    fake.put("202")
    fake.changed = [("101", "2026-11-27T10:00:00Z"), ("202", "2026-11-27T10:05:00Z")]
    assert catch_up_scan(runtime) == 2
    drain(runtime.huey)
    assert {e.ticket_id: (e.event_type, e.status) for e in rows(runtime, EventRow)} == {
        "101": ("scan", "done"), "202": ("scan", "done")}
    assert sorted(fake.replies()) and len(fake.writes()) == 2
    from integration.store.db import WatermarkRow

    with runtime.db.session() as session:
        assert session.get(WatermarkRow, "scan:zendesk").value == "2026-11-27T10:05:00Z"
    assert catch_up_scan(runtime) == 0  # nothing changed since


# ------------------------------------------------------------------------------------ internal notes vs replies
def breach_notes(fake):
    return [w["internal_note"] for w in fake.writes() if "breached" in (w["internal_note"] or "")]


def crash_while_firing(runtime, fake, clock, *, before_write: bool):
    accept(runtime)
    drain(runtime.huey)
    (timer,) = rows(runtime, TimerRow)
    clock.advance(61)
    if before_write:
        fake.apply_failures.append(Crash())
    else:
        def crash(entry):
            raise Crash()

        fake.after_write = crash
    with pytest.raises(Crash):
        fire_timer(timer.id, deps=runtime.deps())
    fake.after_write = None
    assert decision_statuses(runtime)[-1] == "applying"
    assert rows(runtime, TimerRow)[0].status == "pending"
    clock.advance(runtime.settings.lease_seconds + 1)
    reconcile_once(runtime.deps(), fire_inline=True)  # a worker restarts; the overdue timer fires
    return timer


def test_warning_lost_in_a_crash_before_the_vendor_call_is_sent_on_recovery(timed, fake, clock):
    runtime, stub = timed
    crash_while_firing(runtime, fake, clock, before_write=True)
    assert breach_notes(fake) == ["acknowledge breached at L1"]
    assert decision_statuses(runtime) == ["applied", "recovered"]
    assert rows(runtime, TimerRow)[0].status == "fired"
    assert stub.fired == 1  # the stored intent was re-sent, not decided again
    assert reconcile_once(runtime.deps(), fire_inline=True).timers == 0
    assert breach_notes(fake) == ["acknowledge breached at L1"]


def test_warning_sent_just_before_a_crash_may_be_sent_twice_never_lost(timed, fake, clock):
    runtime, stub = timed
    crash_while_firing(runtime, fake, clock, before_write=False)
    assert breach_notes(fake) == ["acknowledge breached at L1"] * 2  # at least once: duplicate accepted
    assert rows(runtime, TimerRow)[0].status == "fired"


class CadenceSendClocks(StubClocks):
    """Firing the timer posts a status update to the customer (cadence `mode: send`)."""

    def on_timer(self, timer, ticket, state, matrix, now):
        self.fired += 1
        decision = Decision(vendor=state.vendor, ticket_id=state.ticket_id, matrix_version=state.matrix_version,
                            decided_at=now, from_level=state.level, reason="cadence",
                            public_reply="Status update: still working on it")
        return TimerOutcome(decision=decision, state=state)


def test_customer_update_sent_just_before_a_crash_is_not_sent_again(settings, fake, clock):
    runtime = make_runtime(settings, fake, clock=clock, clocks=CadenceSendClocks())
    crash_while_firing(runtime, fake, clock, before_write=False)
    assert fake.replies("101").count("Status update: still working on it") == 1
    assert rows(runtime, TimerRow)[0].status == "fired"
    runtime.db.dispose()


# ------------------------------------------------------------------------------------ mappings of pinned tickets
def test_mapping_matrix_takes_current_ids_and_keeps_keys_only_the_pinned_version_has(enterprise_matrix_path, tmp_path):
    from service.runtime import mapping_matrix
    from matrix_config.loader import load_matrix

    v1 = load_matrix(enterprise_matrix_path).matrix
    changed = tmp_path / "v2.yaml"
    changed.write_text(_matrix_v2(enterprise_matrix_path.read_text()))
    v2 = load_matrix(changed).matrix
    merged = mapping_matrix(v1, v2)
    assert merged.groups["frontline"].zendesk == 360000200011  # fixed id: applies at once
    assert merged.groups["security_team"].zendesk == 360000200004  # renamed since: pinned mapping kept
    assert merged.groups["secops"].zendesk == 360000200099
    assert [level.id for level in merged.levels] == [level.id for level in v1.levels]


def _matrix_v2(text: str) -> str:
    """The admin recreated the frontline group in Zendesk (new id) and renamed security_team to secops."""
    text = text.replace("frontline: {label: Frontline support, zendesk: 360000200001",
                        "frontline: {label: Frontline support, zendesk: 360000200011")
    text = text.replace("security_team: {label: Security response, zendesk: 360000200004, jira: security-response}",
                        "secops: {label: Security operations, zendesk: 360000200099, jira: secops}")
    assert "360000200011" in text and "secops:" in text
    return text.replace("security_team", "secops")


def test_ticket_in_flight_is_written_through_its_pinned_versions_mappings(tmp_path, clock, enterprise_matrix_path,
                                                                          monkeypatch):
    """An admin renames a group in the matrix while a ticket is in flight: the ticket, still decided with
    the version it started with, escalates into the group that version names instead of failing."""
    from dataclasses import dataclass, field as dc_field

    import service.runtime as runtime_module
    from connectors.base import Permanent
    from integration.store.db import Database

    written_groups: list[tuple[str, int]] = []
    store = FakeConnector("zendesk").store

    @dataclass
    class MappingFake(FakeConnector):
        """Writes the vendor group id the matrix it was built from maps the decision's group to."""
        matrix: object = None
        built_for: list = dc_field(default_factory=list)

        def apply(self, ticket, decision, progress=None):
            if decision.owner_group:
                mapping = self.matrix.groups.get(decision.owner_group)
                if mapping is None or mapping.zendesk is None:
                    raise Permanent(f"group {decision.owner_group!r} has no Zendesk id in this matrix")
                written_groups.append((ticket.id, mapping.zendesk))
            return super().apply(ticket, decision, progress)

    monkeypatch.setattr(runtime_module, "build_connector",
                        lambda vendor, settings, matrix, db=None: MappingFake(vendor, store=store, matrix=matrix))
    matrix_file = tmp_path / "matrix.yaml"
    matrix_file.write_text(enterprise_matrix_path.read_text())
    db_url = f"sqlite:///{tmp_path}/db.sqlite"

    def runtime_for_current_file():
        db = Database(db_url)
        db.migrate()
        return runtime_module.Runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file)), db=db, now=clock, backoff_base=0.01)

    fake = MappingFake("zendesk", store=store)
    fake.put("101", fields={"issue_type": "bug"})
    first = runtime_for_current_file()
    accept(first, "101", "d1")
    drain(first.huey)
    assert written_groups == [("101", 360000200001)]  # frontline under v1

    matrix_file.write_text(_matrix_v2(enterprise_matrix_path.read_text()))
    second = runtime_for_current_file()
    required = {"account_id": "A-1", "environment": "production", "recent_changes": "none"}
    fake.edit("101", lambda r: r["fields"].update(issue_type="security", **required))
    fake.put("202", fields={"issue_type": "security", **required})
    accept(second, "101", "d2")
    accept(second, "202", "d3")
    drain(second.huey)
    assert statuses(second) == ["done", "done", "done"]
    assert ("101", 360000200004) in written_groups  # v1's security_team, which v2 no longer has
    assert ("202", 360000200099) in written_groups  # a new ticket: v2's secops
    levels = {s.ticket_id: (s.level, s.matrix_version) for s in rows(second, TicketStateRow)}
    assert levels == {"101": ("L2", first.matrix().version), "202": ("L2", second.matrix().version)}
    for runtime in (first, second):
        runtime.db.dispose()


# ------------------------------------------------------------------------------------ tickets repin (CLI)
def test_cli_repin_moves_a_ticket_to_another_stored_version_and_queues_a_pass(tmp_path, fake, clock,
                                                                               enterprise_matrix_path):
    from cli.main import cli
    from service.runtime import get_runtime

    matrix_file = tmp_path / "matrix.yaml"
    matrix_file.write_text(enterprise_matrix_path.read_text())
    db_url = f"sqlite:///{tmp_path}/db.sqlite"
    first = make_runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file)), fake, clock=clock)
    accept(first)
    drain(first.huey)
    v1 = first.matrix().version
    matrix_file.write_text(enterprise_matrix_path.read_text().replace("acknowledge: 1h", "acknowledge: 2h", 1))
    env = {"DATABASE_URL": db_url, "QUEUE_URL": "memory://", "MATRIX_PATH": str(matrix_file)}

    moved = CliRunner().invoke(cli, ["tickets", "repin", "zendesk", "101"], env=env)
    assert moved.exit_code == 0, moved.output
    v2 = get_runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file))).matrix().version
    assert v2 != v1 and f"zendesk 101 pinned to matrix {v2}" in moved.output
    (state,) = rows(first, TicketStateRow)
    assert state.matrix_version == v2 and state.state["matrix_version"] == v2
    hint = rows(first, EventRow)[-1]
    assert (hint.event_type, hint.status) == ("repin", "pending")  # a pass re-decides with v2
    queued = get_runtime(make_settings(db_url, MATRIX_PATH=str(matrix_file))).huey.pending()
    assert [(t.name, t.args) for t in queued] == [("process_ticket", ("zendesk", "101"))]

    back = CliRunner().invoke(cli, ["tickets", "repin", "zendesk", "101", v1], env=env)
    assert back.exit_code == 0 and rows(first, TicketStateRow)[0].matrix_version == v1

    unknown = CliRunner().invoke(cli, ["tickets", "repin", "zendesk", "101", "0123456789ab"], env=env)
    assert unknown.exit_code == 1 and "matrix version 0123456789ab is not stored" in unknown.output
    missing = CliRunner().invoke(cli, ["tickets", "repin", "zendesk", "999"], env=env)
    assert missing.exit_code == 1 and "no state for zendesk ticket 999" in missing.output
    assert rows(first, TicketStateRow)[0].matrix_version == v1
    first.db.dispose()


# ------------------------------------------------------------------------------------ periodic jobs
def test_zendesk_sla_sync_runs_periodically_on_exactly_one_worker(runtime, monkeypatch):
    from dataclasses import replace

    from connectors.vendors import PLUGINS
    from service.periodic import PeriodicJobs

    synced = []
    monkeypatch.setitem(PLUGINS, "zendesk", replace(PLUGINS["zendesk"],
                                                    sla_sync=lambda matrix, **kw: synced.append(matrix.name)))
    every = float(runtime.settings.sla_sync_interval_seconds)
    worker_a, worker_b = PeriodicJobs(runtime), PeriodicJobs(runtime)

    assert "periodic:sla_sync" in worker_a.tick(0.0)
    assert worker_b.tick(0.0) == []  # every job's lease is held by worker a
    assert synced == [runtime.matrix().matrix.name]
    assert "periodic:sla_sync" not in worker_a.tick(every / 2)  # not due yet
    assert "periodic:sla_sync" in worker_a.tick(every)
    assert "periodic:sla_sync" not in worker_b.tick(every)
    assert len(synced) == 2

    worker_a.stop()  # worker a shuts down; b takes the job over at its next turn
    assert "periodic:sla_sync" in worker_b.tick(2 * every)
    assert len(synced) == 3

