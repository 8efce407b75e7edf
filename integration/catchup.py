"""Catch-up scan: process every ticket changed since the stored watermark.

Webhooks are hints and can be lost (the receiver was down, Zendesk tripped its circuit breaker, a Jira
delivery gave up). The scan asks the vendor what changed (Zendesk cursor-based incremental ticket export,
Jira JQL `updated >= ...`, both behind `Connector.changed_since`) and runs the normal processing pass on
each ticket, so an escalation is late at worst, never lost.

The watermark moves only after a ticket's pass returned: a crash or an error mid-scan replays from the
last processed ticket next time (at-least-once; the pass is idempotent). The connectors yield, with each
ticket, the watermark that is safe once that ticket is processed (Zendesk: the previous cursor for all
but the last ticket of an export page).

The periodic scan task and `escalation reconcile` go through `service.periodic.catch_up_scan`,
which calls `catch_up(connector, DatabaseWatermarks(db), process, limit=SCAN_BATCH)` per vendor with a
`process` that commits a hint event (durable before the watermark moves) and enqueues the ticket.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable, Protocol

from connectors.base import Connector, NotFound, Permanent
from integration.store.db import Database, WatermarkRow

log = logging.getLogger(__name__)


class WatermarkStore(Protocol):
    def get(self, name: str) -> str | None:
        """The stored watermark, or None before the first scan."""

    def put(self, name: str, value: str) -> None:
        """Store the watermark durably (committed when this returns)."""


class DatabaseWatermarks:
    """The `watermarks` table of `integration.store.db` (one row per name), each put its own transaction."""

    def __init__(self, database: Database):
        self.database = database

    def get(self, name: str) -> str | None:
        with self.database.session() as session:
            row = session.get(WatermarkRow, name)
            return row.value if row is not None else None

    def put(self, name: str, value: str) -> None:
        now = datetime.now(timezone.utc)
        with self.database.session() as session:
            row = session.get(WatermarkRow, name)
            if row is None:
                session.add(WatermarkRow(name=name, value=value, updated_at=now))
            else:
                row.value = value
                row.updated_at = now


def watermark_name(vendor: str) -> str:
    # One row per vendor: the periodic scan and `escalation reconcile` (both service.periodic.catch_up_scan, which
    # calls catch_up with DatabaseWatermarks) continue each other's scan.
    return f"scan:{vendor}"


def catch_up(
    connector: Connector,
    watermark_store: WatermarkStore,
    process: Callable[[str, str], None],
    *,
    limit: int | None = None,
) -> int:
    """Run `process(vendor, ticket_id)` for each ticket changed since the stored watermark; returns how
    many tickets were processed.

    A ticket the pass reports as gone or unprocessable (`NotFound`, `Permanent`) is logged and passed
    over: retrying cannot fix it and it must not hold the scan back. Any other error stops the scan and
    propagates, with the watermark left at the last ticket processed. A ticket that appears twice in one
    scan (the export lists a ticket again when it changed during the scan) is processed once. `limit`
    bounds one run; the next run continues from the watermark.
    """
    name = watermark_name(connector.vendor)
    start = watermark_store.get(name)
    saved = start
    processed = 0
    seen: set[str] = set()
    for ticket_id, watermark in connector.changed_since(start):
        if ticket_id not in seen:
            seen.add(ticket_id)
            try:
                process(connector.vendor, ticket_id)
            except (NotFound, Permanent) as exc:
                log.warning("catch-up: %s ticket %s skipped: %s", connector.vendor, ticket_id, exc)
            processed += 1
        if watermark and watermark != saved:
            watermark_store.put(name, watermark)
            saved = watermark
        if limit is not None and processed >= limit:
            break
    if processed:
        log.info("catch-up: %s processed %d changed tickets (watermark %s -> %s)", connector.vendor, processed, start, saved)
    return processed
