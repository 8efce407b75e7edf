"""Events that report nothing newer than what the service has already decided on need no vendor read.

A webhook is a hint and the vendor API is the truth, so a pass normally reads the ticket. That read is
skipped only when it provably cannot show anything the service has not decided on:

- Every claimed event carries the ticket's own updated_at as the vendor reported it with the event
  (`Connector.webhook_ticket_stamp`: Zendesk `detail.updated_at` or the trigger body's `updated_at`, Jira
  `issue.fields.updated`). Catch-up and admin hints, and bodies that only say when they were sent, carry
  none and are always read.
- Each stamp is at or before the ticket's `TicketState.seen_updated_at`: the updated_at of the snapshot the
  last committed pass decided on, or of the ticket as the vendor returned it after that pass's own write
  (the write was guarded by `safe_update` on the snapshot's stamp, so nobody else's change lies between
  them). A vendor moves updated_at forward on every change, so a change stamped earlier is part of that
  version. Equal stamps count as the same version: that is Zendesk's own rule (`safe_update` accepts a
  write whose `updated_stamp` equals the ticket's updated_at), and it is what the echo of our own write
  and a second delivery of the change the last pass read report.
- No decision of the ticket is still `applying` (a crash mid-write): that pass's recovery needs the read.

Anything newer (an agent's edit after our write) has a later stamp and is read and decided as always.
What Zendesk's second-granular stamps cannot tell apart, a change in the very second of the version seen,
is also invisible to Zendesk's safe_update; the catch-up scan's hint for it carries no stamp and is read.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import select

from integration.model import Ticket, TicketState
from integration.store.codec import from_json
from integration.store.db import Database, DecisionRow, TicketStateRow


def already_seen(stamps: Iterable[datetime | None], seen_updated_at: datetime | None) -> bool:
    """True when every stamp is known and none is newer than `seen_updated_at` (see the module docstring)."""
    stamps = list(stamps)
    if seen_updated_at is None or not stamps:
        return False
    return all(stamp is not None and stamp <= seen_updated_at for stamp in stamps)


def seen_after(state: TicketState, ticket: Ticket, written_updated_at: datetime | None) -> TicketState:
    """`state` with `seen_updated_at` moved to the version this pass decided on (`ticket`) or, after its own
    write, the version the vendor returned for it; never backwards."""
    candidates = [t for t in (state.seen_updated_at, ticket.updated_at, written_updated_at) if t is not None]
    newest = max(candidates) if candidates else None
    return state if newest == state.seen_updated_at else state.with_(seen_updated_at=newest)


def stored_watermark(db: Database, vendor: str, ticket_id: str) -> datetime | None:
    """The ticket's `seen_updated_at`, or None when there is none or a decision is still `applying`."""
    with db.session() as session:
        applying = session.scalars(
            select(DecisionRow.id).where(DecisionRow.vendor == vendor, DecisionRow.ticket_id == ticket_id,
                                         DecisionRow.status == "applying").limit(1)
        ).first()
        if applying is not None:
            return None
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None or not row.state:
            return None
        return from_json(TicketState, row.state).seen_updated_at
