"""The reconciler: turns the database's truth back into queue tasks (events whose worker died, pending
events no task is coming for, overdue timers whose task was lost)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from integration.pipeline.cycle import fire_timer, process_ticket
from integration.pipeline.deps import PassDeps
from integration.store import timers as timer_host
from integration.store.events import requeue_expired, stale_pending


def ticket_hint(vendor: str, ticket_id: str) -> str:
    return f"reconcile:ticket:{vendor}:{ticket_id}"


def timer_hint(timer_id: int) -> str:
    return f"reconcile:timer:{timer_id}"


@dataclass
class ReconcileReport:
    expired: int = 0
    forgotten: int = 0
    timers: int = 0
    already_queued: int = 0  # tickets and timers whose earlier hint still waits in the queue: not enqueued again

    def __str__(self) -> str:
        return (f"re-enqueued {self.expired} ticket(s) with expired leases, {self.forgotten} with waiting events; "
                f"fired {self.timers} overdue timer(s); {self.already_queued} already queued")


def reconcile_once(deps: PassDeps, *, pending_grace: timedelta = timedelta(seconds=10),
                   fire_inline: bool = False) -> ReconcileReport:
    """Turn the database's truth back into queue tasks: events whose worker died (lease expired),
    pending events no task is coming for, and overdue timers whose task was lost."""
    now = deps.now()
    report = ReconcileReport()
    expired = requeue_expired(deps.db, now)
    forgotten = [t for t in stale_pending(deps.db, now, pending_grace) if t not in set(expired)]
    # A backlog makes every waiting ticket look forgotten, and every queued timer overdue, on every pass;
    # enqueueing each again each time filled the queue with copies (the soak: 165,550 queued tasks for
    # 1,177 waiting events) and starved the oldest tickets behind them. `take_hint` keeps at most one of
    # the reconciler's hints per ticket and per timer in the queue; the task clears it when it starts.
    def hinted(name: str) -> bool:
        if deps.take_hint is None or deps.take_hint(name):
            return True
        report.already_queued += 1
        return False

    for group, tickets in (("expired", expired), ("forgotten", forgotten)):
        for vendor, ticket_id in tickets:
            if fire_inline or deps.enqueue_ticket is None:
                process_ticket(vendor, ticket_id, deps=deps)
            elif hinted(ticket_hint(vendor, ticket_id)):
                deps.enqueue_ticket(vendor, ticket_id, None)
            else:
                continue
            setattr(report, group, getattr(report, group) + 1)
    with deps.db.session() as session:
        due = [row.id for row in timer_host.overdue(session, now)]
    for timer_id in due:
        if fire_inline or deps.enqueue_timer is None:
            fire_timer(timer_id, deps=deps)
        elif hinted(timer_hint(timer_id)):
            deps.enqueue_timer(timer_id, None)
        else:
            continue
        report.timers += 1
    return report
