"""The reconciler: turns the database's truth back into queue tasks (events whose worker died, pending
events no task is coming for, overdue timers whose task was lost)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from integration.pipeline.cycle import fire_timer, process_ticket
from integration.pipeline.deps import PassDeps
from integration.store import timers as timer_host
from integration.store.events import requeue_expired, stale_pending


@dataclass
class ReconcileReport:
    expired: int = 0
    forgotten: int = 0
    timers: int = 0

    def __str__(self) -> str:
        return (f"re-enqueued {self.expired} ticket(s) with expired leases, {self.forgotten} with waiting events; "
                f"fired {self.timers} overdue timer(s)")


def reconcile_once(deps: PassDeps, *, pending_grace: timedelta = timedelta(seconds=10),
                   fire_inline: bool = False) -> ReconcileReport:
    """Turn the database's truth back into queue tasks: events whose worker died (lease expired),
    pending events no task is coming for, and overdue timers whose task was lost."""
    now = deps.now()
    report = ReconcileReport()
    expired = requeue_expired(deps.db, now)
    forgotten = [t for t in stale_pending(deps.db, now, pending_grace) if t not in set(expired)]
    for vendor, ticket_id in expired + forgotten:
        if fire_inline or deps.enqueue_ticket is None:
            process_ticket(vendor, ticket_id, deps=deps)
        else:
            deps.enqueue_ticket(vendor, ticket_id, None)
    report.expired, report.forgotten = len(expired), len(forgotten)
    with deps.db.session() as session:
        due = [row.id for row in timer_host.overdue(session, now)]
    for timer_id in due:
        if fire_inline or deps.enqueue_timer is None:
            fire_timer(timer_id, deps=deps)
        else:
            deps.enqueue_timer(timer_id, None)
    report.timers = len(due)
    return report
