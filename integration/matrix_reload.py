"""Matrix reload helpers (service.matrix_reload uses them): check a new matrix text the way `escalation
validate` does, and move open tickets to a new version with a decision-log row for each move."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from integration.model import Decision, TicketState
from integration.store.codec import from_json, to_json
from integration.store.db import Database, DecisionRow, TicketStateRow
from matrix_config.lint import lint
from matrix_config.loader import LoadedMatrix, MatrixInvalid, load_matrix_text

CLOSED_STATUSES = ("solved", "closed", "deleted")


def check_source(text: str, path: str) -> tuple[LoadedMatrix | None, list[str]]:
    """(the matrix, []) when `text` is a valid matrix, else (None, its `FILE:LINE:COL: path: message` lines):
    schema, cross-references and the linter's errors (warnings do not refuse a reload)."""
    try:
        loaded = load_matrix_text(text, path)
    except MatrixInvalid as invalid:
        return None, list(invalid.errors)
    errors = [finding.line() for finding in lint(loaded) if finding.severity == "error"]
    return (None, errors) if errors else (loaded, [])


def repin_open_logged(db: Database, version: str, now: datetime, *, reason: str) -> list[tuple[str, str, str | None]]:
    """Move every open (not solved/closed/deleted) ticket pinned to another version to `version`, and record
    each move as a decision row (`escalation history` shows it) in the same transaction. Returns
    (vendor, ticket id, previous version) per ticket moved; the caller queues a pass for each."""
    moved: list[tuple[str, str, str | None]] = []
    with db.session() as session:
        rows = session.scalars(select(TicketStateRow).where(
            (TicketStateRow.status.is_(None)) | (TicketStateRow.status.not_in(CLOSED_STATUSES)),
            (TicketStateRow.matrix_version.is_(None)) | (TicketStateRow.matrix_version != version)))
        for row in rows:
            previous = row.matrix_version
            row.state = to_json(from_json(TicketState, row.state).with_(matrix_version=version))
            row.matrix_version = version
            note = f"{reason}: re-pinned from matrix {previous or '(none)'} to {version}"
            decision = Decision(vendor=row.vendor, ticket_id=row.ticket_id, matrix_version=version, decided_at=now,
                                reason=note)
            session.add(DecisionRow(vendor=row.vendor, ticket_id=row.ticket_id, decided_at=now, trigger="matrix-reload",
                                    from_level=row.level, to_level=None, direction=None, issue_type=row.issue_type,
                                    reason=note, rule_id=None, matrix_version=version, decision=to_json(decision),
                                    state_after=row.state, status="repinned", writes=0, dry_run=False, finished_at=now))
            moved.append((row.vendor, row.ticket_id, previous))
    return moved
