"""Named leases in the `leases` table: one holder at a time per name (a ticket's pass, a periodic job),
taken or extended atomically and released by their owner; an expired lease can be taken by anyone."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from integration.store.db import Database, LeaseRow, utcnow


def acquire_lease(db: Database, name: str, owner: str, seconds: float, now: datetime | None = None) -> bool:
    """Take (or extend) the named lease unless someone else holds an unexpired one. Own transaction."""
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    with db.session() as session:
        taken = session.execute(
            update(LeaseRow)
            .where(LeaseRow.name == name, or_(LeaseRow.until < now, LeaseRow.owner == owner))
            .values(owner=owner, until=until)
        ).rowcount
        if taken == 1:
            return True
        if session.get(LeaseRow, name) is not None:
            return False
    try:
        with db.session() as session:
            session.add(LeaseRow(name=name, owner=owner, until=until))
        return True
    except IntegrityError:
        return False


def release_lease(db: Database, name: str, owner: str) -> None:
    with db.session() as session:
        session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.owner == owner))
