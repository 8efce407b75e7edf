"""The web process's event sink: the database and queue of the process Runtime (service.runtime), so an
accepted webhook is stored and its ticket's pass queued. webhooks.app builds it on first use."""
from __future__ import annotations

from integration.store.events import DatabaseEventSink
from service.runtime import get_runtime
from service.settings import Settings


def build_event_sink(settings: Settings) -> DatabaseEventSink:
    """The sink for the web process: the database and queue from settings; migrates on first use."""
    runtime = get_runtime(settings)
    return DatabaseEventSink(
        runtime.db,
        runtime.enqueue_ticket,
        queue_health=runtime.queue_health,
        matrix_health=runtime.matrix_health,
    )
