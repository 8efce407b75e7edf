"""What changed between two matrices, in the matrix's own terms (`escalation matrix diff`), and the stored
versions with their use (`escalation matrix versions`).

`diff(old, new)` compares the parsed matrices, not their text: comments, key order and formatting never
show. Levels and rules are matched by id, so an added, removed or reordered level or rule reads as such,
and each change within one names its path (`levels.L2.sla.acknowledge: 1h -> 30m`); templates report
which changed; every other section (fields, groups, clocks, calendars, gate, vendors, notify, ...) reports
each changed key by its dotted path.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from integration.store.db import Database, DecisionRow, MatrixVersionRow, SnapshotRow, TicketStateRow
from matrix_config.schema import Matrix

CLOSED_STATUSES = ("solved", "closed", "deleted")


@dataclass(frozen=True)
class Change:
    section: str  # levels | rules | templates | fields | groups | ...
    kind: str  # added | removed | changed | reordered
    path: str  # dotted path within the matrix ("levels.L2.sla.acknowledge"), or the section
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"section": self.section, "kind": self.kind, "path": self.path, "old": self.old, "new": self.new}

    def text_changes(self, limit: int = 6) -> list[str]:
        """A changed template's differing lines (`- old`, `+ new`), at most `limit`."""
        if not (self.section == "templates" and self.kind == "changed" and isinstance(self.old, str)
                and isinstance(self.new, str)):
            return []
        lines = [line.rstrip() for line in difflib.ndiff(self.old.splitlines(), self.new.splitlines())
                 if line[:2] in ("- ", "+ ")]
        return lines[:limit] + ([f"... {len(lines) - limit} more line(s)"] if len(lines) > limit else [])

    def line(self) -> str:
        if self.kind == "changed" and self.section == "templates":
            return f"{self.path}: text changed"
        if self.kind == "changed":
            return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"
        if self.kind == "reordered":
            return f"{self.path}: reordered: {', '.join(self.old)} -> {', '.join(self.new)}"
        if self.kind == "added":
            return f"{self.path}: added" + (f" ({_show(self.new)})" if self.new is not None else "")
        return f"{self.path}: removed" + (f" (was {_show(self.old)})" if self.old is not None else "")


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        text = value.strip().replace("\n", " ")
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, (list, dict)) and not value:
        return "(none)"
    text = str(value) if not isinstance(value, (list, dict)) else _compact(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact(v)}" for k, v in value.items() if v not in (None, [], {})) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)


def _walk(section: str, path: str, old: Any, new: Any, out: list[Change]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}"
            if key not in new:
                out.append(Change(section, "removed", sub, old=old[key]))
            elif key not in old:
                out.append(Change(section, "added", sub, new=new[key]))
            else:
                _walk(section, sub, old[key], new[key], out)
        return
    out.append(Change(section, "changed", path, old, new))


def _summary(section: str, item: dict, position: int) -> str:
    if section == "rules":
        target = "bypass" if item.get("bypass") else f"level {item.get('level')}"
        return f"position {position + 1}, {target}, when {_compact(item.get('when') or {}) or '{}'}"
    return f"position {position + 1}, {item.get('name')}"


def _by_id(section: str, old: list[dict], new: list[dict], out: list[Change]) -> None:
    old_ids, new_ids = [item["id"] for item in old], [item["id"] for item in new]
    old_map, new_map = {i["id"]: i for i in old}, {i["id"]: i for i in new}
    for position, item in enumerate(new):
        if item["id"] not in old_map:
            out.append(Change(section, "added", f"{section}.{item['id']}", new=_summary(section, item, position)))
    for item in old:
        if item["id"] not in new_map:
            out.append(Change(section, "removed", f"{section}.{item['id']}", old=f"position {old_ids.index(item['id']) + 1}"))
    kept_old = [i for i in old_ids if i in new_map]
    kept_new = [i for i in new_ids if i in old_map]
    if kept_old != kept_new:
        out.append(Change(section, "reordered", section, old=kept_old, new=kept_new))
    for item_id in kept_new:
        body_old = {k: v for k, v in old_map[item_id].items() if k != "id"}
        body_new = {k: v for k, v in new_map[item_id].items() if k != "id"}
        _walk(section, f"{section}.{item_id}", body_old, body_new, out)


