"""An in-process `integration.catchup.WatermarkStore` for tests (production uses `DatabaseWatermarks`)."""
from __future__ import annotations

import threading


class MemoryWatermarks:
    def __init__(self, initial: dict[str, str] | None = None):
        self.values: dict[str, str] = dict(initial or {})
        self.history: list[tuple[str, str]] = []  # every put, in order
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        with self._lock:
            self.values[name] = value
            self.history.append((name, value))
