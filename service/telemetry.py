"""Prometheus wiring (issue 13): the multiprocess directory, the gauges read from the database and the
queue at scrape time, and the registry one scrape renders (webhooks.prometheus serves it).

Multiprocess mode, prometheus_client's documented recipe: every process of a deployment (the web
processes of webhooks.server, `escalation worker`) writes its counters and histograms to files in
PROMETHEUS_MULTIPROC_DIR, and a scrape of any web process sums the files of all of them. The variable must
be set before the first metric is built: `prepare_multiprocess_dir()` runs at the start of the web server,
the worker and `escalation serve`; when it is unset it becomes `var/metrics` under the working directory,
shared by the web processes and a worker started there. Files of processes that are gone are removed
at start-up (their counts restart, which Prometheus reads as a counter reset), never those of a live one,
so the web server and the worker can start in any order.

Gauges (open tickets per level, timers pending and overdue, dead letters, queue depth) are not kept in
the files: they are counted from the database and the queue when scraped, so every process answers the
same and a restart loses nothing.
"""
from __future__ import annotations

import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import case, func, select

from integration.pipeline.deps import DELETED, RESOLVED
from integration.store.db import Database, EventRow, TicketStateRow, TimerRow, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_MULTIPROC_DIR = Path("var") / "metrics"
_PID_FILE = re.compile(r"_(\d+)\.db$")


# ---------------------------------------------------------------------------- multiprocess directory
def prepare_multiprocess_dir(default: Path = DEFAULT_MULTIPROC_DIR) -> Path:
    """PROMETHEUS_MULTIPROC_DIR (set to `default`, absolute, when unset): created, and the files of processes
    that no longer run removed. Call before any metric is used in this process."""
    configured = os.environ.get(MULTIPROC_ENV, "").strip()
    directory = Path(configured) if configured else default.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    for path in directory.glob("*.db"):
        match = _PID_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
    return directory


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def process_exited(pid: int) -> None:
    """A child process (a web process) ended: prometheus_client's `mark_process_dead` for its live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def multiprocess_mode() -> bool:
    """Whether this process's metrics are written to the multiprocess files (decided by prometheus_client
    when it was first imported, from PROMETHEUS_MULTIPROC_DIR)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


# ---------------------------------------------------------------------------- scrape-time gauges
class StateCollector:
    """Gauges counted when scraped: cheap grouped counts over indexed columns. `database` gives the
    Database (built on the first scrape, so a web process starts while the database is down); a scrape
    that cannot read it says so in `escalation_state_up` instead of failing."""

    def __init__(self, database: Callable[[], Database], queue_counts: Callable[[], tuple[int, int]] | None = None,
                 now: Callable[[], datetime] = utcnow):
        self.database = database
        self.queue_counts = queue_counts
        self.now = now

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("escalation_state_up", "1 when the database (and queue) could be read for this scrape",
                               labels=["source"])
        try:
            yield from self._database_gauges(GaugeMetricFamily)
            up.add_metric(["database"], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage instead of failing
            log.warning("metrics: the database cannot be read: %s", type(exc).__name__)
            up.add_metric(["database"], 0)
        if self.queue_counts is not None:
            try:
                pending, scheduled = self.queue_counts()
                queue = GaugeMetricFamily("escalation_queue_depth", "Tasks in the queue, by state (pending: ready "
                                          "to run; scheduled: waiting for their time)", labels=["state"])
                queue.add_metric(["pending"], pending)
                queue.add_metric(["scheduled"], scheduled)
                yield queue
                up.add_metric(["queue"], 1)
            except Exception as exc:  # noqa: BLE001
                log.warning("metrics: the queue cannot be read: %s", type(exc).__name__)
                up.add_metric(["queue"], 0)
        yield up

    def _database_gauges(self, gauge: Any) -> Iterator[Any]:
        now = self.now()
        closed = sorted(RESOLVED | {DELETED})
        with self.database().session() as session:
            levels = session.execute(
                select(TicketStateRow.level, func.count())
                .where(TicketStateRow.status.is_(None) | TicketStateRow.status.not_in(closed))
                .group_by(TicketStateRow.level)).all()
            timers = session.execute(
                select(TimerRow.kind, func.count(), func.sum(case((TimerRow.due_at < now, 1), else_=0)),
                       func.min(TimerRow.due_at))
                .where(TimerRow.status == "pending").group_by(TimerRow.kind)).all()
            dead = session.execute(
                select(EventRow.vendor, func.count()).where(EventRow.status == "dead").group_by(EventRow.vendor)).all()
        open_tickets = gauge("escalation_open_tickets", "Open tickets (not solved, closed or deleted), by level",
                             labels=["level"])
        for level, count in levels:
            open_tickets.add_metric([level or "none"], count)
        pending = gauge("escalation_timers_pending", "Timers not fired yet, by kind", labels=["kind"])
        overdue = gauge("escalation_timers_overdue", "Pending timers past their due time, by kind", labels=["kind"])
        oldest = gauge("escalation_timer_oldest_overdue_seconds",
                       "How far past due the oldest pending timer is (0: none overdue), by kind", labels=["kind"])
        for kind, count, late, first_due in timers:
            pending.add_metric([kind], count)
            overdue.add_metric([kind], int(late or 0))
            if first_due is not None and first_due.tzinfo is None:
                first_due = first_due.replace(tzinfo=now.tzinfo)
            oldest.add_metric([kind], max((now - first_due).total_seconds(), 0.0) if first_due is not None else 0.0)
        dead_events = gauge("escalation_dead_letter_events", "Events in the dead letter (status dead), by vendor",
                            labels=["vendor"])
        for vendor, count in dead:
            dead_events.add_metric([vendor], count)
        yield from (open_tickets, pending, overdue, oldest, dead_events)


# ---------------------------------------------------------------------------- one scrape
class _DefaultRegistry:
    """The process's own metrics when it is not in multiprocess mode (one process: tests, `--processes 1`)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def render(state: StateCollector | None, accept: str = "") -> tuple[bytes, str]:
    """One scrape, as (body, content type): every process's series (summed from the multiprocess files, or
    this process's), then the scrape-time gauges; in the format the scraper's Accept header asks for (the
    Prometheus text format, or OpenMetrics)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    if state is not None:
        registry.register(state)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def state_collector_for(settings: Any) -> StateCollector:
    """The gauges of the deployment behind `settings`: its Runtime's database and queue."""
    from service.runtime import get_runtime

    def queue_counts() -> tuple[int, int]:
        huey = get_runtime(settings).huey
        return int(huey.pending_count()), int(huey.scheduled_count())

    return StateCollector(lambda: get_runtime(settings).db, queue_counts)
