"""The huey queue for real: SQLite file, Redis (db 15) and PostgreSQL storage, with the database on
SQLite or PostgreSQL. Tasks go through the real broker (serialized, dequeued, executed)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from connectors.base import RateLimited
from integration.store.db import EventRow
from integration.store.events import DatabaseEventSink
from service.queue import QueueConfigError, build_huey, describe
from service.settings import Settings
from service.sink import runtime_event_sink
from tests.test_group_commit import FIXTURE, SECRET, HeldCommits, _in_threads
from webhooks.app import create_app
from webhooks.signatures import zendesk_signature
from tests.support.fake_connector import (
    FakeConnector,
    ManualClock,
    make_runtime,
    make_settings,
    neutral_event,
    postgres_schema_url,
)

BACKENDS = [
    pytest.param(("sqlite", "sqlite"), id="sqlite-db+sqlite-queue"),
    pytest.param(("sqlite", "redis"), id="sqlite-db+redis-queue", marks=pytest.mark.redis),
    pytest.param(("postgres", "postgres"), id="postgres-db+postgres-queue", marks=pytest.mark.postgres),
    pytest.param(("postgres", "redis"), id="postgres-db+redis-queue", marks=[pytest.mark.postgres, pytest.mark.redis]),
]


@pytest.fixture
def clock():
    return ManualClock(datetime.now(timezone.utc))


@pytest.fixture(params=BACKENDS)
def stack(request, tmp_path, clock):
    database, queue = request.param
    cleanups = []
    if database == "sqlite":
        db_url = f"sqlite:///{tmp_path}/var/escalation.db"
    else:
        db_url, drop = postgres_schema_url(request.getfixturevalue("postgres_url"))
        cleanups.append(drop)
    name = f"test-{uuid.uuid4().hex[:8]}"
    if queue == "sqlite":
        huey = build_huey(f"sqlite:///{tmp_path}/var/queue.db", name=name)
    elif queue == "redis":
        huey = build_huey(request.getfixturevalue("redis_url"), name=name)
    else:
        queue_url, drop_queue = postgres_schema_url(request.getfixturevalue("postgres_url"))
        huey = build_huey(queue_url, name=name)
        cleanups.insert(0, drop_queue)
    fake = FakeConnector("zendesk")
    fake.put("101")
    runtime = make_runtime(make_settings(db_url), fake, huey=huey, clock=clock)
    yield runtime, fake
    huey.flush()  # only this queue's keys/rows
    huey.storage.close()
    runtime.db.dispose()
    for cleanup in cleanups:
        cleanup()


def drain(huey, limit=50):
    ran = 0
    while ran < limit:
        if huey.pending_count() == 0:  # an empty Redis/PostgreSQL dequeue blocks for huey's read timeout
            return ran
        task = huey.dequeue()
        if task is None:
            return ran
        huey.execute(task)
        ran += 1
    raise AssertionError("queue did not drain")


def test_burst_through_the_real_broker_is_one_pass(stack):
    runtime, fake = stack
    sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)
    for i in range(5):
        sink.accept(neutral_event("101", f"d{i}"), f'{{"n": {i}}}'.encode(), runtime.deps().now())
    assert runtime.huey.pending_count() == 1  # the later four found the first one queued
    drain(runtime.huey)  # one process task (and the timer tasks the pass planned, which go to the schedule)
    assert fake.fetch_count == 1 and len(fake.writes()) == 1
    with runtime.db.session() as session:
        assert [e.status for e in session.scalars(select(EventRow))] == ["done"] * 5


def test_retry_after_is_a_scheduled_task_in_the_broker(stack, clock):
    runtime, fake = stack
    fake.fetch_failures.append(RateLimited("429", retry_after=60))
    DatabaseEventSink(runtime.db, runtime.enqueue_ticket).accept(neutral_event("101", "d1"), b"{}", runtime.deps().now())
    drain(runtime.huey)
    assert runtime.huey.scheduled_count() == 1 and fake.writes() == []
    assert runtime.huey.read_schedule() == []  # not due for a minute
    # What the consumer's scheduler does every second, a minute and a bit from now (huey's clock: naive UTC).
    clock.advance(61)
    a_minute_later = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=61)
    due = runtime.huey.read_schedule(a_minute_later)
    assert len(due) == 1
    for task in due:
        runtime.huey.execute(task, a_minute_later)
    assert len(fake.writes()) == 1


def test_timer_task_waits_in_the_schedule_until_due(stack):
    runtime, fake = stack
    runtime.enqueue_timer(12345, runtime.deps().now() + timedelta(minutes=5))
    drain(runtime.huey)  # a task with an eta passes through the queue into the schedule
    assert runtime.huey.scheduled_count() == 1 and runtime.huey.pending_count() == 0
    assert runtime.huey.read_schedule() == []  # not due yet
    runtime.enqueue_timer(12346, None)
    assert runtime.huey.pending_count() == 1


def test_queue_urls():
    assert type(build_huey("memory://")).__name__ == "MemoryHuey"
    with pytest.raises(QueueConfigError, match="not supported"):
        build_huey("amqp://localhost")
    with pytest.raises(QueueConfigError, match="needs a file path"):
        build_huey("sqlite://")
    assert "hunter2" not in describe("redis://:hunter2@cache:6379/0")


def _signed_delivery(app, ticket: str, number: int, now: datetime) -> int:
    template = json.loads(FIXTURE.read_text())
    template.update(id=f"batch-event-{number}", subject=f"zen:ticket:{ticket}")
    template["detail"]["id"] = ticket
    body = json.dumps(template).encode()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return app.test_client().post("/webhooks/zendesk", data=body, headers={
        "Content-Type": "application/json", "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, stamp, body),
        "X-Zendesk-Webhook-Invocation-Id": f"batch-{number}"}).status_code


def test_a_batch_of_concurrent_webhooks_is_one_queue_message_and_every_event_is_processed(stack):
    runtime, fake = stack
    tickets = ["101", "102", "103", "104", "105"]
    for ticket in tickets[1:]:
        fake.put(ticket)
    sink = runtime_event_sink(runtime)
    now = runtime.deps().now()
    app = create_app(Settings(_env_file=None, DATABASE_URL=runtime.db.url, ZENDESK_WEBHOOK_SECRET=SECRET),
                     sink=sink, clock=lambda: now)
    held = HeldCommits(sink, queued=len(tickets) - 1)
    statuses = _in_threads([lambda n=n, t=t: _signed_delivery(app, t, n, now) for n, t in enumerate(tickets)])
    held.remove()
    assert statuses == [202] * len(tickets)
    assert held.commits == 2  # the first alone, the other four together
    assert runtime.huey.pending_count() == 2  # one queue message per commit, not one per webhook
    drain(runtime.huey, limit=500)  # then the worker's fan-out and the timers the passes planned
    with runtime.db.session() as session:
        events = list(session.scalars(select(EventRow)))
    assert sorted(e.ticket_id for e in events) == tickets and {e.status for e in events} == {"done"}
    assert fake.fetch_count == len(tickets)  # each ticket's pass read it once


def test_batches_for_a_ticket_whose_first_event_waits_make_one_pass(stack):
    runtime, fake = stack
    sink = runtime_event_sink(runtime)
    for i in range(3):  # three commits, three queue messages, before any worker runs
        sink.accept(neutral_event("101", f"burst-{i}"), f'{{"n": {i}}}'.encode(), runtime.deps().now())
    drain(runtime.huey)  # the first message's pass takes all three; the later messages find an earlier pending event
    assert fake.fetch_count == 1 and len(fake.writes()) == 1
    with runtime.db.session() as session:
        assert [e.status for e in session.scalars(select(EventRow))] == ["done"] * 3
