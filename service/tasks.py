"""The huey tasks of a Runtime (registered on its own huey instance by `register_tasks`):

- `process_ticket(vendor, ticket_id)`: one pass over every pending event of the ticket (coalesced: a
  burst of five events is claimed by the first task; the other four find nothing and return).
- `fire_timer(timer_id)`: one due timer.
- `send_alerts()`: the due alert outbox rows, after a commit that queued some.

A task interrupted by SIGTERM after SHUTDOWN_TIMEOUT_SECONDS gives its work back at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huey.signals import SIGNAL_INTERRUPTED

from integration.store.events import release_ticket_events
from integration.pipeline import fire_timer, process_ticket
from integration.store.db import LeaseRow

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class RuntimeTasks:
    """The registered huey tasks: call one to enqueue it, `.schedule(args, delay=...)` to enqueue it later."""
    process_ticket: Any
    fire_timer: Any
    send_alerts: Any


def register_tasks(runtime: Runtime) -> RuntimeTasks:
    huey = runtime.huey

    @huey.task(name="process_ticket")
    def process_ticket_task(vendor: str, ticket_id: str) -> None:
        result = process_ticket(vendor, ticket_id, deps=runtime.deps())
        if result.status == "busy":
            runtime.enqueue_ticket(vendor, ticket_id, BUSY_RETRY_SECONDS)

    @huey.task(name="fire_timer")
    def fire_timer_task(timer_id: int) -> None:
        fire_timer(timer_id, deps=runtime.deps())

    @huey.signal(SIGNAL_INTERRUPTED)
    def requeue_interrupted(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
        # SIGTERM after SHUTDOWN_TIMEOUT_SECONDS: give the interrupted work back at once instead of
        # waiting for its lease to expire.
        try:
            if task.name == "process_ticket":
                vendor, ticket_id = task.args
                release_ticket_events(runtime.db, vendor, ticket_id)
                with runtime.db.session() as session:
                    lease = session.get(LeaseRow, f"ticket:{vendor}:{ticket_id}")
                    if lease is not None:
                        session.delete(lease)
                runtime.enqueue_ticket(vendor, ticket_id)
            elif task.name == "fire_timer":
                runtime.enqueue_timer(task.args[0])
            log.info("re-enqueued interrupted task %s%s", task.name, task.args)
        except Exception:  # noqa: BLE001 - the reconciler recovers it once the lease expires
            log.warning("could not re-enqueue interrupted task %s", task.name, exc_info=True)

    @huey.task(name="send_alerts")
    def send_alerts_task() -> None:
        runtime.send_alerts()

    return RuntimeTasks(process_ticket=process_ticket_task, fire_timer=fire_timer_task, send_alerts=send_alerts_task)
