"""Bench-only WSGI app for bench_intake.py: the real webhook edge (`create_app`) plus a bare
`POST /bare` that answers 204, so both run in the same server processes under the same conditions, and
`POST /bare-held?ms=N`, a 204 after N ms of waiting that holds no lock (the control for a request held open
while its group commit completes: what holding it costs the server, with no work of its own).

The sink is chosen once per worker, best first, and reported by `GET /bench/sink`:
  "events"   service.sink.build_event_sink(settings): database + queue, as in production;
  "database" integration.store.events.DatabaseEventSink on the database alone (the queue part not available);
  "memory"   webhooks.memory_sink.InMemoryEventSink (no durable store available at all).
BENCH_SINK=events|database|memory forces one.
"""
from __future__ import annotations

import os
import threading
import time

from flask import Response, jsonify, request

from service.settings import Settings
from webhooks.app import create_app


def _build_sink(settings: Settings):
    wanted = os.environ.get("BENCH_SINK", "")
    errors: list[str] = []
    if wanted in ("", "events"):
        try:
            from service.sink import build_event_sink

            sink = build_event_sink(settings)
            sink.health()
            return "events", sink
        except Exception as exc:  # noqa: BLE001 - fall back and say why
            errors.append(f"events: {type(exc).__name__}: {exc}")
    if wanted in ("", "database"):
        try:
            from integration.store.db import get_database
            from integration.store.events import DatabaseEventSink

            kind = "database (no queue; " + "; ".join(errors)[:200] + ")" if errors else "database (no queue)"
            return kind, DatabaseEventSink(get_database(settings.database_url), enqueue=None)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"database: {type(exc).__name__}: {exc}")
    from webhooks.memory_sink import InMemoryEventSink

    return "memory (" + "; ".join(errors)[:300] + ")" if errors else "memory", InMemoryEventSink()


class _LazySink:
    """Built on first use, in the serving process: a database connection opened before
    webhooks.server forks would be shared by its processes (psycopg: "prepared statement already
    exists"). Built once, under a lock as webhooks.app.WebhookEdge.get_sink does: without it the first
    burst of concurrent deliveries built one sink per thread, each with its own group commit (smaller
    batches) and its own kept connection, until the pool ran out and deliveries waited 30 s for one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kind = ""
        self._sink = None
        self._lock = threading.Lock()

    def get(self):
        if self._sink is None:
            with self._lock:
                if self._sink is None:
                    self.kind, self._sink = _build_sink(self.settings)
        return self._sink

    def accept(self, event, payload, received_at):
        return self.get().accept(event, payload, received_at)

    def health(self):
        return self.get().health()


settings = Settings()
_sink = _LazySink(settings)
app = create_app(settings, sink=_sink)


@app.post("/bare")
def bare() -> Response:
    return Response(status=204)


@app.post("/bare-held")
def bare_held() -> Response:
    time.sleep(float(request.args.get("ms", "0")) / 1000)
    return Response(status=204)


@app.get("/bench/sink")
def sink_kind() -> Response:
    sink = _sink.get()
    counts = sink.group_commit_counts() if hasattr(sink, "group_commit_counts") else (0, 0)
    return jsonify(sink=_sink.kind, pid=os.getpid(), batches=counts[0], deliveries=counts[1])
