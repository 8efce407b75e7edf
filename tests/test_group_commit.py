"""Group commit at intake: deliveries that arrive while a commit is in flight share the next commit, none
is answered before the commit holding it, duplicates inside a batch are still duplicates, one bad row
does not fail the others and a store failure fails every member (503 each), on SQLite and PostgreSQL.

To get a batch deterministically the first commit is held (an engine `commit` listener) until the other
deliveries are queued behind it; no test depends on timing."""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from integration.store.db import EventRow, get_database
from integration.store import events as events_module
from integration.store.events import DatabaseEventSink
from integration.intake import AcceptResult
from service.settings import Settings
from tests.support.fake_connector import neutral_event
from webhooks.app import create_app
from webhooks.signatures import zendesk_signature

NOW = datetime(2025, 1, 8, 12, 0, 0, tzinfo=timezone.utc)
SECRET = "group-commit-secret"
FIXTURE = Path(__file__).parent / "fixtures" / "zendesk" / "ticket_priority_changed.json"


class HeldCommits:
    """Counts the commits that write event rows; holds the first one until `queued` deliveries wait behind
    it, and optionally fails every one (a store that went down). A sink with a per-ticket `enqueue`
    commits through SQLAlchemy (engine events), the others with one autocommit statement through the DB
    driver (`integration.store.events._insert_directly`, wrapped here)."""

    def __init__(self, sink: DatabaseEventSink, queued: int, fail: bool = False):
        self.sink, self.queued, self.fail = sink, queued, fail
        self.commits = 0
        event.listen(sink.db.engine, "commit", self.on_commit)
        event.listen(sink.db.engine, "before_cursor_execute", self.on_statement)
        self._insert_directly = events_module._insert_directly
        events_module._insert_directly = self.insert_directly

    def on_statement(self, connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            connection.info["wrote_events"] = True

    def on_commit(self, connection) -> None:
        if not connection.info.get("wrote_events"):
            return  # a read (the test's own checks) or a transaction without an insert
        connection.info["wrote_events"] = False
        self.committing()
        if self.fail:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    def insert_directly(self, driver_connection, direct, unique):
        self.committing()
        if self.fail:  # what the driver raises for a store that cannot write
            raise self.sink.db.engine.dialect.loaded_dbapi.OperationalError("disk I/O error")
        return self._insert_directly(driver_connection, direct, unique)

    def committing(self) -> None:
        self.commits += 1
        if self.commits == 1:
            deadline = time.monotonic() + 30  # a safety net against a hung test, not a measurement
            while self.sink.waiting_deliveries < self.queued and time.monotonic() < deadline:
                time.sleep(0.005)

    def remove(self) -> None:
        event.remove(self.sink.db.engine, "commit", self.on_commit)
        event.remove(self.sink.db.engine, "before_cursor_execute", self.on_statement)
        events_module._insert_directly = self._insert_directly


def _in_threads(calls) -> list:
    """Run each call in its own thread, the first alone until it is inside its commit; return results
    (or exceptions) in call order."""
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    threads[0].start()
    time.sleep(0.05)  # lets the first delivery lead; correctness does not depend on it
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _stored(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(EventRow))


def test_concurrent_deliveries_share_one_commit_and_each_is_stored_before_it_is_answered(database_url):
    db = get_database(database_url)
    sink = DatabaseEventSink(db, enqueue=None)
    held = HeldCommits(sink, queued=7)

    def deliver(number: int):
        def call():
            result = sink.accept(neutral_event(str(100 + number), f"inv-{number}"), f"body {number}".encode(), NOW)
            with db.session() as session:  # what a worker would see the moment the vendor got its 202
                row = session.get(EventRow, result.event_id)
                return result, row.ticket_id if row is not None else None
        return call

    results = _in_threads([deliver(n) for n in range(8)])
    held.remove()
    assert [ticket for _, ticket in results] == [str(100 + n) for n in range(8)]
    assert all(not result.duplicate for result, _ in results)
    assert held.commits == 2  # the first delivery alone, then the seven that queued behind it, together
    assert _stored(db) == 8


def test_duplicates_within_a_batch_and_of_stored_rows_are_detected_without_failing_the_others(database_url):
    db = get_database(database_url)
    sink = DatabaseEventSink(db, enqueue=None)
    stored_before = sink.accept(neutral_event("7", "already-stored"), b"stored body", NOW)
    held = HeldCommits(sink, queued=5)
    calls = [
        lambda: sink.accept(neutral_event("1", "lead"), b"lead body", NOW),
        lambda: sink.accept(neutral_event("2", "same-delivery"), b"first body", NOW),
        lambda: sink.accept(neutral_event("2", "same-delivery"), b"second body", NOW),  # same delivery id
        lambda: sink.accept(neutral_event("3", "copy-a"), b"same body", NOW),
        lambda: sink.accept(neutral_event("3", "copy-b"), b"same body", NOW),  # same body
        lambda: sink.accept(neutral_event("7", "already-stored"), b"stored body", NOW),  # a redelivery
    ]
    lead, first, second, copy_a, copy_b, redelivery = _in_threads(calls)
    held.remove()
    for result in (lead, first, second, copy_a, copy_b, redelivery):
        assert isinstance(result, AcceptResult), result
    assert not lead.duplicate and not first.duplicate and not copy_a.duplicate
    assert (second.duplicate, second.event_id) == (True, first.event_id)
    assert (copy_b.duplicate, copy_b.event_id) == (True, copy_a.event_id)
    assert (redelivery.duplicate, redelivery.event_id) == (True, stored_before.event_id)
    assert _stored(db) == 4  # already-stored, lead, same-delivery, copy-a


def test_a_store_failure_answers_503_to_every_member_of_the_batch(database_url):
    db = get_database(database_url)
    sink = DatabaseEventSink(db, enqueue=None)
    settings = Settings(_env_file=None, DATABASE_URL=database_url, ZENDESK_WEBHOOK_SECRET=SECRET)
    app = create_app(settings, sink=sink, clock=lambda: NOW)
    template = json.loads(FIXTURE.read_text())
    held = HeldCommits(sink, queued=5, fail=True)

    def post(number: int):
        def call():
            body = json.dumps({**template, "id": f"event-{number}"}).encode()
            stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
            response = app.test_client().post("/webhooks/zendesk", data=body, headers={
                "Content-Type": "application/json", "X-Zendesk-Webhook-Signature-Timestamp": stamp,
                "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, stamp, body),
                "X-Zendesk-Webhook-Invocation-Id": f"inv-{number}"})
            return response.status_code, response.headers.get("Retry-After")
        return call

    results = _in_threads([post(n) for n in range(6)])
    held.remove()
    assert results == [(503, "10")] * 6
    assert held.commits == 2  # the lead's commit and the batch's: a failing store is not retried row by row
    assert _stored(db) == 0


def test_a_value_the_store_refuses_fails_only_its_own_delivery(database_url):
    db = get_database(database_url)
    sink = DatabaseEventSink(db, enqueue=None)
    held = HeldCommits(sink, queued=2)
    too_long = neutral_event("9" * 65, "too-long")  # past the parsers (which refuse it): the store's own limit
    calls = [
        lambda: sink.accept(neutral_event("1", "lead"), b"lead", NOW),
        lambda: sink.accept(neutral_event("2", "fine"), b"fine", NOW),
        lambda: sink.accept(too_long, b"too long", NOW),
    ]
    lead, fine, refused = _in_threads(calls)
    held.remove()
    assert isinstance(lead, AcceptResult) and isinstance(fine, AcceptResult) and not fine.duplicate
    if db.dialect == "postgresql":
        from integration.intake import UnstorableEvent

        assert isinstance(refused, UnstorableEvent)
        assert _stored(db) == 2
    else:  # SQLite does not enforce VARCHAR lengths: stored as given
        assert isinstance(refused, AcceptResult)


def test_a_batch_enqueues_each_ticket_once_and_not_a_ticket_whose_earlier_event_waits(database_url):
    db = get_database(database_url)
    enqueued: list[tuple[str, str]] = []
    sink = DatabaseEventSink(db, enqueue=lambda vendor, ticket: enqueued.append((vendor, ticket)))
    sink.accept(neutral_event("50", "waiting"), b"waiting", NOW)  # pending, its task already queued
    enqueued.clear()
    held = HeldCommits(sink, queued=4)
    calls = [
        lambda: sink.accept(neutral_event("1", "lead"), b"lead", NOW),
        lambda: sink.accept(neutral_event("60", "a"), b"a", NOW),
        lambda: sink.accept(neutral_event("60", "b"), b"b", NOW),  # same ticket, same batch
        lambda: sink.accept(neutral_event("50", "c"), b"c", NOW),  # its earlier event is still pending
        lambda: sink.accept(neutral_event("70", "d", handled=False), b"d", NOW),  # ignored: no task
    ]
    results = _in_threads(calls)
    held.remove()
    assert all(isinstance(result, AcceptResult) and not result.duplicate for result in results)
    assert held.commits == 2
    assert sorted(enqueued) == [("zendesk", "1"), ("zendesk", "60")]


def test_the_web_sinks_driver_insert_stores_rows_as_the_orm_does(database_url):
    db = get_database(database_url)
    queued: list = []
    sink = DatabaseEventSink(db, None, enqueue_tickets=queued.append)  # the web process's sink
    at = datetime(2025, 1, 8, 12, 0, 0, 123456, tzinfo=timezone.utc)
    direct = sink.accept(neutral_event("5", "direct"), b"body a", at)
    orm = DatabaseEventSink(db, enqueue=lambda vendor, ticket: None).accept(neutral_event("6", "orm"), b"body b", at)
    with db.session() as session:
        rows = [session.get(EventRow, result.event_id) for result in (direct, orm)]
        columns = ["vendor", "event_type", "actor_id", "occurred_at", "received_at", "status", "attempts",
                   "processed_at", "next_attempt_at"]
        assert [getattr(rows[0], name) for name in columns] == [getattr(rows[1], name) for name in columns]
        assert (rows[0].received_at, rows[0].payload, rows[0].delivery_id) == (at, b"body a", "direct")
    assert queued == [[("zendesk", "5", direct.event_id)]]



def test_a_batch_through_the_driver_insert_stores_every_row_with_its_own_values(database_url):
    """A multi-row batch (PostgreSQL: one array per column) keeps each row's values in their columns, with
    nulls where a delivery has none: no delivery id, no actor, no vendor timestamp, an ignored event."""
    db = get_database(database_url)
    queued: list = []
    sink = DatabaseEventSink(db, None, enqueue_tickets=queued.append)  # the web process's sink
    held = HeldCommits(sink, queued=3)
    occurred = datetime(2025, 1, 8, 11, 59, 30, 250000, tzinfo=timezone.utc)
    events = [
        neutral_event("1", "lead"),
        dataclasses.replace(neutral_event("2", None, actor_id="agent-7"), occurred_at=occurred),
        neutral_event("3", "no-actor", event_type="ticket.created"),
        neutral_event("4", "ignored", event_type="ticket.tags_changed", handled=False),
    ]
    calls = [lambda event=event, index=index: sink.accept(event, f"body {index}".encode(), NOW)
             for index, event in enumerate(events)]
    results = _in_threads(calls)
    held.remove()
    assert held.commits == 2  # the lead alone, then the other three in one statement
    with db.session() as session:
        rows = [session.get(EventRow, result.event_id) for result in results]
        stored = [(row.ticket_id, row.event_type, row.delivery_id, row.actor_id, row.occurred_at, row.received_at,
                   row.payload, row.status, row.attempts, row.processed_at) for row in rows]
    assert stored == [
        ("1", "ticket.updated", "lead", None, None, NOW, b"body 0", "pending", 0, None),
        ("2", "ticket.updated", None, "agent-7", occurred, NOW, b"body 1", "pending", 0, None),
        ("3", "ticket.created", "no-actor", None, None, NOW, b"body 2", "pending", 0, None),
        ("4", "ticket.tags_changed", "ignored", None, None, NOW, b"body 3", "ignored", 0, NOW),
    ]
    assert sorted(ticket for batch in queued for _, ticket, _ in batch) == ["1", "2", "3"]


def test_web_processes_take_turns_to_commit_so_each_batch_carries_what_queued_meanwhile(database_url):
    """Two sinks on one database stand for two web processes (an flock excludes another open file
    description, in this process as across processes): while one holds its turn, the other's deliveries
    wait, and then go in one commit."""
    db = get_database(database_url)
    first = DatabaseEventSink(db, None, enqueue_tickets=lambda tickets: None)
    second = DatabaseEventSink(db, None, enqueue_tickets=lambda tickets: None)
    results: list = []
    with first._writers.turn():
        threads = [threading.Thread(target=lambda n=n: results.append(
            second.accept(neutral_event(str(n), f"turn-{n}"), b"turn %d" % n, NOW))) for n in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30  # a safety net against a hung test, not a measurement
        while second.waiting_deliveries < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert results == [] and _stored(db) == 0  # nothing committed while the other process's turn lasts
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4 and _stored(db) == 4
    assert second.group_commit_counts() == (1, 4)  # one leader waited for the turn, then took all four


@pytest.mark.parametrize("turn_file", ["unopenable", "another user's"])
def test_intake_commits_without_turns_when_the_turn_file_cannot_be_used(database_url, turn_file, tmp_path, caplog):
    """The turn only shapes batches: a turn file that cannot be opened, or that another user created (in a
    shared temp dir they could otherwise hold its lock and stall intake), leaves intake working, warned once."""
    db = get_database(database_url)
    sink = DatabaseEventSink(db, None, enqueue_tickets=lambda tickets: None)
    if turn_file == "unopenable":
        sink._writers._path = "/nonexistent-escalation-tmp/events.intake-lock"
        expected = "/nonexistent-escalation-tmp/events.intake-lock cannot be used (No such file or directory)"
    else:
        foreign = tmp_path / "foreign.intake-lock"
        foreign.touch()
        try:
            os.chown(foreign, 65534, 65534)
        except PermissionError:
            pytest.skip("creating a file owned by another user needs root")
        sink._writers._path = str(foreign)
        expected = f"{foreign} cannot be used (owned by another user)"
    with caplog.at_level("WARNING"):
        results = [sink.accept(neutral_event(str(n), f"no-turn-{n}"), b"no turn %d" % n, NOW) for n in range(2)]
    assert [result.duplicate for result in results] == [False, False] and _stored(db) == 2
    warnings = [r.getMessage() for r in caplog.records if "without taking turns" in r.getMessage()]
    assert warnings == [f"intake commits go ahead without taking turns: {expected}"]


def test_a_failed_enqueue_leaves_the_rows_stored_and_the_next_batch_is_still_sent(database_url, caplog):
    db = get_database(database_url)
    sent: list[list] = []
    calls = {"n": 0}

    def enqueue_tickets(tickets: list) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("queue down")
        sent.append(tickets)

    sink = DatabaseEventSink(db, None, enqueue_tickets=enqueue_tickets)
    lost = sink.accept(neutral_event("1", "a"), b"a", NOW)
    kept = sink.accept(neutral_event("2", "b"), b"b", NOW)
    assert "stored but not enqueued; the reconciler will pick them up" in caplog.text
    assert sent == [[("zendesk", "2", kept.event_id)]]
    with db.session() as session:
        assert session.get(EventRow, lost.event_id).status == "pending"
