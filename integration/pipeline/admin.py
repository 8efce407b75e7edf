"""Admin operations on stored tickets (`escalation repin`, `escalation versions`): which matrix version
decides a ticket from now on, and how many open tickets each version holds."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from integration.model import TicketState
from integration.pipeline.deps import DELETED, RESOLVED
from integration.store.codec import from_json, to_json
from integration.store.db import Database, TicketStateRow
from integration.store.matrix_versions import load_version


def repin(db: Database, vendor: str, ticket_id: str, version: str) -> None:
    """Admin: decide this ticket with another stored matrix version from now on."""
    with db.session() as session:
        if load_version(session, version) is None:
            raise KeyError(f"matrix version {version} is not stored; load it once (escalation migrate / worker)")
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None:
            raise KeyError(f"no state for {vendor} ticket {ticket_id}")
        state = from_json(TicketState, row.state).with_(matrix_version=version)
        row.state = to_json(state)
        row.matrix_version = version


def _open_ticket_filter() -> Any:
    return TicketStateRow.status.is_(None) | TicketStateRow.status.not_in(sorted(RESOLVED | {DELETED}))


def repin_open(db: Database, version: str, *, from_version: str | None = None) -> list[tuple[str, str]]:
    """Admin: move every open (not solved/closed/deleted) ticket to matrix `version` (e.g. a matrix hotfix that
    must reach tickets in flight); only those on `from_version` when given. Returns the tickets moved
    (those already on `version` are left alone). The caller queues a pass for each, so it re-decides."""
    with db.session() as session:
        if load_version(session, version) is None:
            raise KeyError(f"matrix version {version} is not stored; load it once (escalation migrate / worker)")
        query = select(TicketStateRow).where(_open_ticket_filter())
        if from_version is not None:
            query = query.where(TicketStateRow.matrix_version == from_version)
        moved: list[tuple[str, str]] = []
        for row in session.scalars(query):
            if row.matrix_version == version:
                continue
            state = from_json(TicketState, row.state).with_(matrix_version=version)
            row.state = to_json(state)
            row.matrix_version = version
            moved.append((row.vendor, row.ticket_id))
    return moved


def open_tickets_by_version(db: Database) -> dict[str, int]:
    """How many open (not solved/closed/deleted) tickets are pinned to each matrix version."""
    with db.session() as session:
        rows = session.execute(
            select(TicketStateRow.matrix_version, func.count())
            .where(_open_ticket_filter())
            .group_by(TicketStateRow.matrix_version)
        ).all()
    return {str(version or "(none)"): int(count) for version, count in rows}
