"""An EventSink kept in memory. It honours the sink contract (duplicates by delivery id or by identical
content, ignored events recorded but not queued) but forgets everything when the process exits.

Production never uses it (the service's sink is `service.sink.build_event_sink`). It stays a
module here rather than in tests/support because `bench/intake_bench_app.py` imports it for its
"memory" mode (a benchmark run with no database), and that app runs outside the test tree."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime

from integration.intake import AcceptResult
from integration.model import NeutralEvent


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    event: NeutralEvent
    payload: bytes
    received_at: datetime


class InMemoryEventSink:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.queued: list[int] = []  # event ids handed to processing (handled events only)
        self.healthy: dict[str, str] = {"event_store": "ok"}
        self._by_delivery: dict[tuple[str, str], int] = {}
        self._by_content: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def accept(self, event: NeutralEvent, payload: bytes, received_at: datetime) -> AcceptResult:
        content_key = (event.vendor, hashlib.sha256(payload).hexdigest())
        delivery_key = (event.vendor, event.delivery_id) if event.delivery_id else None
        with self._lock:
            seen = self._by_delivery.get(delivery_key) if delivery_key else None
            if seen is None:
                seen = self._by_content.get(content_key)
            if seen is not None:
                return AcceptResult(event_id=seen, duplicate=True)
            event_id = len(self.events) + 1
            self.events.append(StoredEvent(event_id, event, payload, received_at))
            self._by_content[content_key] = event_id
            if delivery_key:
                self._by_delivery[delivery_key] = event_id
            if event.handled:
                self.queued.append(event_id)
            return AcceptResult(event_id=event_id, duplicate=False)

    def health(self) -> dict[str, str]:
        return dict(self.healthy)
