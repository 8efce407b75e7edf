"""Matrix versions kept by content hash, so a ticket pinned to a version can be decided with it later,
after the admin changed the file and restarted the service."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.orm import Session

from integration.store.db import MatrixVersionRow, utcnow
from matrix_config.loader import LoadedMatrix, load_matrix_text

log = logging.getLogger(__name__)

_cache: dict[str, LoadedMatrix] = {}
_cache_lock = threading.Lock()


def load_current(path: str | Path) -> tuple[LoadedMatrix, str]:
    """Load the matrix file; returns it with its source text (to store)."""
    text = Path(path).read_text(encoding="utf-8")
    loaded = load_matrix_text(text, str(path))
    remember(loaded)
    return loaded, text


def remember(loaded: LoadedMatrix) -> None:
    with _cache_lock:
        _cache[loaded.version] = loaded


def store_version(session: Session, loaded: LoadedMatrix, source: str) -> None:
    """Record the version's source text once (idempotent; the version is a content hash)."""
    if session.get(MatrixVersionRow, loaded.version) is not None:
        return
    session.add(
        MatrixVersionRow(
            version=loaded.version,
            name=loaded.matrix.name,
            path=str(loaded.path),
            source=source,
            loaded_at=utcnow(),
        )
    )
    session.flush()


def load_version(session: Session, version: str) -> LoadedMatrix | None:
    """The matrix for a pinned version, or None when this database never saw that version."""
    with _cache_lock:
        cached = _cache.get(version)
    if cached is not None:
        return cached
    row = session.get(MatrixVersionRow, version)
    if row is None:
        return None
    loaded = load_matrix_text(row.source, row.path)
    if loaded.version != version:
        # The schema's canonical form changed since this text was stored; the text is still what the
        # admin wrote, so use it, but say so.
        log.warning("matrix version %s re-parses as %s; using it under its stored version", version, loaded.version)
        loaded = LoadedMatrix(matrix=loaded.matrix, version=version, path=loaded.path)
    remember(loaded)
    return loaded
