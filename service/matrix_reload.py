"""Live matrix reload with last-good, for the web and worker processes (service.runtime.Runtime).

A process picks up a changed MATRIX_PATH on `SIGHUP` (`request_reload`, then the next use of the matrix) or
when it sees the file changed (size, modification time or inode; looked at on use of the matrix, at most
every MATRIX_WATCH_SECONDS). The new text is checked like `escalation validate` (schema,
cross-references, lint errors) before anything changes:

- valid and a new version: stored by version, made current for tickets from now on (new tickets pin it),
  and logged; with MATRIX_REPIN=all every open ticket moves to it, each move recorded in the decision log
  and followed by a pass; with `none` (the default) open tickets keep their version until resolved;
- invalid: refused, the running matrix stays; the `FILE:LINE:COL` lines go to the log and `/readyz` shows
  `ok, reload refused: ...` for the matrix check (the service keeps processing webhooks with the last good
  matrix, so it stays ready), until a valid file replaces it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from integration.matrix_reload import check_source, repin_open_logged
from integration.store.events import add_hint
from integration.store.matrix_versions import remember, store_version

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger("escalation.matrix")


def file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


@dataclass(frozen=True)
class ReloadResult:
    status: str  # reloaded | unchanged | refused
    version: str | None  # the version running afterwards
    errors: tuple[str, ...] = ()
    repinned: int = 0


class MatrixReloader:
    """One Runtime's reload bookkeeping: the file stamp of the running matrix, a pending SIGHUP, and the
    errors of the last refused file."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.stamp: tuple[int, int, int] | None = None
        self.refused: tuple[str, ...] = ()
        self._refused_stamp: tuple[int, int, int] | None = None
        self._requested = threading.Event()
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def loaded(self) -> None:
        """The Runtime loaded the matrix from the file (first use)."""
        self.stamp = file_stamp(self.runtime.settings.matrix_path)
        self._checked_at = time.monotonic()

    def request_reload(self) -> None:
        """SIGHUP: reload on the next use of the matrix (safe to call from a signal handler)."""
        self._requested.set()

    def poll(self) -> ReloadResult | None:
        """Reload when asked to or when the file changed; None when there was nothing to look at."""
        if self.stamp is None and not self._requested.is_set():
            return None  # not loaded yet: the first use loads it
        interval = float(self.runtime.settings.matrix_watch_seconds)
        now = time.monotonic()
        if not self._requested.is_set():
            if now - self._checked_at < interval:
                return None
            self._checked_at = now
            stamp = file_stamp(self.runtime.settings.matrix_path)
            if stamp is None or stamp == self.stamp or stamp == self._refused_stamp:
                return None
            return self.reload("the file changed")
        self._requested.clear()
        return self.reload("SIGHUP")

    def reload(self, cause: str) -> ReloadResult:
        with self._lock:
            return self._reload(cause)

    def _reload(self, cause: str) -> ReloadResult:
        runtime = self.runtime
        path = runtime.settings.matrix_path
        stamp = file_stamp(path)
        running = runtime.current_matrix_or_none()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return self._refuse(cause, stamp, [f"{path}:1:1: (file): cannot read: {getattr(exc, 'strerror', None) or exc}"],
                                running)
        loaded, errors = check_source(text, path)
        if loaded is None:
            return self._refuse(cause, stamp, errors, running)
        self.stamp, self.refused, self._refused_stamp = stamp, (), None
        if running is not None and loaded.version == running.version:
            return ReloadResult("unchanged", loaded.version)
        with runtime.db.session() as session:
            store_version(session, loaded, text)
        remember(loaded)
        runtime.adopt_matrix(loaded)
        log.info("matrix reloaded (%s): %s, version %s -> %s; MATRIX_REPIN=%s", cause, path,
                 running.version if running else "-", loaded.version, runtime.settings.matrix_repin)
        repinned = 0
        if runtime.settings.matrix_repin == "all":
            moved = repin_open_logged(runtime.db, loaded.version, runtime.deps().now(), reason="matrix reload")
            for vendor, ticket_id, _previous in moved:
                add_hint(runtime.db, vendor, ticket_id, "repin", key=f"{ticket_id}@reload:{loaded.version}")
                try:
                    runtime.enqueue_ticket(vendor, ticket_id)
                except Exception:  # noqa: BLE001 - the reconciler queues a pending hint no task is coming for
                    log.warning("could not queue the pass of re-pinned %s:%s", vendor, ticket_id, exc_info=True)
            repinned = len(moved)
            log.info("matrix reload: %d open ticket(s) re-pinned to version %s", repinned, loaded.version)
        return ReloadResult("reloaded", loaded.version, repinned=repinned)

    def _refuse(self, cause: str, stamp, errors: list[str], running) -> ReloadResult:
        self.refused, self._refused_stamp = tuple(errors), stamp
        version = running.version if running is not None else None
        log.error("matrix reload (%s) refused: %s has %d problem(s); still running version %s:\n%s", cause,
                  self.runtime.settings.matrix_path, len(errors), version or "-", "\n".join(errors))
        return ReloadResult("refused", version, tuple(errors))

    def health(self) -> str | None:
        """The note /readyz adds to the matrix check while a refused file is in place, else None."""
        if not self.refused:
            return None
        more = f" (+{len(self.refused) - 1} more)" if len(self.refused) > 1 else ""
        return f"reload refused: {self.refused[0]}{more}"
