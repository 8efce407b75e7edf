"""What the worker's queue holds under a backlog, and what a batch from intake costs at the vendor.

- The reconciler keeps at most one of its hints per ticket in the queue (through the real broker: SQLite
  file, Redis, PostgreSQL): before, every pass re-enqueued every ticket still waiting, and a backlog grew
  the queue by copies (the soak measured 165,550 queued tasks for 1,177 waiting events).
- A `process_tickets` message (one intake group commit) is read with one Zendesk show_many by the worker
  that takes it, not one GET per ticket."""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select

from integration.pipeline import reconcile_once
from integration.pipeline.reconcile import ticket_hint
from integration.store.db import EventRow
from integration.store.events import DatabaseEventSink
from service.runtime import HINT_EXPIRES_SECONDS
from tests.support.fake_connector import neutral_event
from tests.test_calls_seen_events import burst, rig, ticket_reads  # noqa: F401 - rig is a fixture
from tests.test_queue import clock, drain, stack  # noqa: F401 - clock and stack are fixtures


def statuses(runtime) -> list[str]:
    with runtime.db.session() as session:
        return [e.status for e in session.scalars(select(EventRow).order_by(EventRow.id))]


def test_a_waiting_ticket_has_one_reconciler_task_in_the_queue_however_often_it_runs(stack, clock):
    runtime, fake = stack
    sink = DatabaseEventSink(runtime.db, None)  # stored, but the queue never heard of it (a lost enqueue)
    sink.accept(neutral_event("101", "d1"), b'{"n": 1}', runtime.deps().now())
    clock.advance(60)

    reports = [reconcile_once(runtime.deps(), pending_grace=timedelta(seconds=10)) for _ in range(3)]

    assert [(r.forgotten, r.already_queued) for r in reports] == [(1, 0), (0, 1), (0, 1)]
    assert runtime.huey.pending_count() == 1
    drain(runtime.huey)
    assert statuses(runtime) == ["done"] and fake.fetch_count == 1

    # The task cleared its hint when it started: the next forgotten event is enqueued again.
    sink.accept(neutral_event("101", "d2"), b'{"n": 2}', runtime.deps().now())
    clock.advance(60)
    assert reconcile_once(runtime.deps(), pending_grace=timedelta(seconds=10)).forgotten == 1
    drain(runtime.huey)
    assert statuses(runtime) == ["done", "done"]


def test_a_hint_whose_task_the_queue_lost_is_given_again_after_it_expires(stack, clock):
    runtime, fake = stack
    DatabaseEventSink(runtime.db, None).accept(neutral_event("101", "d1"), b"{}", runtime.deps().now())
    clock.advance(60)
    assert reconcile_once(runtime.deps(), pending_grace=timedelta(seconds=10)).forgotten == 1
    runtime.huey.flush_queue() if hasattr(runtime.huey, "flush_queue") else runtime.huey.storage.flush_queue()
    assert runtime.huey.pending_count() == 0  # the task is gone; its hint is still marked

    assert reconcile_once(runtime.deps(), pending_grace=timedelta(seconds=10)).already_queued == 1
    runtime.huey.put(ticket_hint("zendesk", "101"), time.time() - HINT_EXPIRES_SECONDS - 1)
    assert reconcile_once(runtime.deps(), pending_grace=timedelta(seconds=10)).forgotten == 1
    drain(runtime.huey)
    assert statuses(runtime) == ["done"]


def test_an_intake_batch_is_read_with_one_show_many_by_the_worker(rig):
    runtime, client, fake = rig
    ids = burst(runtime, client, fake, 12)  # stored by intake; the batch message below is what its commit queues
    with runtime.db.session() as session:
        first = {e.ticket_id: e.id for e in session.scalars(select(EventRow).order_by(EventRow.id.desc()))}

    runtime.tasks.process_tickets([["zendesk", ticket_id, first[ticket_id]] for ticket_id in ids])
    passes = []
    while (task := runtime.huey.dequeue()) is not None:
        if task.name.startswith("process_ticket"):  # not the timers: these tickets' clocks ran out long ago
            passes.append(task.name)
            runtime.huey.execute(task)

    assert passes == ["process_tickets"]  # one worker took the whole batch
    reads = ticket_reads(fake)
    assert len(reads) == 1 and "show_many" in reads[0]
    assert set(statuses(runtime)) == {"done"}
    assert all(fake.put_bodies(ticket_id) for ticket_id in ids)  # every ticket placed


def test_hints_without_a_stamp_are_not_read_in_bulk(rig):
    """Catch-up hints (and comment or automation bodies) do not say which version of the ticket they saw, so
    each pass reads its ticket itself: a bulk read for them would be one read more, not one less."""
    from integration.pipeline import process_tickets
    from integration.store.events import add_hint
    from tests.test_calls_seen_events import new_ticket

    runtime, client, fake = rig
    ids = [str(7100 + n) for n in range(5)]
    for ticket_id in ids:
        new_ticket(fake, int(ticket_id))
        add_hint(runtime.db, "zendesk", ticket_id, "catchup", f"scan-{ticket_id}")

    results = process_tickets("zendesk", ids, deps=runtime.deps())

    assert {r.status for r in results.values()} == {"done"}
    reads = ticket_reads(fake)
    assert not [url for url in reads if "show_many" in url]
    assert len(reads) == 5
