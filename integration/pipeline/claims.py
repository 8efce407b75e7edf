"""Leases and claiming: a pass holds the lease `ticket:<vendor>:<id>` (renewed by a heartbeat while it
runs) and claims the ticket's due events (`pending -> processing`, `lease_until`) under it; a worker killed
with -9 stops renewing, and the reconciler puts its events back to pending."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from integration.pipeline.deps import PassDeps
from integration.store.db import EventRow
from integration.store.events import due_pending
from integration.store.leases import acquire_lease

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews the ticket lease and the claimed events' leases while a pass runs."""

    def __init__(self, deps: PassDeps, lease_name: str, owner: str):
        self.deps, self.lease_name, self.owner = deps, lease_name, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{lease_name}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(self.deps.lease_seconds / 3.0, 0.2)
        while not self._stop.wait(interval):
            try:
                now = self.deps.now()
                acquire_lease(self.deps.db, self.lease_name, self.owner, self.deps.lease_seconds, now)
                with self.deps.db.session() as session:
                    session.execute(
                        update(EventRow)
                        .where(EventRow.lease_owner == self.owner, EventRow.status == "processing")
                        .values(lease_until=now + timedelta(seconds=self.deps.lease_seconds))
                    )
            except Exception:  # noqa: BLE001 - a missed heartbeat only risks a duplicate pass, which is safe
                log.warning("lease heartbeat failed for %s", self.lease_name, exc_info=True)


@dataclass(frozen=True)
class Claimed:
    id: int
    actor_id: str | None
    attempts: int
    event_type: str = ""
    payload: bytes = b""  # the stored body (integration.pipeline.seen reads the ticket's stamp from it)


def claim(deps: PassDeps, vendor: str, ticket_id: str, owner: str) -> list[Claimed]:
    now = deps.now()
    with deps.db.session() as session:
        session.execute(
            update(EventRow)
            .where(
                EventRow.vendor == vendor,
                EventRow.ticket_id == ticket_id,
                due_pending(now) | ((EventRow.status == "processing") & (EventRow.lease_until < now)),
            )
            .values(
                status="processing",
                lease_owner=owner,
                lease_until=now + timedelta(seconds=deps.lease_seconds),
                attempts=EventRow.attempts + 1,
            )
        )
        rows = session.execute(
            select(EventRow.id, EventRow.actor_id, EventRow.attempts, EventRow.event_type, EventRow.payload)
            .where(EventRow.lease_owner == owner, EventRow.status == "processing")
            .order_by(EventRow.id)
        ).all()
        return [Claimed(*row) for row in rows]


def mark_events(session: Any, owner: str, ids: list[int], status: str, now: datetime, *,
                 decision_id: int | None = None, error: str | None = None) -> None:
    if not ids:
        return
    session.execute(
        update(EventRow)
        .where(EventRow.id.in_(ids), EventRow.lease_owner == owner, EventRow.status == "processing")
        .values(status=status, processed_at=now, lease_owner=None, lease_until=None, decision_id=decision_id,
                last_error=error)
    )
