"""Offline simulation (dry-run replay): a vendor without API credentials is simulated from what the
service stored, the webhooks it received and the dry-run decisions it made; nothing is written.
service.connectors.build_connector chooses between it and the vendor's real connector."""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterator

from sqlalchemy import select

from connectors.base import ApplyProgress, ApplyResult, ConnectorDefaults
from integration.engine import apply_to_ticket
from integration.model import Decision, Ticket
from integration.store.codec import from_json
from integration.store.db import DecisionRow, EventRow

log = logging.getLogger(__name__)

OFFLINE_PAYLOAD_WINDOW = 500  # stored payloads folded into one offline snapshot (newest N, read oldest first)


def _carry_level_set_at(folded: Ticket, previous: Ticket | None) -> Ticket:
    """The payloads' own history of the level: the vendor time of the first payload that showed the current
    level (its `updated_at`), kept while later payloads show the same level."""
    if folded.level_set_at is not None:
        return folded
    if previous is not None and (previous.level or "").casefold() == (folded.level or "").casefold():
        return folded.with_(level_set_at=previous.level_set_at)
    return folded.with_(level_set_at=folded.updated_at) if folded.level else folded


class OfflineConnector(ConnectorDefaults):
    """No vendor credentials: tickets come from the stored webhook payloads, nothing is written.

    One payload only knows its own event (a comment webhook carries the reply, not the ticket's
    history), so the ticket is folded from the stored payloads oldest first:
    `ticket = snapshot(payload, matrix, previous=ticket)`; an early first reply is not lost.

    The vendor never receives a dry run's writes, so every later payload still shows the ticket without
    them (no level tag, old priority). The ticket's recorded dry-run decisions are therefore carried out
    on the folded snapshot, oldest first (`integration.engine.apply_to_ticket`): the snapshot is the
    ticket as it would be had the service written, and a later pass does not propose the same write
    again. Decision: an agent's manual change to a field a dry-run decision set is masked by that
    decision in this simulation (the payloads cannot tell the two apart)."""

    def __init__(self, vendor: str, db: Any, matrix: Any, snapshot: Callable[[dict, Any], Ticket | None] | None):
        self.vendor = vendor
        self.db = db
        self.matrix = matrix
        self.snapshot = snapshot

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        ticket: Ticket | None = None
        if self.snapshot is not None:
            for payload in self._payloads_oldest_first(ticket_id):
                try:
                    folded = self.snapshot(payload, self.matrix, previous=ticket)
                except Exception:  # noqa: BLE001 - a best-effort snapshot; keep what earlier payloads gave
                    log.warning("could not build a %s ticket from one of its webhook payloads", self.vendor,
                                exc_info=True)
                    continue
                if folded is not None:
                    ticket = _carry_level_set_at(folded, ticket)
        ticket = ticket if ticket is not None else Ticket(vendor=self.vendor, id=str(ticket_id))
        return self._with_dry_run_writes(ticket)

    def _with_dry_run_writes(self, ticket: Ticket) -> Ticket:
        if self.db is None:
            return ticket
        with self.db.session() as session:
            stored = list(session.scalars(
                select(DecisionRow.decision)
                .where(DecisionRow.vendor == self.vendor, DecisionRow.ticket_id == ticket.id,
                       DecisionRow.dry_run.is_(True))
                .order_by(DecisionRow.id)
            ))
        for data in stored:
            try:
                ticket = apply_to_ticket(ticket, from_json(Decision, data))
            except Exception:  # noqa: BLE001 - a decision stored by an older release; the rest still apply
                log.warning("could not replay a stored dry-run decision on %s ticket %s", self.vendor, ticket.id,
                            exc_info=True)
        return ticket

    def _payloads_oldest_first(self, ticket_id: str) -> list[dict]:
        if self.db is None:
            return []
        with self.db.session() as session:
            raws = [tuple(row) for row in session.execute(
                select(EventRow.payload, EventRow.occurred_at)
                .where(EventRow.vendor == self.vendor, EventRow.ticket_id == str(ticket_id))
                .order_by(EventRow.id.desc())
                .limit(OFFLINE_PAYLOAD_WINDOW)
            )]
        raws.reverse()
        if all(occurred is not None for _, occurred in raws):
            # In the order things happened at the vendor, not the order webhooks arrived in: a level change
            # delivered after the reply that followed it still folds before it.
            raws.sort(key=lambda row: row[1])
        payloads = []
        for raw, _ in raws:
            try:
                data = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if isinstance(data, dict) and "hint" not in data:  # catch-up/repin hints carry no ticket facts
                payloads.append(data)
        return payloads

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        return ApplyResult(writes=0, dry_run=True)

    def own_user_id(self) -> str | None:
        return None

    def changed_since(self, watermark: str | None) -> Iterator[tuple[str, str]]:
        return iter(())