def diff(old: Matrix, new: Matrix) -> list[Change]:
    """The semantic differences from `old` to `new` (empty: the same matrix, whatever the text)."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    out: list[Change] = []
    _by_id("levels", a.pop("levels"), b.pop("levels"), out)
    _by_id("rules", a.pop("rules"), b.pop("rules"), out)
    templates_old, templates_new = a.pop("templates"), b.pop("templates")
    for name in list(templates_old) + [n for n in templates_new if n not in templates_old]:
        if name not in templates_new:
            out.append(Change("templates", "removed", f"templates.{name}"))
        elif name not in templates_old:
            out.append(Change("templates", "added", f"templates.{name}", new=templates_new[name]))
        elif templates_old[name] != templates_new[name]:
            out.append(Change("templates", "changed", f"templates.{name}", templates_old[name], templates_new[name]))
    for section in list(a) + [s for s in b if s not in a]:
        _walk(section, section, a.get(section), b.get(section), out)
    return out


# ------------------------------------------------------------------------------------ stored versions
@dataclass(frozen=True)
class StoredVersion:
    version: str
    name: str
    path: str
    stored_at: datetime
    first_used_at: datetime | None  # the first decision (or snapshot) made with it
    last_used_at: datetime | None
    decisions: int
    open_tickets: int  # tickets not solved/closed whose state is pinned to it

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "path": self.path,
                "stored_at": self.stored_at.isoformat(),
                "first_used_at": self.first_used_at.isoformat() if self.first_used_at else None,
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
                "decisions": self.decisions, "open_tickets": self.open_tickets}


def stored_versions(db: Database) -> list[StoredVersion]:
    """Every matrix version the database holds, oldest first, with when it was first used and how many open
    tickets are pinned to it."""
    with db.session() as session:
        rows = session.execute(select(MatrixVersionRow.version, MatrixVersionRow.name, MatrixVersionRow.path,
                                      MatrixVersionRow.loaded_at)).all()
        used = {v: (first, last, n) for v, first, last, n in session.execute(
            select(DecisionRow.matrix_version, func.min(DecisionRow.decided_at), func.max(DecisionRow.decided_at),
                   func.count()).group_by(DecisionRow.matrix_version))}
        seen = {v: (first, last) for v, first, last in session.execute(
            select(SnapshotRow.matrix_version, func.min(SnapshotRow.taken_at), func.max(SnapshotRow.taken_at))
            .group_by(SnapshotRow.matrix_version))}
        pinned = dict(session.execute(
            select(TicketStateRow.matrix_version, func.count())
            .where((TicketStateRow.status.is_(None)) | (TicketStateRow.status.not_in(CLOSED_STATUSES)))
            .group_by(TicketStateRow.matrix_version)).all())
    versions = []
    for version, name, path, loaded_at in rows:
        first_decision, last_decision, count = used.get(version, (None, None, 0))
        first_seen, last_seen = seen.get(version, (None, None))
        firsts = [t for t in (first_decision, first_seen) if t is not None]
        lasts = [t for t in (last_decision, last_seen) if t is not None]
        versions.append(StoredVersion(version, name, path, loaded_at, min(firsts) if firsts else None,
                                      max(lasts) if lasts else None, int(count), int(pinned.get(version, 0))))
    versions.sort(key=lambda v: (v.first_used_at or v.stored_at, v.stored_at))
    return versions


def stored_source(db: Database, reference: str) -> tuple[str, str, str] | None:
    """(version, path, source) of a stored version named by its id or a unique prefix (4+ characters)."""
    with db.session() as session:
        row = session.get(MatrixVersionRow, reference)
        if row is None and len(reference) >= 4:
            matches = session.scalars(select(MatrixVersionRow).where(MatrixVersionRow.version.startswith(reference))).all()
            row = matches[0] if len(matches) == 1 else None
        return (row.version, row.path, row.source) if row is not None else None
