"""A fake helpdesk that writes a decision the way Zendesk does: two ticket updates, because Zendesk takes
one comment per update - the field changes with the customer reply first, then the internal note.

It extends the FileStore fake (tests/support/fake_connector.py, shared between processes): each update is
stored and logged on its own (`writes()` has one entry per update, with `update` 1 or 2), comments are
kept on the ticket record with their author and time, and `own_comments` lists the integration user's
comments like the Zendesk connector does. Between the two updates `progress` is reported, as the real
connectors do. `between_updates_delay` holds the worker between the two updates, so a test can kill it there.

`python -m tests.support.worker_entry --helpdesk two-update ...` runs a worker process with it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from connectors.base import PART_FIELDS, PART_NOTE, PART_REPLY, ApplyProgress, ApplyResult, Conflict, NotFound, PostedComment
from integration.model import Decision, Ticket
from tests.support.fake_connector import FakeConnector


@dataclass
class TwoUpdateHelpdesk(FakeConnector):
    between_updates_delay: float = 0.0  # seconds between the first update and the second

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        if not decision.writes_to_ticket:
            return ApplyResult(writes=0)
        first = replace(decision, internal_note=None) if decision.public_reply else decision
        updates = [first]
        if decision.public_reply and decision.internal_note:
            updates.append(replace(decision, priority=None, owner_group=None, add_tags=(), remove_tags=(),
                                   field_updates={}, public_reply=None))
        result = ApplyResult()
        stamp = ticket.version_token
        for number, update in enumerate(updates, start=1):
            if number > 1:
                if progress is not None:
                    progress(list(result.parts), [PART_NOTE])
                if self.between_updates_delay:
                    time.sleep(self.between_updates_delay)
            stamp = self._store_update(ticket.id, update, stamp, number)
            result.writes += 1
            result.requests.append({"method": "PUT", "path": f"/tickets/{ticket.id}", "status": 200})
            result.parts.extend(_parts(update))
        if self.apply_delay:
            time.sleep(self.apply_delay)
        return result

    def _store_update(self, ticket_id: str, update: Decision, stamp: str | None, number: int) -> str:
        """One guarded update: fields and at most one comment, like a Zendesk safe_update PUT."""
        with self.store.locked():
            record = self.store.load(ticket_id)
            if record is None:
                raise NotFound(f"ticket {ticket_id} not found")
            if str(record["version"]) != stamp:
                raise Conflict(f"ticket {ticket_id} changed since it was read")
            if update.priority:
                record["priority"] = update.priority
            if update.owner_group:
                record["group"] = update.owner_group
            record["tags"] = sorted((set(record.get("tags") or ()) - set(update.remove_tags)) | set(update.add_tags))
            record["fields"] = {**(record.get("fields") or {}), **dict(update.field_updates)}
            now = datetime.now(timezone.utc).isoformat()
            comment = update.public_reply or update.internal_note
            if comment:
                record.setdefault("comments", []).append(
                    {"author": self.user_id, "body": comment, "public": bool(update.public_reply), "created_at": now})
            record["version"] += 1
            record["updated_at"] = now
            self.store.save(record)
            self.store.append_write({
                "ticket_id": ticket_id, "pid": os.getpid(), "at": now, "update": number,
                "to_level": update.to_level, "public_reply": update.public_reply,
                "internal_note": update.internal_note, "priority": update.priority,
                "add_tags": list(update.add_tags),
                "field_updates": {k: str(v) for k, v in update.field_updates.items()},
            })
            return str(record["version"])

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment]:
        record = self.store.load(str(ticket_id)) or {}
        posted = []
        for comment in record.get("comments") or []:
            created = datetime.fromisoformat(comment["created_at"])
            if comment["author"] == self.user_id and (since is None or created > since):
                posted.append(PostedComment(body=comment["body"], public=comment["public"], created_at=created))
        return posted

    def comments(self, ticket_id: str) -> list[dict[str, Any]]:
        return list((self.store.load(str(ticket_id)) or {}).get("comments") or [])


def _parts(update: Decision) -> list[str]:
    parts = [PART_FIELDS] if (update.priority or update.owner_group or update.add_tags or update.remove_tags
                              or update.field_updates) else []
    if update.public_reply:
        parts.append(PART_REPLY)
    elif update.internal_note:
        parts.append(PART_NOTE)
    return parts

