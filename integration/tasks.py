"""The runtime that ties settings, database, queue, matrix and connectors together, the huey tasks,
and the periodic jobs a worker runs.

Tasks (registered on the Runtime's huey instance):
- `process_ticket(vendor, ticket_id)`: one pass over every pending event of the ticket (coalesced: a
  burst of five events is claimed by the first task; the other four find nothing and return).
- `fire_timer(timer_id)`: one due timer.

Periodic jobs (reconciler every RECONCILE_INTERVAL_SECONDS, catch-up scan every SCAN_INTERVAL_SECONDS,
Zendesk SLA policy sync every SLA_SYNC_INTERVAL_SECONDS, which does nothing unless SLA_SYNC=auto) run in
a ticker thread of each `escalation worker`; a lease row per job (`periodic:reconcile`, `periodic:scan`,
`periodic:sla_sync`) makes exactly one consumer run each, and another takes over when that one stops.

Connectors: one per vendor for the current matrix, plus one per (vendor, older matrix version) for
tickets pinned to that version (`connector_for_version`), built from `mapping_matrix(pinned, current)`.
"""
from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from huey import Huey
from huey.signals import SIGNAL_INTERRUPTED

from connectors.base import Connector
from connectors.ratelimit import shared_redis_url
from connectors.registry import build_connector, is_offline
from connectors.vendors import PLUGINS
from integration import alerts
from integration.store import timers as timer_host
from integration.store.db import Database, LeaseRow, get_database, utcnow
from integration.store.leases import acquire_lease, release_lease
from integration.events import add_hint, release_ticket_events
from integration.store.matrix_versions import load_current, store_version
from integration.pipeline import PassDeps, ReconcileReport, fire_timer, process_ticket, reconcile_once
from integration.queue import build_huey, ping
from integration.settings import Settings
from matrix_config.loader import LoadedMatrix
from matrix_config.schema import Matrix

log = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 2.0
SCAN_BATCH = 1000
PERIODIC_JOBS = ("periodic:reconcile", "periodic:scan", "periodic:sla_sync", "periodic:alerts")


