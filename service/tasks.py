"""The huey tasks of a Runtime (registered on its own huey instance by `register_tasks`):

- `process_ticket(vendor, ticket_id)`: one pass over every pending event of the ticket (coalesced: a
  burst of five events is claimed by the first task; the other four find nothing and return).
- `process_tickets([[vendor, ticket_id, first_event_id], ...])`: the handled tickets of one group commit
  at intake, one queue message per batch (the web process writes the queue once per commit, not once per
  event, and its commit runs no query but the INSERT): the worker leaves out the tickets whose earlier
  pending event has its own task coming (coalescing, `tickets_without_earlier_pending`), reads the others
  in one request per vendor (Zendesk show_many, Jira JQL by keys: `integration.pipeline.process_tickets`)
  and runs their passes itself; a batch over BULK_PASS_TICKETS is split into tasks other workers take.
- `fire_timer(timer_id)`: one due timer.
- `send_alerts()`: the due alert outbox rows, after a commit that queued some.

A task interrupted by SIGTERM after SHUTDOWN_TIMEOUT_SECONDS gives its work back at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huey.signals import SIGNAL_INTERRUPTED

from integration.store.events import release_ticket_events, tickets_without_earlier_pending
from integration.pipeline import fire_timer, process_ticket, process_tickets
from integration.pipeline.reconcile import ticket_hint, timer_hint
from integration.store.db import LeaseRow

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 2.0
# Tickets of one intake batch a worker passes itself after one bulk read (Zendesk show_many, Jira JQL by
# keys); a bigger batch is split, so other workers take the rest in parallel.
BULK_PASS_TICKETS = 20


@dataclass(frozen=True)
class RuntimeTasks:
    """The registered huey tasks: call one to enqueue it, `.schedule(args, delay=...)` to enqueue it later."""
    process_ticket: Any
    process_tickets: Any
    fire_timer: Any
    send_alerts: Any


def register_tasks(runtime: Runtime) -> RuntimeTasks:
    huey = runtime.huey

    @huey.task(name="process_ticket")
    def process_ticket_task(vendor: str, ticket_id: str) -> None:
        runtime.clear_hint(ticket_hint(vendor, ticket_id))
        result = process_ticket(vendor, ticket_id, deps=runtime.deps())
        if result.status == "busy":
            runtime.enqueue_ticket(vendor, ticket_id, BUSY_RETRY_SECONDS)

    # process_tickets task id -> the tickets it has yet to give back if interrupted: the one whose pass is
    # running first, then those it has not started.
    inline_passes: dict[str, list[tuple[str, str]]] = {}

    @huey.task(name="process_tickets", context=True)
    def process_tickets_task(tickets: list[list[Any]], task: Any = None) -> None:
        if len(tickets) > BULK_PASS_TICKETS:  # the rest go to other workers, a bulk read each
            for start in range(BULK_PASS_TICKETS, len(tickets), BULK_PASS_TICKETS):
                runtime.tasks.process_tickets(tickets[start:start + BULK_PASS_TICKETS])
            tickets = tickets[:BULK_PASS_TICKETS]
        wanted = tickets_without_earlier_pending(
            runtime.db, [(vendor, ticket_id, first_event_id) for vendor, ticket_id, first_event_id in tickets],
            runtime.deps().now())
        if not wanted:
            return
        vendors = list(dict.fromkeys(vendor for vendor, _ in wanted))
        wanted = [ticket for vendor in vendors for ticket in wanted if ticket[0] == vendor]  # passes' order
        key = task.id if task is not None else ""
        left = inline_passes[key] = list(wanted)

        def starting(vendor: str) -> Any:
            def mark(ticket_id: str) -> None:
                while left and left[0] != (vendor, ticket_id):
                    left.pop(0)  # its pass finished
                runtime.clear_hint(ticket_hint(vendor, ticket_id))
            return mark

        try:
            for vendor in vendors:
                ids = [ticket_id for v, ticket_id in wanted if v == vendor]
                results = process_tickets(vendor, ids, deps=runtime.deps(), starting=starting(vendor))
                for ticket_id, result in results.items():
                    if result.status == "busy":
                        runtime.enqueue_ticket(vendor, ticket_id, BUSY_RETRY_SECONDS)
        except KeyboardInterrupt:  # huey's exit signal: requeue_interrupted, which runs next, takes the entry
            raise
        except BaseException:
            inline_passes.pop(key, None)
            raise
        inline_passes.pop(key, None)

    @huey.task(name="fire_timer")
    def fire_timer_task(timer_id: int) -> None:
        runtime.clear_hint(timer_hint(timer_id))
        fire_timer(timer_id, deps=runtime.deps())

    @huey.signal(SIGNAL_INTERRUPTED)
    def requeue_interrupted(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
        # SIGTERM after SHUTDOWN_TIMEOUT_SECONDS: give the interrupted work back at once instead of
        # waiting for its lease to expire.
        try:
            running = [tuple(task.args)] if task.name == "process_ticket" else inline_passes.pop(task.id, None)
            if running:
                vendor, ticket_id = running[0]  # the pass that was interrupted; the others had not started
                release_ticket_events(runtime.db, vendor, ticket_id)
                with runtime.db.session() as session:
                    lease = session.get(LeaseRow, f"ticket:{vendor}:{ticket_id}")
                    if lease is not None:
                        session.delete(lease)
                for vendor, ticket_id in running:
                    runtime.enqueue_ticket(vendor, ticket_id)
            elif task.name == "fire_timer":
                runtime.enqueue_timer(task.args[0])
            log.info("re-enqueued interrupted task %s%s", task.name, task.args)
        except Exception:  # noqa: BLE001 - the reconciler recovers it once the lease expires
            log.warning("could not re-enqueue interrupted task %s", task.name, exc_info=True)

    @huey.task(name="send_alerts")
    def send_alerts_task() -> None:
        runtime.send_alerts()

    return RuntimeTasks(process_ticket=process_ticket_task, process_tickets=process_tickets_task,
                        fire_timer=fire_timer_task, send_alerts=send_alerts_task)
