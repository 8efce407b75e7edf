"""Calendar helpers only the tests need."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from integration.calendar import compile_calendar
from matrix_config.schema import Calendar


def is_open(calendar: Calendar | None, moment: datetime) -> bool:
    """Whether the calendar is open at `moment` (always, for 24x7); a naive `moment` is UTC."""
    if calendar is None:
        return True
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    compiled = compile_calendar(calendar)
    local_day = moment.astimezone(compiled.zone).date()
    # A span laid on the previous local date can run past midnight (`24:00`) into this moment.
    for day in (local_day - timedelta(days=1), local_day):
        for span_start, span_end in compiled.open_intervals(day):
            if span_start <= moment < span_end:
                return True
    return False