def mapping_matrix(pinned: Matrix, current: Matrix) -> Matrix:
    """The matrix a connector for a ticket pinned to `pinned` is built from.

    Pinning keeps the *policy* a ticket started with (levels, rules, targets, templates). Field, group
    and vendor mappings instead describe the helpdesk as it is now, so the current matrix wins where
    both define a key: an admin who fixes a group id or moves a field to a new custom field expects
    every ticket to use the fix at once, and the old id may no longer exist. A key only the pinned
    version has (a group renamed or dropped since) keeps its pinned mapping, so the pinned policy's
    decisions (e.g. "assign to security_team") can still be carried out. Either way a mapping change
    does not break tickets in flight."""
    return pinned.model_copy(update={
        "fields": {**pinned.fields, **current.fields},
        "groups": {**pinned.groups, **current.groups},
        "vendors": current.vendors,
    })


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        huey: Huey | None = None,
        connector_factory: Any = None,
        migrate: bool = True,
        **deps_overrides: Any,
    ):
        self.settings = settings
        self.db = db or get_database(settings.database_url, migrate=migrate)
        self.huey = huey or build_huey(settings.queue_url)
        self._connector_factory = connector_factory
        self._connectors: dict[str, Connector] = {}
        self._pinned_connectors: dict[tuple[str, str], Connector] = {}
        self._matrix: LoadedMatrix | None = None
        self._lock = threading.Lock()
        self._deps_overrides = deps_overrides
        self._register_tasks()
        # This Runtime's queue gets the timers and alert sends its own Database's commits produce.
        timer_host.enqueue_after_commit(self.db, self.enqueue_timer)
        alerts.send_after_commit(self.db, self.enqueue_alerts)

    # ------------------------------------------------------------------ parts
    def matrix(self) -> LoadedMatrix:
        with self._lock:
            if self._matrix is None:
                loaded, source = load_current(self.settings.matrix_path)
                with self.db.session() as session:
                    store_version(session, loaded, source)
                self._matrix = loaded
            return self._matrix

    @property
    def injected_connectors(self) -> bool:
        """A connector factory given to this Runtime serves every vendor (tests/support/worker_entry.py)."""
        return self._connector_factory is not None

    def connector(self, vendor: str) -> Connector:
        with self._lock:
            connector = self._connectors.get(vendor)
        if connector is None:
            if self._connector_factory is not None:
                connector = self._connector_factory(vendor)
            else:
                connector = build_connector(vendor, self.settings, self.matrix().matrix, db=self.db)
            with self._lock:
                connector = self._connectors.setdefault(vendor, connector)
        return connector

    def connector_for_version(self, vendor: str, version: str) -> Connector:
        """The connector for tickets pinned to matrix `version` (cached per vendor and version)."""
        current = self.matrix()
        if version == current.version or self._connector_factory is not None:
            return self.connector(vendor)
        key = (vendor, version)
        with self._lock:
            connector = self._pinned_connectors.get(key)
        if connector is not None:
            return connector
        from integration.store.matrix_versions import load_version

        with self.db.session() as session:
            pinned = load_version(session, version)
        if pinned is None:
            return self.connector(vendor)  # the pass decides with the current matrix then, too
        connector = build_connector(vendor, self.settings, mapping_matrix(pinned.matrix, current.matrix), db=self.db)
        with self._lock:
            return self._pinned_connectors.setdefault(key, connector)

    def dry_run(self, vendor: str) -> bool:
        connector = self.connector(vendor)
        if is_offline(connector):
            return True  # nothing could be written anyway
        if self.settings.dry_run is not None:
            return self.settings.dry_run
        return False

    def deps(self) -> PassDeps:
        values = dict(
            db=self.db,
            connector_for=self.connector,
            connector_for_version=self.connector_for_version,
            current_matrix=self.matrix,
            dry_run_for=self.dry_run,
            lease_seconds=float(self.settings.lease_seconds),
            max_attempts=self.settings.max_attempts,
            enqueue_ticket=self.enqueue_ticket,
            enqueue_timer=self.enqueue_timer,
        )
        values.update(self._deps_overrides)
        return PassDeps(**values)

    # ------------------------------------------------------------------ queue
    def _register_tasks(self) -> None:
        huey = self.huey

        @huey.task(name="process_ticket")
        def process_ticket_task(vendor: str, ticket_id: str) -> None:
            result = process_ticket(vendor, ticket_id, deps=self.deps())
            if result.status == "busy":
                self.enqueue_ticket(vendor, ticket_id, BUSY_RETRY_SECONDS)

        @huey.task(name="fire_timer")
        def fire_timer_task(timer_id: int) -> None:
            fire_timer(timer_id, deps=self.deps())

        @huey.signal(SIGNAL_INTERRUPTED)
        def requeue_interrupted(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
            # SIGTERM after SHUTDOWN_TIMEOUT_SECONDS: give the interrupted work back at once instead of
            # waiting for its lease to expire.
            try:
                if task.name == "process_ticket":
                    vendor, ticket_id = task.args
                    release_ticket_events(self.db, vendor, ticket_id)
                    with self.db.session() as session:
                        lease = session.get(LeaseRow, f"ticket:{vendor}:{ticket_id}")
                        if lease is not None:
                            session.delete(lease)
                    self.enqueue_ticket(vendor, ticket_id)
                elif task.name == "fire_timer":
                    self.enqueue_timer(task.args[0])
                log.info("re-enqueued interrupted task %s%s", task.name, task.args)
            except Exception:  # noqa: BLE001 - the reconciler recovers it once the lease expires
                log.warning("could not re-enqueue interrupted task %s", task.name, exc_info=True)

        @huey.task(name="send_alerts")
        def send_alerts_task() -> None:
            self.send_alerts()

        self.process_task = process_ticket_task
        self.timer_task = fire_timer_task
        self.alerts_task = send_alerts_task

    def enqueue_ticket(self, vendor: str, ticket_id: str, delay: float | None = None) -> None:
        if delay:
            self.process_task.schedule((vendor, ticket_id), delay=delay)
        else:
            self.process_task(vendor, ticket_id)

    def enqueue_timer(self, timer_id: int, eta: datetime | None = None) -> None:
        # Relative delay from the pipeline's clock (tests inject one); huey adds it to its own clock.
        now = self._deps_overrides.get("now", utcnow)()
        delay = (eta - now).total_seconds() if eta is not None else 0.0
        if delay > 0:
            self.timer_task.schedule((timer_id,), delay=delay)
        else:
            self.timer_task(timer_id)

    def enqueue_alerts(self) -> None:
        self.alerts_task()

    def send_alerts(self) -> "alerts.DeliveryReport":
        """Send the due alert outbox rows (integration.alerts): after a commit that queued some, and periodically
        for retries. Never inside a ticket pass."""
        return alerts.deliver_due(self.db, now=self._deps_overrides.get("now", utcnow), current=self.matrix)

    # ------------------------------------------------------------------ health
    def queue_health(self) -> str:
        return ping(self.huey)

    def matrix_health(self) -> str:
        try:
            return "ok" if self.matrix() is not None else "not loaded"
        except Exception as exc:  # noqa: BLE001 - health probe
            return f"invalid: {type(exc).__name__}"

    # ------------------------------------------------------------------ periodic jobs
    def reconcile(self, *, inline: bool = False) -> ReconcileReport:
        return reconcile_once(self.deps(), pending_grace=timedelta(seconds=self.settings.reconcile_interval_seconds),
                              fire_inline=inline)

    def catch_up_scan(self, *, inline: bool = False) -> int:
        """Hint every ticket the vendor reports changed since the stored watermark (integration.catchup);
        the normal pass then runs on it. A hint is an event row committed before the watermark moves,
        so a crash mid-scan loses nothing. Returns the number of tickets hinted."""
        from integration.catchup import DatabaseWatermarks, catch_up

        run = uuid.uuid4().hex[:12]
        watermarks = DatabaseWatermarks(self.db)

        def hint(vendor: str, ticket_id: str) -> None:
            if add_hint(self.db, vendor, str(ticket_id), "scan", key=f"{ticket_id}@{run}") is None:
                return
            if inline:
                process_ticket(vendor, str(ticket_id), deps=self.deps())
            else:
                self.enqueue_ticket(vendor, str(ticket_id))

        hinted = 0
        for vendor in PLUGINS:
            try:
                connector = self.connector(vendor)
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


    def sla_sync(self) -> None:
        """Each vendor's SLA configuration from the matrix (the plugin's `sla_sync`; Zendesk only: does
        nothing unless SLA_SYNC=auto and Zendesk credentials are set)."""
        for vendor, plugin in PLUGINS.items():
            if plugin.sla_sync is None:
                continue
            found = plugin.sla_sync(self.matrix().matrix, enabled=self.settings.sla_sync == "auto",
                                    database_url=self.settings.database_url,
                                    redis_url=shared_redis_url(self.settings.redis_url, self.settings.queue_url))
            if found is not None and not found.empty:
                log.info("SLA sync: %s SLA policies updated from the matrix", vendor)


def describe_periodic_jobs(settings: Settings) -> str:
    """One line for the worker log. huey's own "Periodic tasks are disabled." only means that huey's
    periodic tasks are not used: these jobs run in PeriodicJobs instead."""
    # SLA_SYNC (off | auto) is a newer setting; a Settings without it means off.
    sla_sync = getattr(settings, "sla_sync", "off")
    return (f"periodic jobs: reconcile every {settings.reconcile_interval_seconds:g}s, "
            f"catch-up scan every {settings.scan_interval_seconds:g}s, "
            f"SLA sync {sla_sync} every {settings.sla_sync_interval_seconds:g}s "
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
            ("periodic:scan", float(settings.scan_interval_seconds), self.runtime.catch_up_scan),
            ("periodic:sla_sync", float(settings.sla_sync_interval_seconds), self.runtime.sla_sync),
            ("periodic:alerts", alerts.ALERT_SWEEP_SECONDS, self.runtime.send_alerts),
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
        import time

        while not self._stop.is_set():
            self.tick(time.monotonic())
            next_due = min(self._next.values(), default=0.0)
            self._stop.wait(min(max(next_due - time.monotonic(), 0.05), 1.0))

    def _reconcile(self) -> None:
        report = self.runtime.reconcile()
        if report.expired or report.forgotten or report.timers:
            log.info("reconciler: %s", report)


_runtimes: dict[tuple[str, str, str], Runtime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The process-wide Runtime for these settings (web process: the sink; CLI; worker)."""
    settings = settings or Settings()
    key = (settings.database_url, settings.queue_url, settings.matrix_path)
    with _runtimes_lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = Runtime(settings)
            _runtimes[key] = runtime
        return runtime
