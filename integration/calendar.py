"""Business-time arithmetic for SLA clocks.

A `matrix_config.schema.Calendar` names an IANA time zone, weekly opening spans per weekday
(`mon: ["08:00-18:00"]`, a missing day is closed, `24:00` ends a span at the next midnight) and
holidays (local dates, closed all day). `None` instead of a calendar means 24x7: business time is wall
time.

Spans are laid on local dates and converted to UTC one by one, so a span that crosses a DST change is
as long as the clocks on the wall say (a 00:00-24:00 span on the spring-forward Sunday lasts 23 hours).
A span edge that falls into the hour skipped by spring-forward resolves like zoneinfo's `fold=0`
(the pre-transition offset); an edge in the repeated autumn hour is its first occurrence.

All datetimes in and out are timezone-aware; naive inputs are taken as UTC. Results are UTC.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from matrix_config.schema import WEEKDAYS, Calendar

# Give up looking for open time after this many days: a calendar that is closed for ten years
# (every day a holiday, or no hours at all) is a configuration error, not a reason to loop forever.
MAX_SCAN_DAYS = 3660


class CalendarClosed(ValueError):
    """The calendar has no open time in the scanned range, so no business deadline exists."""


@dataclass(frozen=True)
class _CompiledCalendar:
    zone: ZoneInfo
    # weekday (0 = Monday) -> ((start_minute, end_minute), ...), end may be 1440 (24:00)
    week: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date]

    def open_intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """UTC [start, end) intervals the calendar is open on local date `day`, merged and sorted."""
        return _open_intervals(self, day)


@lru_cache(maxsize=8192)
def _open_intervals(compiled: "_CompiledCalendar", day: date) -> tuple[tuple[datetime, datetime], ...]:
    if day in compiled.holidays:
        return ()
    out: list[tuple[datetime, datetime]] = []
    for start_min, end_min in compiled.week[day.weekday()]:
        start = _local_to_utc(day, start_min, compiled.zone)
        end = _local_to_utc(day, end_min, compiled.zone)
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _local_to_utc(day: date, minute_of_day: int, zone: ZoneInfo) -> datetime:
    if minute_of_day >= 24 * 60:
        day = day + timedelta(days=1)
        minute_of_day -= 24 * 60
    local = datetime.combine(day, time(minute_of_day // 60, minute_of_day % 60), tzinfo=zone)
    return local.astimezone(timezone.utc)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@lru_cache(maxsize=256)
def _compile(timezone_name: str, hours: tuple[tuple[str, tuple[str, ...]], ...], holidays: tuple[date, ...]) -> _CompiledCalendar:
    by_day = dict(hours)
    week: list[tuple[tuple[int, int], ...]] = []
    for day_name in WEEKDAYS:
        spans = sorted(
            (_minutes(span.split("-")[0]), _minutes(span.split("-")[1])) for span in by_day.get(day_name, ())
        )
        week.append(tuple(spans))
    return _CompiledCalendar(zone=ZoneInfo(timezone_name), week=tuple(week), holidays=frozenset(holidays))


def compile_calendar(calendar: Calendar) -> _CompiledCalendar:
    key_hours = tuple(sorted((day, tuple(spans)) for day, spans in calendar.hours.items()))
    return _compile(calendar.timezone, key_hours, tuple(sorted(calendar.holidays)))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def add_business_time(calendar: Calendar | None, start: datetime, seconds: float) -> datetime:
    """The moment `seconds` of business time after `start`.

    A clock started outside opening hours begins counting at the next opening; a deadline that lands
    exactly on the end of a span is that end (not the next opening). `seconds <= 0` returns `start`.
    """
    start = _utc(start)
    if seconds <= 0:
        return start
    if calendar is None:
        return start + timedelta(seconds=seconds)
    compiled = compile_calendar(calendar)
    if not any(compiled.week):
        raise CalendarClosed(f"calendar in {calendar.timezone} has no opening hours on any weekday")
    remaining = timedelta(seconds=seconds)
    day = start.astimezone(compiled.zone).date() - timedelta(days=1)  # a 24:00 span of yesterday may still be open
    for _ in range(MAX_SCAN_DAYS):
        for span_start, span_end in compiled.open_intervals(day):
            if span_end <= start:
                continue
            begin = max(span_start, start)
            available = span_end - begin
            if available >= remaining:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)
    raise CalendarClosed(f"calendar in {calendar.timezone} has no open hours within {MAX_SCAN_DAYS} days of {start.isoformat()}")


def business_seconds_between(calendar: Calendar | None, a: datetime, b: datetime) -> float:
    """Business seconds from `a` to `b` (negative when `b` is before `a`)."""
    a, b = _utc(a), _utc(b)
    if b < a:
        return -business_seconds_between(calendar, b, a)
    if calendar is None:
        return (b - a).total_seconds()
    compiled = compile_calendar(calendar)
    total = timedelta(0)
    day = a.astimezone(compiled.zone).date() - timedelta(days=1)
    last_day = b.astimezone(compiled.zone).date()
    while day <= last_day:
        for span_start, span_end in compiled.open_intervals(day):
            begin, end = max(span_start, a), min(span_end, b)
            if end > begin:
                total += end - begin
        day += timedelta(days=1)
    return total.total_seconds()

