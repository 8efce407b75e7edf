"""The web process's event sink: the database and queue of the process Runtime (service.runtime), so an
accepted webhook is stored and its ticket's pass queued: one queue message per group commit
(`process_tickets`, fanned out by a worker). webhooks.app builds it on first use."""
from __future__ import annotations

from integration.store.events import DatabaseEventSink
from service.runtime import Runtime, get_runtime
from service.settings import Settings


def build_event_sink(settings: Settings) -> DatabaseEventSink:
    """The sink for the web process: the database and queue from settings; migrates on first use."""
    return runtime_event_sink(get_runtime(settings))


def runtime_event_sink(runtime: Runtime) -> DatabaseEventSink:
    """A sink on `runtime`'s database and queue: one `process_tickets` message per group commit."""
    return DatabaseEventSink(
        runtime.db,
        runtime.enqueue_ticket,
        enqueue_tickets=lambda tickets: runtime.tasks.process_tickets([list(ticket) for ticket in tickets]),
        queue_health=runtime.queue_health,
        matrix_health=runtime.matrix_health,
    )
