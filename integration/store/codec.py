"""Model values <-> the JSON stored in the `ticket_state.state`, `decisions.decision`/`state_after` and
`ticket_state.milestones` columns, through pydantic TypeAdapters over the model's dataclasses.

The stored text is the format rows have had from the start (times as `datetime.isoformat()`, see
`integration.model.IsoDateTime`; tuples as lists), so rows written before this module load unchanged and
rewriting one gives the same JSON. Reading drops keys the class no longer has, so a row written by a newer
version of the service still loads.
"""
from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter

from integration.model import Decision, IsoDateTime, TicketState

T = TypeVar("T", TicketState, Decision)

_MILESTONES: TypeAdapter[dict[str, datetime]] = TypeAdapter(dict[str, IsoDateTime])


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


# Fields added after the stored format settled, written only when set: a row that never had one is
# rewritten exactly as it was (an older service reading it back sees nothing new either).
_WRITTEN_WHEN_SET = {TicketState: ("seen_updated_at",)}


def to_json(value: TicketState | Decision) -> dict[str, Any]:
    data = _adapter(type(value)).dump_python(value, mode="json")
    for name in _WRITTEN_WHEN_SET.get(type(value), ()):
        if data.get(name) is None:
            data.pop(name, None)
    return data


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    return _adapter(cls).validate_python(data)


def milestones_to_json(milestones: dict[str, datetime]) -> dict[str, str]:
    return _MILESTONES.dump_python(dict(milestones), mode="json")
