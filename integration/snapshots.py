"""Ticket snapshots: the normalized ticket each pass decided on, stored beside its decision so a draft
matrix can be replayed over real history (`integration.replay`, `escalation replay`).

- `record(session, ...)`: one `snapshots` row per pass, written in the pass's final commit
  (`integration.pipeline.commit.finalize`), so a snapshot exists if and only if the pass committed.
- `load_history(db, since=, vendor=)` / `read_history_file(path)`: the recorded passes (ticket, time, trigger,
  the matrix version that decided it and the decision it recorded) plus the source of every matrix
  version they name, the same from the database and from an export file.
- `export_lines(db, ...)`: the export file's lines (JSON Lines; the CLI gzips them).
- `prune(db, retention_days, now)`: SNAPSHOT_RETENTION_DAYS.

What is stored: the connector's `Ticket` as compact JSON, zlib-compressed. No credentials: the vendor's
concurrency token is dropped and the ticket URL is redacted (`connectors.base.redact_url`); the ticket
itself (subject, requester e-mail, mapped fields) is what the matrix's rules read, so it stays.
`since` selects tickets with a pass in the window; such a ticket is exported and replayed whole, from its
first stored pass.
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connectors.base import redact_url
from integration.model import Decision, Ticket
from integration.store.codec import from_json
from integration.store.db import Database, DecisionRow, MatrixVersionRow, SnapshotRow

FORMAT = "escalation-snapshots/1"
DEFAULT_RETENTION_DAYS = 90
_TICKET: TypeAdapter[Ticket] = TypeAdapter(Ticket)


# ------------------------------------------------------------------------------------ encoding
def ticket_to_json(ticket: Ticket) -> dict[str, Any]:
    """The ticket as stored and exported: no concurrency token, the URL redacted."""
    clean = replace(ticket, version_token=None, url=redact_url(ticket.url) if ticket.url else None)
    data = _TICKET.dump_python(clean, mode="json")
    data["tags"] = sorted(data.get("tags") or [])
    return data


def ticket_from_json(data: dict[str, Any]) -> Ticket:
    return _TICKET.validate_python(data)


def encode(ticket: Ticket) -> bytes:
    return zlib.compress(json.dumps(ticket_to_json(ticket), separators=(",", ":"), sort_keys=True).encode(), 6)


def decode(blob: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(blob))


def record(session: Session, ticket: Ticket, *, taken_at: datetime, trigger: str, matrix_version: str,
           decision_id: int | None, dry_run: bool) -> None:
    session.add(SnapshotRow(vendor=ticket.vendor, ticket_id=ticket.id, taken_at=taken_at, trigger=trigger[:80],
                            matrix_version=matrix_version, decision_id=decision_id, dry_run=dry_run,
                            ticket=encode(ticket)))


# ------------------------------------------------------------------------------------ history
@dataclass(frozen=True)
class RecordedPass:
    """One pass as recorded: the ticket it read, when, why, with which matrix version, and what it decided
    (`decision` None: nothing worth a row; `status` the decision row's: applied, dry_run, noop, ...)."""

    vendor: str
    ticket_id: str
    taken_at: datetime
    trigger: str
    matrix_version: str
    dry_run: bool
    ticket: Ticket
    decision: Decision | None = None
    status: str | None = None

    @property
    def is_timer(self) -> bool:
        return self.trigger.startswith("timer")


@dataclass
class History:
    """Recorded passes, oldest first per ticket, and the source text of each matrix version they name."""

    passes: list[RecordedPass] = field(default_factory=list)
    matrix_sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # version -> (path, source)

    @property
    def ticket_count(self) -> int:
        return len({(p.vendor, p.ticket_id) for p in self.passes})

    def by_ticket(self) -> dict[tuple[str, str], list[RecordedPass]]:
        tickets: dict[tuple[str, str], list[RecordedPass]] = {}
        for recorded in self.passes:
            tickets.setdefault((recorded.vendor, recorded.ticket_id), []).append(recorded)
        return tickets


class HistoryFileError(ValueError):
    """An export file that cannot be read; the message names the file and line."""


def _pass_to_json(recorded: RecordedPass, ticket_json: dict[str, Any], decision_json: dict | None) -> dict[str, Any]:
    return {"kind": "pass", "vendor": recorded.vendor, "ticket_id": recorded.ticket_id,
            "taken_at": recorded.taken_at.isoformat(), "trigger": recorded.trigger,
            "matrix_version": recorded.matrix_version, "dry_run": recorded.dry_run, "status": recorded.status,
            "ticket": ticket_json, "decision": decision_json}


def _rows(db: Database, since: datetime | None, vendor: str | None,
          batch: int = 1000) -> Iterator[tuple[SnapshotRow, DecisionRow | None]]:
    """Snapshots (with their decision rows) in the order they were stored, read in short transactions of
    `batch` rows, so an export never holds the database (SQLite's write lock) for long."""
    keys: set[tuple[str, str]] | None = None
    if since is not None:
        with db.session() as session:
            recent = select(SnapshotRow.vendor, SnapshotRow.ticket_id).where(SnapshotRow.taken_at >= since)
            if vendor:
                recent = recent.where(SnapshotRow.vendor == vendor)
            keys = {tuple(row) for row in session.execute(recent.distinct())}
        if not keys:
            return
    last = 0
    while True:
        with db.session() as session:
            query = (select(SnapshotRow, DecisionRow)
                     .outerjoin(DecisionRow, DecisionRow.id == SnapshotRow.decision_id)
                     .where(SnapshotRow.id > last))
            if vendor:
                query = query.where(SnapshotRow.vendor == vendor)
            rows = session.execute(query.order_by(SnapshotRow.id).limit(batch)).all()
        if not rows:
            return
        for snapshot, decision in rows:
            last = snapshot.id
            if keys is None or (snapshot.vendor, snapshot.ticket_id) in keys:
                yield snapshot, decision


def _sources(db: Database, versions: Iterable[str]) -> dict[str, tuple[str, str]]:
    wanted = sorted(set(versions))
    if not wanted:
        return {}
    with db.session() as session:
        rows = session.execute(select(MatrixVersionRow.version, MatrixVersionRow.path, MatrixVersionRow.source)
                               .where(MatrixVersionRow.version.in_(wanted)))
        return {version: (path, source) for version, path, source in rows}


def export_lines(db: Database, *, since: datetime | None = None, vendor: str | None = None,
                 exported_at: datetime | None = None) -> Iterator[str]:
    """The export file's lines, streamed: a header, one line per pass (in the order stored), then the source
    of each matrix version the passes name."""
    header = {"kind": "header", "format": FORMAT, "exported_at": exported_at.isoformat() if exported_at else None,
              "since": since.isoformat() if since else None, "vendor": vendor}
    yield json.dumps(header, separators=(",", ":"))
    versions: set[str] = set()
    for snapshot, decision in _rows(db, since, vendor):
        versions.add(snapshot.matrix_version)
        recorded = RecordedPass(snapshot.vendor, snapshot.ticket_id, snapshot.taken_at, snapshot.trigger,
                                snapshot.matrix_version, bool(snapshot.dry_run), Ticket("", ""),
                                status=decision.status if decision is not None else None)
        line = _pass_to_json(recorded, decode(snapshot.ticket), decision.decision if decision is not None else None)
        yield json.dumps(line, separators=(",", ":"), sort_keys=True)
    for version, (path, source) in sorted(_sources(db, versions).items()):
        yield json.dumps({"kind": "matrix", "version": version, "path": path, "source": source},
                         separators=(",", ":"))


def _recorded(data: dict[str, Any]) -> RecordedPass:
    decision = from_json(Decision, data["decision"]) if data.get("decision") else None
    return RecordedPass(
        vendor=data["vendor"], ticket_id=data["ticket_id"], taken_at=datetime.fromisoformat(data["taken_at"]),
        trigger=data["trigger"], matrix_version=data["matrix_version"], dry_run=bool(data.get("dry_run")),
        ticket=ticket_from_json(data["ticket"]), decision=decision, status=data.get("status"))


def load_history(db: Database, *, since: datetime | None = None, vendor: str | None = None) -> History:
    """The recorded passes from the database (the same selection `export_lines` writes)."""
    return history_from_lines(export_lines(db, since=since, vendor=vendor), "database")


def history_from_lines(lines: Iterable[str], name: str, *, since: datetime | None = None,
                       vendor: str | None = None) -> History:
    """Parse export lines; `since`/`vendor` select tickets like the database query does."""
    history = History()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            kind = data.get("kind")
            if kind == "header":
                if data.get("format") != FORMAT:
                    raise HistoryFileError(f"{name}:{number}: not a snapshot export (format {data.get('format')!r}, "
                                           f"expected {FORMAT!r})")
            elif kind == "matrix":
                history.matrix_sources[data["version"]] = (data.get("path") or data["version"], data["source"])
            elif kind == "pass":
                history.passes.append(_recorded(data))
            else:
                raise HistoryFileError(f"{name}:{number}: unknown record kind {kind!r}")
        except HistoryFileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HistoryFileError(f"{name}:{number}: not a snapshot record: {reason}") from None
    if vendor:
        history.passes = [p for p in history.passes if p.vendor == vendor]
    if since is not None:
        recent = {(p.vendor, p.ticket_id) for p in history.passes if p.taken_at >= since}
        history.passes = [p for p in history.passes if (p.vendor, p.ticket_id) in recent]
    history.passes.sort(key=lambda p: (p.vendor, p.ticket_id, p.taken_at))
    return history


def read_history_file(path: str | Path, *, since: datetime | None = None, vendor: str | None = None) -> History:
    """An export file (`.gz` or plain JSON Lines)."""
    path = Path(path)
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return history_from_lines(handle, str(path), since=since, vendor=vendor)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise HistoryFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


# ------------------------------------------------------------------------------------ retention
def prune(db: Database, retention_days: int, now: datetime) -> int:
    """Delete snapshots older than `retention_days`; returns how many went."""
    cutoff = now - timedelta(days=retention_days)
    with db.session() as session:
        result = session.execute(delete(SnapshotRow).where(SnapshotRow.taken_at < cutoff))
        return int(result.rowcount or 0)
