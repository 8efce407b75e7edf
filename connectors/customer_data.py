"""Customer data the matrix reads from outside the ticket: Zendesk organization and user fields, JSM
organization properties. Accounts keep tier and contract data there, and it changes rarely, so each
organization (or user) is read at most once per time-to-live per connector process, however many tickets
it has. Reads go through the connector's own client, so they count in its request budget and retries.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Hashable

DEFAULT_TTL_SECONDS = 600  # tier changes are contract events; ten minutes late is acceptable, 1 read/org/10 min


class TtlCache:
    """Values by key, each kept for `ttl` from when it was read. `clock` is the connector's clock."""

    def __init__(self, ttl: timedelta, clock: Callable[[], datetime]):
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, tuple[datetime, Any]] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now < entry[0]:
                return entry[1]
        # Loaded outside the lock: a slow read must not hold up other tickets' cached lookups. Two
        # threads missing the same key at once both read; the later answer is kept.
        value = load()
        with self._lock:
            self._entries[key] = (now + self.ttl, value)
        return value
