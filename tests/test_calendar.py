"""Business-time arithmetic: weekends, holidays, DST, spans ending at 24:00, 24x7."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from integration.calendar import CalendarClosed, add_business_time, business_seconds_between
from matrix_config.schema import Calendar
from tests.support.calendars import is_open

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


WEEKDAYS_8_18 = Calendar(
    timezone="Europe/Berlin",
    hours={d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=[date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)],
)


def test_no_calendar_is_wall_time():
    start = datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc)
    assert add_business_time(None, start, 5 * HOUR) == start + timedelta(hours=5)
    assert business_seconds_between(None, start, start + timedelta(hours=5)) == 5 * HOUR


def test_within_one_business_day():
    start = berlin(2026, 11, 23, 9, 0)  # Monday
    assert add_business_time(WEEKDAYS_8_18, start, 2 * HOUR) == berlin(2026, 11, 23, 11, 0)


def test_friday_afternoon_rolls_over_the_weekend_to_monday():
    start = berlin(2026, 11, 27, 17, 0)  # Friday, one business hour left
    due = add_business_time(WEEKDAYS_8_18, start, 4 * HOUR)
    assert due == berlin(2026, 11, 30, 11, 0)  # Monday 08:00 + 3h
    assert business_seconds_between(WEEKDAYS_8_18, start, due) == 4 * HOUR


def test_clock_started_on_saturday_begins_counting_monday_morning():
    start = berlin(2026, 11, 28, 12, 0)
    assert add_business_time(WEEKDAYS_8_18, start, 30 * 60) == berlin(2026, 11, 30, 8, 30)
    assert business_seconds_between(WEEKDAYS_8_18, start, berlin(2026, 11, 30, 8, 0)) == 0


def test_holidays_are_skipped_across_christmas():
    start = berlin(2026, 12, 23, 17, 0)  # Wednesday; Thu 24, Fri 25 holidays, Sat 26 weekend+holiday
    due = add_business_time(WEEKDAYS_8_18, start, 2 * HOUR)
    assert due == berlin(2026, 12, 28, 9, 0)  # Monday 28th
    assert business_seconds_between(WEEKDAYS_8_18, start, due) == 2 * HOUR


def test_deadline_exactly_at_span_end_stays_at_the_end():
    start = berlin(2026, 11, 23, 8, 0)
    assert add_business_time(WEEKDAYS_8_18, start, 10 * HOUR) == berlin(2026, 11, 23, 18, 0)


def test_multi_day_target_counts_only_open_hours():
    start = berlin(2026, 11, 23, 8, 0)  # Monday
    due = add_business_time(WEEKDAYS_8_18, start, 5 * 24 * HOUR)  # 120 business hours = 12 business days
    assert due == berlin(2026, 12, 8, 18, 0)
    assert business_seconds_between(WEEKDAYS_8_18, start, due) == 120 * HOUR


ROUND_THE_CLOCK_SUNDAY = Calendar(timezone="Europe/Berlin", hours={"sun": ["00:00-24:00"]})


def test_spring_forward_sunday_is_23_hours_long():
    start = berlin(2026, 3, 29, 0, 0)  # DST starts 02:00 -> 03:00
    end = berlin(2026, 3, 30, 0, 0)
    assert business_seconds_between(ROUND_THE_CLOCK_SUNDAY, start, end) == 23 * HOUR
    # 23 business hours from Sunday midnight end at Sunday 24:00 local, not a week later
    assert add_business_time(ROUND_THE_CLOCK_SUNDAY, start, 23 * HOUR) == end.astimezone(timezone.utc)
    assert add_business_time(ROUND_THE_CLOCK_SUNDAY, start, 3 * HOUR) == berlin(2026, 3, 29, 4, 0)


def test_fall_back_sunday_is_25_hours_long():
    start = berlin(2026, 10, 25, 0, 0)
    end = berlin(2026, 10, 26, 0, 0)
    assert business_seconds_between(ROUND_THE_CLOCK_SUNDAY, start, end) == 25 * HOUR


def test_business_hours_keep_local_wall_time_across_dst():
    start = berlin(2026, 10, 23, 17, 0)  # Friday before the autumn change (CEST, UTC+2)
    due = add_business_time(WEEKDAYS_8_18, start, 2 * HOUR)
    assert due == berlin(2026, 10, 26, 9, 0)  # Monday 09:00 CET (UTC+1)
    assert due.utcoffset() == timedelta(0)
    assert due == datetime(2026, 10, 26, 8, 0, tzinfo=timezone.utc)


def test_span_ending_at_midnight_joins_the_next_days_span():
    calendar = Calendar(timezone="UTC", hours={"mon": ["20:00-24:00"], "tue": ["00:00-02:00"]})
    start = datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc)  # Monday 23:00
    assert add_business_time(calendar, start, 2 * HOUR) == datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)
    assert is_open(calendar, datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc))
    assert not is_open(calendar, datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))


def test_negative_interval_and_zero_duration():
    a, b = berlin(2026, 11, 23, 9, 0), berlin(2026, 11, 23, 12, 0)
    assert business_seconds_between(WEEKDAYS_8_18, b, a) == -3 * HOUR
    assert add_business_time(WEEKDAYS_8_18, a, 0) == a


def test_calendar_without_any_hours_is_an_error_not_a_hang():
    with pytest.raises(CalendarClosed):
        add_business_time(Calendar(timezone="UTC", hours={}), datetime(2026, 1, 1, tzinfo=timezone.utc), 60)


def test_naive_datetimes_are_utc():
    naive = datetime(2026, 11, 23, 8, 0)  # Monday 08:00 UTC = 09:00 Berlin
    assert add_business_time(WEEKDAYS_8_18, naive, HOUR) == berlin(2026, 11, 23, 10, 0)


def test_span_across_the_skipped_hour_counts_the_real_duration():
    calendar = Calendar(timezone="Europe/Berlin", hours={"sun": ["01:00-04:00"]})
    day_start, day_end = berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0)
    assert business_seconds_between(calendar, day_start, day_end) == 2 * HOUR  # 02:00-03:00 never happened
    assert add_business_time(calendar, day_start, 90 * 60) == berlin(2026, 3, 29, 3, 30)


def test_split_day_with_lunch_break():
    calendar = Calendar(timezone="Europe/Berlin", hours={"tue": ["08:00-12:00", "13:00-18:00"]})
    start = berlin(2026, 11, 24, 11, 0)
    assert add_business_time(calendar, start, 2 * HOUR) == berlin(2026, 11, 24, 14, 0)
    assert not is_open(calendar, berlin(2026, 11, 24, 12, 30))
