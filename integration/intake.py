"""The seam between the webhook edge and the durable pipeline.

The Flask edge verifies and normalizes a delivery, then hands it to an `EventSink`, which must have
committed the event before `accept` returns (the edge answers 2xx only after that).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from integration.model import NeutralEvent


class UnstorableEvent(ValueError):
    """The store refused a value of the event itself (too long, not encodable): retrying cannot help.
    The edge answers 400; every other failure of `accept` means the store is unavailable (503)."""


@dataclass(frozen=True)
class AcceptResult:
    event_id: int | str
    duplicate: bool  # True: this delivery (same delivery id or same content) was seen before; not processed again


class EventSink(Protocol):
    def accept(self, event: NeutralEvent, payload: bytes, received_at: datetime) -> AcceptResult:
        """Persist the event (committed before returning) and enqueue processing for its ticket.
        Events with handled=False are recorded as ignored and not enqueued."""

    def health(self) -> dict[str, str]:
        """Component name -> "ok" or a short reason; used by GET /readyz."""
