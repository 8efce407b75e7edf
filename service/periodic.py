"""The periodic jobs of a worker: the reconciler every RECONCILE_INTERVAL_SECONDS, the catch-up scan every
SCAN_INTERVAL_SECONDS, each vendor's SLA sync every SLA_SYNC_INTERVAL_SECONDS (does nothing unless
SLA_SYNC=auto) and the alert sweep. They run in a ticker thread of each `escalation worker`; a lease row
per job (`periodic:reconcile`, `periodic:scan`, `periodic:sla_sync`, `periodic:alerts`) makes exactly
one worker run each, and another takes over when that one stops.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from connectors.ratelimit import shared_redis_url
from connectors.vendors import PLUGINS
from integration import alerts, snapshots
from integration.catchup import DatabaseWatermarks, catch_up
from integration.store.events import add_hint
from integration.pipeline import process_ticket
from integration.store.leases import acquire_lease, release_lease
from service.connectors import is_offline
from service.settings import Settings

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger(__name__)

SCAN_BATCH = 1000
PERIODIC_JOBS = ("periodic:reconcile", "periodic:scan", "periodic:sla_sync", "periodic:alerts",
                 "periodic:snapshots")
SNAPSHOT_PRUNE_SECONDS = 3600.0


def catch_up_scan(runtime: Runtime, *, inline: bool = False) -> int:
    """Hint every ticket the vendor reports changed since the stored watermark (integration.catchup);
    the normal pass then runs on it. A hint is an event row committed before the watermark moves,
    so a crash mid-scan loses nothing. Returns the number of tickets hinted."""
    run = uuid.uuid4().hex[:12]
    watermarks = DatabaseWatermarks(runtime.db)

    def hint(vendor: str, ticket_id: str) -> None:
        if add_hint(runtime.db, vendor, str(ticket_id), "scan", key=f"{ticket_id}@{run}") is None:
            return
        if inline:
            process_ticket(vendor, str(ticket_id), deps=runtime.deps())
        else:
            runtime.enqueue_ticket(vendor, str(ticket_id))

    hinted = 0
    for vendor in PLUGINS:
        try:
            connector = runtime.connector(vendor)
        except Exception:  # noqa: BLE001 - one vendor's misconfiguration must not stop the other's scan
            log.warning("catch-up scan: no %s connector", vendor, exc_info=True)
            continue
        if is_offline(connector):
            continue
        try:
            hinted += catch_up(connector, watermarks, hint, limit=SCAN_BATCH)
        except Exception:  # noqa: BLE001 - the next scan starts from the last saved watermark
            log.warning("catch-up scan of %s stopped early", vendor, exc_info=True)
    return hinted


def sla_sync(runtime: Runtime) -> None:
    """Each vendor's SLA configuration from the matrix (the plugin's `sla_sync`; Zendesk only: does
    nothing unless SLA_SYNC=auto and Zendesk credentials are set)."""
    for vendor, plugin in PLUGINS.items():
        if plugin.sla_sync is None:
            continue
        found = plugin.sla_sync(runtime.matrix().matrix, enabled=runtime.settings.sla_sync == "auto",
                                database_url=runtime.settings.database_url,
                                redis_url=shared_redis_url(runtime.settings.redis_url, runtime.settings.queue_url))
        if found is not None and not found.empty:
            log.info("SLA sync: %s SLA policies updated from the matrix", vendor)


def prune_snapshots(runtime: Runtime) -> int:
    """Ticket snapshots older than SNAPSHOT_RETENTION_DAYS go (integration.snapshots)."""
    removed = snapshots.prune(runtime.db, runtime.settings.snapshot_retention_days,
                               runtime.deps().now())
    if removed:
        log.info("snapshots: pruned %d older than %d days", removed, runtime.settings.snapshot_retention_days)
    return removed


def describe_periodic_jobs(settings: Settings) -> str:
    """One line for the worker log. huey's own "Periodic tasks are disabled." only means that huey's
    periodic tasks are not used: these jobs run in PeriodicJobs instead."""
    return (f"periodic jobs: reconcile every {settings.reconcile_interval_seconds:g}s, "
            f"catch-up scan every {settings.scan_interval_seconds:g}s, "
            f"SLA sync {settings.sla_sync} every {settings.sla_sync_interval_seconds:g}s "
            "(run by one worker at a time, under a lease)")


class PeriodicJobs:
    """The ticker thread of one worker process. Each job runs only while this process holds its lease."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._next: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="periodic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for name in PERIODIC_JOBS:
            try:
                release_lease(self.runtime.db, name, self.owner)
            except Exception:  # noqa: BLE001 - expires on its own
                pass

    def jobs(self) -> list[tuple[str, float, Any]]:
        settings = self.runtime.settings
        return [
            ("periodic:reconcile", float(settings.reconcile_interval_seconds), self._reconcile),
            ("periodic:scan", float(settings.scan_interval_seconds), lambda: catch_up_scan(self.runtime)),
            ("periodic:sla_sync", float(settings.sla_sync_interval_seconds), lambda: sla_sync(self.runtime)),
            ("periodic:alerts", alerts.ALERT_SWEEP_SECONDS, self.runtime.send_alerts),
            ("periodic:snapshots", SNAPSHOT_PRUNE_SECONDS, lambda: prune_snapshots(self.runtime)),
        ]

    def tick(self, now: float) -> list[str]:
        """Run every job that is due at monotonic time `now` and whose lease this process holds (or
        takes); returns the names of the jobs run. One job failing does not stop the others."""
        ran = []
        for name, interval, job in self.jobs():
            if now < self._next.get(name, 0.0):
                continue
            self._next[name] = now + interval
            try:
                if acquire_lease(self.runtime.db, name, self.owner, interval * 3):
                    ran.append(name)
                    job()
            except Exception:  # noqa: BLE001 - keep ticking
                log.warning("periodic job %s failed", name, exc_info=True)
        return ran

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick(time.monotonic())
            next_due = min(self._next.values(), default=0.0)
            self._stop.wait(min(max(next_due - time.monotonic(), 0.05), 1.0))

    def _reconcile(self) -> None:
        report = self.runtime.reconcile()
        if report.expired or report.forgotten or report.timers:
            log.info("reconciler: %s", report)
