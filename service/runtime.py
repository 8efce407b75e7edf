"""The Runtime: one process's settings, database, queue, current matrix and connectors, tied together.

Connectors: one per vendor for the current matrix, plus one per (vendor, older matrix version) for
tickets pinned to that version (`connector_for_version`), built from `mapping_matrix(pinned, current)`.
A `connector_factory` (vendor -> Connector) given to the Runtime replaces them all (tests, and
tests/support/worker_entry.py for the process tests).

The Runtime registers its huey tasks (service.tasks) and, on its own Database, the after-commit hooks
that queue the timers and alert sends a commit produced. The worker's periodic jobs live in
service.periodic; the web process's event sink in service.sink.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from huey import Huey

from connectors.alert_channels import send_with_retry
from connectors.base import Connector
from integration import alerts
from integration.store import timers as timer_host
from integration.pipeline import PassDeps, ReconcileReport, reconcile_once
from integration.store.db import Database, get_database, utcnow
from integration.store.matrix_versions import load_current, load_version, store_version
from matrix_config.loader import LoadedMatrix
from matrix_config.schema import Matrix
from service.connectors import build_connector, is_offline
from service.matrix_reload import MatrixReloader, ReloadResult
from service.queue import build_huey, ping
from service.settings import Settings
from service.tasks import register_tasks

log = logging.getLogger(__name__)

# A reconciler hint still marked after this long stood for a task the queue itself lost (a Redis restart
# without persistence): the reconciler enqueues the ticket or timer again. A task lost with its worker
# cleared the mark when it started, so the next reconcile pass takes it up at once.
HINT_EXPIRES_SECONDS = 600.0

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
        connector_factory: Callable[[str], Connector] | None = None,
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
        self.matrix_reloader = MatrixReloader(self)  # SIGHUP / MATRIX_PATH changes, last good kept
        self.tasks = register_tasks(self)
        # This Runtime's queue gets the timers and alert sends its own Database's commits produce.
        timer_host.enqueue_after_commit(self.db, self.enqueue_timer)
        alerts.send_after_commit(self.db, self.enqueue_alerts)

    # ------------------------------------------------------------------ parts
    def matrix(self) -> LoadedMatrix:
        self.matrix_reloader.poll()
        with self._lock:
            if self._matrix is None:
                loaded, source = load_current(self.settings.matrix_path)
                with self.db.session() as session:
                    store_version(session, loaded, source)
                self._matrix = loaded
                self.matrix_reloader.loaded()
            return self._matrix

    def current_matrix_or_none(self) -> LoadedMatrix | None:
        with self._lock:
            return self._matrix

    def adopt_matrix(self, loaded: LoadedMatrix) -> None:
        """A reloaded, validated matrix becomes current; connectors are rebuilt from its mappings."""
        with self._lock:
            self._matrix = loaded
            if self._connector_factory is None:
                self._connectors.clear()
                self._pinned_connectors.clear()

    def reload_matrix(self, cause: str = "requested") -> ReloadResult:
        """Validate MATRIX_PATH and make it current, or keep the running matrix and say why (service.matrix_reload)."""
        return self.matrix_reloader.reload(cause)

    def request_matrix_reload(self) -> None:
        """SIGHUP: reload on the next use of the matrix."""
        self.matrix_reloader.request_reload()

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
            take_hint=self.take_hint,
        )
        values.update(self._deps_overrides)
        return PassDeps(**values)

    # ------------------------------------------------------------------ queue
    def enqueue_ticket(self, vendor: str, ticket_id: str, delay: float | None = None) -> None:
        if delay:
            self.tasks.process_ticket.schedule((vendor, ticket_id), delay=delay)
        else:
            self.tasks.process_ticket(vendor, ticket_id)

    def take_hint(self, name: str) -> bool:
        """The reconciler's marker `name` in the queue's key-value store (Redis hash, SQLite or PostgreSQL
        table, as the queue): True when it was free, or older than HINT_EXPIRES_SECONDS (the task it
        stood for was lost from the queue itself); False while that task still waits. The task clears it
        when it starts (`clear_hint`)."""
        now = time.time()
        if self.huey.put_if_empty(name, now):
            return True
        placed = self.huey.get(name, peek=True)
        if isinstance(placed, (int, float)) and now - placed < HINT_EXPIRES_SECONDS:
            return False
        self.huey.put(name, now)
        return True

    def clear_hint(self, name: str) -> None:
        # Looked at first: most tasks have no hint, and a read costs the SQLite queue no write.
        if self.huey.get(name, peek=True) is not None:
            self.huey.get(name)  # huey's get without peek removes the key

    def enqueue_timer(self, timer_id: int, eta: datetime | None = None) -> None:
        # Relative delay from the pipeline's clock (tests inject one); huey adds it to its own clock.
        now = self._deps_overrides.get("now", utcnow)()
        delay = (eta - now).total_seconds() if eta is not None else 0.0
        if delay > 0:
            self.tasks.fire_timer.schedule((timer_id,), delay=delay)
        else:
            self.tasks.fire_timer(timer_id)

    def enqueue_alerts(self) -> None:
        self.tasks.send_alerts()

    def send_alerts(self) -> "alerts.DeliveryReport":
        """Send the due alert outbox rows (integration.alerts): after a commit that queued some, and periodically
        for retries. Never inside a ticket pass."""
        return alerts.deliver_due(self.db, now=self._deps_overrides.get("now", utcnow), current=self.matrix,
                                  send=send_with_retry)

    # ------------------------------------------------------------------ health
    def queue_health(self) -> str:
        return ping(self.huey)

    def matrix_health(self) -> str:
        try:
            running = self.matrix() is not None
        except Exception as exc:  # noqa: BLE001 - health probe
            return f"invalid: {type(exc).__name__}"
        # A refused reload leaves the last good matrix running: still ready ("ok, ..."), with the file's errors.
        note = self.matrix_reloader.health()
        return ("ok" if note is None else f"ok, {note}") if running else "not loaded"

    # ------------------------------------------------------------------ periodic jobs
    def reconcile(self, *, inline: bool = False) -> ReconcileReport:
        return reconcile_once(self.deps(), pending_grace=timedelta(seconds=self.settings.reconcile_interval_seconds),
                              fire_inline=inline)


_runtimes: dict[tuple[str, str, str], Runtime] = {}
_runtimes_lock = threading.Lock()


def request_matrix_reload() -> None:
    """SIGHUP in a web or worker process: every Runtime of the process reloads its matrix on next use."""
    with _runtimes_lock:
        runtimes = list(_runtimes.values())
    for runtime in runtimes:
        runtime.request_matrix_reload()


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
